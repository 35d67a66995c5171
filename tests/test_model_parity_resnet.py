"""Mask2Former with a ResNet backbone: parity with transformers in both directions, and frozen BatchNorm."""

from __future__ import annotations

import pytest
import torch
from helpers import (
    max_abs_diff,
    randomize_,
    randomize_batch_norm_statistics_,
    tiny_resnet_config_kwargs,
    transformers_config,
)

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

transformers = pytest.importorskip("transformers")

TOL = 1e-4
STAGES = ["stage1", "stage2", "stage3", "stage4"]
CONFIGS = {
    "tiny": tiny_resnet_config_kwargs(),
    "tiny_stride_in_1x1": tiny_resnet_config_kwargs(backbone=dict(downsample_in_bottleneck=True)),
    "tiny_basic": tiny_resnet_config_kwargs(backbone=dict(layer_type="basic", hidden_sizes=[32, 32, 64, 64],
                                                          depths=[1, 1, 2, 1]), decoder_layers=3),
    # ResNet-50 and the decoder of the original R50 configs (133 COCO panoptic classes), on small images
    "r50": dict(backbone_config=dict(model_type="resnet", out_features=STAGES), num_labels=133),
}
INPUTS = {"tiny": (2, 61, 93), "tiny_stride_in_1x1": (2, 45, 77), "tiny_basic": (2, 50, 35), "r50": (2, 67, 99)}
OUTPUTS = ("class_queries_logits", "masks_queries_logits", "auxiliary_logits", "encoder_hidden_states",
           "pixel_decoder_hidden_states", "transformer_decoder_hidden_states")
PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name == "r50" else name for name in CONFIGS]


def _randomized(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    randomize_(model, seed, scale=0.02)
    return randomize_batch_norm_statistics_(model, seed).eval()


def _errors(expected, got) -> dict[str, float]:
    return {key: max_abs_diff(getattr(expected, key), getattr(got, key)) for key in OUTPUTS}


def _inputs(name: str) -> torch.Tensor:
    batch, height, width = INPUTS[name]
    return torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", PARAMS)
def test_transformers_resnet_checkpoint_gives_same_outputs(tmp_path, name):
    torch.manual_seed(0)
    ref = _randomized(transformers.Mask2FormerForUniversalSegmentation(transformers_config(**CONFIGS[name])), 0)
    ref.save_pretrained(tmp_path / "ref")
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "ref")
    report = ours.load_report
    assert not report.missing and not report.unexpected and not report.ignored_known_extras, report
    assert ours.config.backbone_config.model_type == "resnet"
    pixel_values = _inputs(name)
    flags = dict(output_hidden_states=True, output_auxiliary_logits=True)
    with torch.no_grad():
        expected, got = ref(pixel_values, **flags), ours(pixel_values, **flags)
    errors = _errors(expected, got)
    print(name, "transformers -> ours", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < TOL, errors
    # a non-trivial comparison: the loaded BatchNorm statistics matter, and the masks are not all of one sign
    assert got.masks_queries_logits.gt(0).any() and got.masks_queries_logits.lt(0).any()
    if name == "r50":
        return
    fresh_statistics = Mask2FormerForUniversalSegmentation(ours.config).eval()
    fresh_statistics.load_state_dict({k: v for k, v in ours.state_dict().items() if "running_" not in k},
                                     strict=False)
    with torch.no_grad():
        assert max_abs_diff(fresh_statistics(pixel_values).class_queries_logits, got.class_queries_logits) > 1e-3


@pytest.mark.parametrize("name", PARAMS)
def test_our_resnet_save_loads_in_transformers(tmp_path, name):
    torch.manual_seed(1)
    ours = _randomized(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS[name])), 1)
    ours.save_pretrained(tmp_path / "ours")
    ref, info = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "ours",
                                                                                  output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert type(ref.config.backbone_config).__name__ == "ResNetConfig"
    pixel_values = _inputs(name)
    flags = dict(output_hidden_states=True, output_auxiliary_logits=True)
    with torch.no_grad():
        expected, got = ref.eval()(pixel_values, **flags), ours(pixel_values, **flags)
    errors = _errors(expected, got)
    print(name, "ours -> transformers", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < TOL, errors


def test_stride_placement_changes_the_outputs():
    """downsample_in_bottleneck (the original's STRIDE_IN_1X1) must be honoured: same weights, other outputs."""
    torch.manual_seed(2)
    in_3x3 = _randomized(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["tiny"])), 2)
    in_1x1 = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["tiny_stride_in_1x1"])).eval()
    in_1x1.load_state_dict(in_3x3.state_dict())
    pixel_values = _inputs("tiny")
    with torch.no_grad():
        assert max_abs_diff(in_3x3(pixel_values).encoder_last_hidden_state,
                            in_1x1(pixel_values).encoder_last_hidden_state) > 1e-2


def _batch_norms(model):
    return [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_batch_norm_is_frozen_in_training_by_default():
    torch.manual_seed(3)
    model = _randomized(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["tiny"])), 3).train()
    norms = _batch_norms(model)
    before = {k: v.clone() for k, v in model.state_dict().items() if "normalization" in k}
    with torch.no_grad():
        train_out = model(_inputs("tiny")).class_queries_logits
        eval_out = model.eval()(_inputs("tiny")).class_queries_logits
    assert torch.equal(train_out, eval_out)  # training mode normalises with the stored statistics too
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())  # nothing updated, not even the counters
    assert all(not m.weight.requires_grad and not m.bias.requires_grad for m in norms)
    model.train()
    mask_labels = [torch.ones(1, 61, 93), torch.zeros(0, 61, 93)]
    class_labels = [torch.tensor([1]), torch.zeros(0, dtype=torch.long)]
    model(_inputs("tiny"), mask_labels=mask_labels, class_labels=class_labels).loss.backward()
    assert all(m.weight.grad is None for m in norms)
    assert model.model.pixel_level_module.encoder.embedder.embedder.convolution.weight.grad.abs().sum() > 0


def test_batch_norm_trains_when_not_frozen(tmp_path):
    kwargs = tiny_resnet_config_kwargs(backbone=dict(freeze_batch_norm=False))
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**kwargs)).train()
    model(_inputs("tiny"))
    norms = _batch_norms(model)
    assert all(m.weight.requires_grad for m in norms)
    assert all(int(m.num_batches_tracked) == 1 for m in norms)
    # the setting is ours; it round-trips through config.json and transformers keeps it as an unknown key
    model.save_pretrained(tmp_path / "m")
    assert Mask2FormerConfig.from_pretrained(tmp_path / "m").backbone_config.freeze_batch_norm is False
    ref_config = transformers.Mask2FormerConfig.from_pretrained(tmp_path / "m")
    assert ref_config.backbone_config.freeze_batch_norm is False
