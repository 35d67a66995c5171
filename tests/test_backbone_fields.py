"""The seed's backbone fields: backbone, use_timm_backbone, backbone_kwargs, use_pretrained_backbone."""

from __future__ import annotations

import sys
import types
import warnings

import pytest
import torch
from helpers import max_abs_diff, randomize_, tiny_config_kwargs, tiny_resnet_config_kwargs
from torch import nn

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, ResNetConfig
from mask2former.config import ConfigError
from mask2former.hub import CheckpointNotFoundError


def _with(kwargs: dict, **fields) -> dict:
    """Config keyword arguments plus seed fields (the helpers' own ``backbone`` argument means something else)."""
    return {**kwargs, **fields}


TIMM_KWARGS = _with(tiny_config_kwargs(), backbone="resnet18", use_timm_backbone=True,
                    backbone_kwargs={"out_indices": [1, 2, 3, 4]})
TIMM_KWARGS.pop("backbone_config")


class _FeatureInfo:
    def __init__(self, channels, reductions):
        self._channels, self._reductions = channels, reductions

    def channels(self):
        return list(self._channels)

    def reduction(self):
        return list(self._reductions)


class _FakeTimmFeatures(nn.Module):
    """What ``timm.create_model(..., features_only=True)`` returns: maps at strides 4..32 and ``feature_info``."""

    def __init__(self, out_indices, in_chans, pretrained):
        super().__init__()
        channels = [8, 16, 32, 64, 64]
        self.stem = nn.Conv2d(in_chans, channels[0], 3, stride=2, padding=1)
        self.stages = nn.ModuleList(nn.Conv2d(channels[i], channels[i + 1], 3, stride=2, padding=1)
                                    for i in range(4))
        self.out_indices = tuple(out_indices)
        self.feature_info = _FeatureInfo([channels[i] for i in out_indices], [2 ** (i + 1) for i in out_indices])
        if pretrained:  # "downloaded" weights: recognisable constants
            with torch.no_grad():
                for param in self.parameters():
                    param.fill_(0.01)

    def forward(self, x):
        x = self.stem(x)
        out = []
        for i, stage in enumerate(self.stages, start=1):
            x = torch.relu(stage(x))
            if i in self.out_indices:
                out.append(x)
        return out


@pytest.fixture
def fake_timm(monkeypatch):
    module = types.ModuleType("timm")
    calls = []

    def create_model(name, pretrained=False, features_only=False, in_chans=3, out_indices=None, **kwargs):
        calls.append(dict(name=name, pretrained=pretrained, features_only=features_only, out_indices=out_indices))
        assert features_only
        return _FakeTimmFeatures(out_indices, in_chans, pretrained)

    module.create_model = create_model
    module.utils = types.SimpleNamespace(model=types.SimpleNamespace(freeze_batch_norm_2d=lambda m: m))
    module.calls = calls
    monkeypatch.setitem(sys.modules, "timm", module)
    return module


def test_timm_backbone_without_timm_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm fails, as on this machine
    config = Mask2FormerConfig(**TIMM_KWARGS)
    assert config.backbone_config.model_type == "timm_backbone" and config.backbone_config.out_indices == [1, 2, 3, 4]
    with pytest.raises(ImportError, match=r"needs the timm package.*pip install timm"):
        Mask2FormerForUniversalSegmentation(config)


def test_timm_backbone_builds_with_features_only_and_round_trips(fake_timm, tmp_path):
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**TIMM_KWARGS)).eval()
    assert fake_timm.calls == [dict(name="resnet18", pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))]
    assert [(f.channels, f.stride) for f in model.model.pixel_level_module.encoder.feature_info] == \
        [(16, 4), (32, 8), (64, 16), (64, 32)]
    assert "model.pixel_level_module.encoder._backbone.stem.weight" in model.state_dict()  # transformers' layout
    randomize_(model)
    pixel_values = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        out = model(pixel_values)
    assert out.masks_queries_logits.shape == (2, 5, 16, 24)
    model.save_pretrained(tmp_path / "m")
    again = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "m")
    assert again.config.use_timm_backbone and again.config.backbone == "resnet18"
    with torch.no_grad():
        assert torch.equal(again(pixel_values).masks_queries_logits, out.masks_queries_logits)
    transformers = pytest.importorskip("transformers")
    ref_config = transformers.Mask2FormerConfig.from_pretrained(tmp_path / "m")  # no timm needed to read it
    assert ref_config.backbone_config.model_type == "timm_backbone"
    assert list(ref_config.backbone_config.out_indices) == [1, 2, 3, 4]


def test_timm_pretrained_weights_come_from_timm(fake_timm):
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**TIMM_KWARGS, use_pretrained_backbone=True))
    assert [call["pretrained"] for call in fake_timm.calls] == [False, True]
    assert torch.all(model.model.pixel_level_module.encoder._backbone.stem.weight == 0.01)


def test_real_timm_backbone():
    try:
        import timm  # noqa: F401
    except Exception as err:  # ImportError, or timm failing on a torchvision built for another torch
        pytest.skip(f"timm cannot be imported on this machine ({type(err).__name__}: {err}); timm imports "
                    "torchvision, which must match the CPU torch build")
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**TIMM_KWARGS)).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert out.masks_queries_logits.shape == (1, 5, 16, 16)


def _tiny_resnet_backbone():
    backbone = dict(tiny_resnet_config_kwargs()["backbone_config"])
    backbone.pop("model_type")
    return backbone


def test_pretrained_backbone_from_a_transformers_directory(tmp_path):
    transformers = pytest.importorskip("transformers")
    backbone = _tiny_resnet_backbone()
    torch.manual_seed(0)
    imagenet = randomize_(transformers.ResNetModel(transformers.ResNetConfig(**backbone)))
    imagenet.save_pretrained(tmp_path / "resnet")
    kwargs = _with(tiny_resnet_config_kwargs(), backbone=str(tmp_path / "resnet"), use_pretrained_backbone=True)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**kwargs)).eval()
    reference = transformers.ResNetBackbone.from_pretrained(tmp_path / "resnet", out_features=backbone["out_features"])
    pixel_values = torch.randn(2, 3, 61, 93)
    with torch.no_grad():
        expected = reference.eval()(pixel_values).feature_maps
        got = model.model.pixel_level_module.encoder(pixel_values)
    assert max_abs_diff(list(expected), got) < 1e-5
    # a classification checkpoint (keys under "resnet.", plus a classifier) gives the same backbone
    classifier = transformers.ResNetForImageClassification(transformers.ResNetConfig(**backbone, num_labels=10))
    classifier.resnet.load_state_dict(imagenet.state_dict())
    classifier.save_pretrained(tmp_path / "classifier")
    kwargs["backbone"] = str(tmp_path / "classifier")
    again = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**kwargs)).eval()
    with torch.no_grad():
        assert max_abs_diff(got, again.model.pixel_level_module.encoder(pixel_values)) == 0.0


def test_pretrained_swin_backbone_warns_about_its_fresh_output_norms(tmp_path):
    transformers = pytest.importorskip("transformers")
    backbone = dict(tiny_config_kwargs()["backbone_config"])
    transformers.SwinModel(transformers.SwinConfig(**backbone)).save_pretrained(tmp_path / "swin")
    kwargs = _with(tiny_config_kwargs(), backbone=str(tmp_path / "swin"), use_pretrained_backbone=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**kwargs))
    messages = [str(w.message) for w in caught if "use_pretrained_backbone" in str(w.message)]
    assert len(messages) == 1 and "hidden_states_norms.stage1.weight" in messages[0]


def test_pretrained_backbone_offline_says_where_it_would_come_from(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "empty-cache"))
    kwargs = _with(tiny_resnet_config_kwargs(), backbone="microsoft/resnet-50", use_pretrained_backbone=True)
    with pytest.raises(CheckpointNotFoundError, match=r"https://huggingface.co/microsoft/resnet-50.*offline"):
        Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**kwargs))


def test_from_pretrained_does_not_fetch_the_backbone_again(tmp_path):
    kwargs = _with(tiny_resnet_config_kwargs(), backbone=str(tmp_path / "gone"), use_pretrained_backbone=True)
    config = Mask2FormerConfig(**kwargs)
    model = Mask2FormerForUniversalSegmentation._without_pretrained_backbone(config)
    model.save_pretrained(tmp_path / "full")
    loaded = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "full")  # "gone" is never read
    assert loaded.config.use_pretrained_backbone is True and loaded.config.backbone == str(tmp_path / "gone")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(use_pretrained_backbone=True), "use_pretrained_backbone=True needs backbone="),
        (dict(backbone="microsoft/resnet-50"), "names a backbone checkpoint.*backbone_config"),
        (dict(backbone_config=ResNetConfig(out_features=["stage1", "stage2", "stage3", "stage4"]),
              backbone_kwargs={"out_indices": [1, 2, 3, 4]}), "backbone_kwargs applies to a timm backbone"),
        (dict(use_timm_backbone=True), "use_timm_backbone=True needs backbone="),
        (dict(use_timm_backbone=True, backbone="resnet50",
              backbone_config=ResNetConfig(out_features=["stage1", "stage2", "stage3", "stage4"])),
         "use_timm_backbone=True but backbone_config is of type 'resnet'"),
    ],
)
def test_backbone_field_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Mask2FormerConfig(**kwargs)


def test_fields_round_trip_and_transformers_reads_them(tmp_path):
    config = Mask2FormerConfig(**_with(tiny_config_kwargs(), backbone="microsoft/swin-tiny-patch4-window7-224"))
    config.save_pretrained(tmp_path)
    again = Mask2FormerConfig.from_pretrained(tmp_path)
    assert again == config and again.backbone == "microsoft/swin-tiny-patch4-window7-224"
    assert not again.use_pretrained_backbone and not again.use_timm_backbone and again.backbone_kwargs is None
    transformers = pytest.importorskip("transformers")
    ref = transformers.Mask2FormerConfig.from_pretrained(tmp_path)
    assert ref.backbone_config.model_type == "swin" and list(ref.backbone_config.depths) == [1, 1, 2, 1]
