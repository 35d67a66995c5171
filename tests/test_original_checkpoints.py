"""Original (detectron2) checkpoints: files written by the tests in the original layout load through
``from_original_checkpoint`` and ``mask2former convert`` and give transformers' logits; unsafe pickles are refused;
every zoo preset's key mapping covers the full-size model."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from helpers import (
    max_abs_diff,
    randomize_,
    randomize_batch_norm_statistics_,
    tiny_config_kwargs,
    tiny_resnet_config_kwargs,
    transformers_config,
)
from original_layout import to_original_layout, write_detectron2_pickle

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerModel
from mask2former.cli import main
from mask2former.io.checkpoint import CheckpointMismatchError, to_file_layout
from mask2former.io.original import UnsafeCheckpointError, infer_config_kwargs, original_to_native
from mask2former.io.zoo import ZOO, config_kwargs

transformers = pytest.importorskip("transformers")

TOL = 1e-4
# 8 attention heads as in every original config: the one decoder setting the tensor shapes do not show
CONFIGS = {
    "swin_w7": tiny_config_kwargs(num_attention_heads=8),
    "swin_w12": tiny_config_kwargs(num_attention_heads=8, backbone=dict(window_size=12, embed_dim=24,
                                                                          num_heads=[1, 2, 2, 4])),
    "resnet": tiny_resnet_config_kwargs(num_attention_heads=8),
}
INPUTS = {"swin_w7": (2, 61, 93), "swin_w12": (2, 97, 75), "resnet": (2, 45, 77)}


def _reference(name: str, seed: int = 0):
    torch.manual_seed(seed)
    ref = transformers.Mask2FormerForUniversalSegmentation(transformers_config(**CONFIGS[name]))
    randomize_(ref, seed, scale=0.02)
    return randomize_batch_norm_statistics_(ref, seed).eval()


def _file_weights(ref, directory) -> dict[str, torch.Tensor]:
    """transformers' weights as its files hold them (transformers 5 uses other names in memory)."""
    from safetensors.torch import load_file

    ref.save_pretrained(directory)
    return load_file(directory / "model.safetensors")


def _original_file(ref, name: str, path, **kwargs):
    backbone_type = CONFIGS[name]["backbone_config"].get("model_type", "swin")
    weights = _file_weights(ref, path.parent / "transformers")
    return write_detectron2_pickle(to_original_layout(weights, backbone_type), path, **kwargs)


def _compare(ref, ours, name: str) -> dict[str, float]:
    batch, height, width = INPUTS[name]
    pixel_values = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = ref(pixel_values, output_auxiliary_logits=True)
        got = ours(pixel_values, output_auxiliary_logits=True)
    return {key: max_abs_diff(getattr(expected, key), getattr(got, key))
            for key in ("class_queries_logits", "masks_queries_logits", "auxiliary_logits")}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_original_file_loads_with_transformers_logits(tmp_path, name):
    ref = _reference(name)
    path = _original_file(ref, name, tmp_path / "model_final.pkl", numpy1_names=name == "swin_w7")
    ours = Mask2FormerForUniversalSegmentation.from_original_checkpoint(path)  # architecture from the shapes
    errors = _compare(ref, ours, name)
    print(name, "from_original_checkpoint", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < TOL, errors
    ignored = ours.load_report.ignored_known_extras
    assert "criterion.empty_weight" in ignored
    if name.startswith("swin"):
        assert any(key.endswith("attn.relative_position_index") for key in ignored)
    # the body alone loads the same file
    body = Mask2FormerModel.from_original_checkpoint(path)
    assert "sem_seg_head.predictor.class_embed.weight" in body.load_report.ignored_known_extras


@pytest.mark.parametrize("name", ["swin_w12", "resnet"])
def test_convert_command_writes_a_directory_both_libraries_load(tmp_path, name, capsys):
    ref = _reference(name, seed=4)
    source = _original_file(ref, name, tmp_path / "model_final.pkl")
    config_json = tmp_path / "their_config.json"
    ref.config.to_json_file(config_json)
    assert main(["convert", str(source), "--output-dir", str(tmp_path / "out"), "--config", str(config_json)]) == 0
    assert "converted with the config from config file" in capsys.readouterr().out
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"config.json", "model.safetensors",
                                                             "preprocessor_config.json"}
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "out")
    errors = _compare(ref, ours, name)
    theirs, info = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "out",
                                                                                    output_loading_info=True)
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    their_errors = _compare(ref, theirs.eval(), name)
    with capsys.disabled():
        print(name, "convert -> from_pretrained", {k: f"{v:.1e}" for k, v in errors.items()})
        print(name, "convert -> transformers", {k: f"{v:.1e}" for k, v in their_errors.items()})
    assert max(errors.values()) < TOL, errors
    assert max(their_errors.values()) < TOL, their_errors
    # nothing is overwritten without --overwrite
    before = (tmp_path / "out" / "model.safetensors").read_bytes()
    assert main(["convert", str(source), "--output-dir", str(tmp_path / "out")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == before


def test_pth_state_dict_loads(tmp_path):
    ref = _reference("resnet", seed=5)
    original = to_original_layout(_file_weights(ref, tmp_path / "transformers"), "resnet")
    torch.save({"model": original, "iteration": 89999}, tmp_path / "model_final.pth")
    ours = Mask2FormerForUniversalSegmentation.from_original_checkpoint(tmp_path / "model_final.pth")
    assert max(_compare(ref, ours, "resnet").values()) < TOL


class _WritesAFile:
    """An object whose unpickling would create ``target`` (the payload of a malicious checkpoint)."""

    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return open, (self.target, "w")


class _RunsAShellCommand:
    def __init__(self, target):
        self.target = str(target)

    def __reduce__(self):
        return os.system, (f"touch {self.target}",)


@pytest.mark.parametrize("payload", [_WritesAFile, _RunsAShellCommand])
@pytest.mark.parametrize("where", ["inside the weights", "top level"])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload, where):
    target = tmp_path / "pwned"
    ref = _reference("resnet")
    weights = {k: v.numpy() for k, v in to_original_layout(_file_weights(ref, tmp_path / "t"), "resnet").items()}
    evil = payload(target)
    data = {"model": {**weights, "backbone.evil": evil}} if where == "inside the weights" else evil
    path = tmp_path / "model_final.pkl"
    path.write_bytes(pickle.dumps(data))
    with pytest.raises(UnsafeCheckpointError, match="refused.*Nothing from the file was run"):
        Mask2FormerForUniversalSegmentation.from_original_checkpoint(path)
    assert main(["convert", str(path), "--output-dir", str(tmp_path / "out")]) == 2
    assert not target.exists()
    assert not (tmp_path / "out").exists()
    pickle.loads(path.read_bytes())  # the payload is real: a plain unpickler runs it
    assert target.exists()


def test_object_arrays_are_refused(tmp_path):
    import numpy as np

    path = tmp_path / "objects.pkl"
    path.write_bytes(pickle.dumps({"model": {"x": np.array([1, "two"], dtype=object)}}))
    with pytest.raises(UnsafeCheckpointError, match="dtype object"):
        Mask2FormerForUniversalSegmentation.from_original_checkpoint(path)


def test_shape_mismatch_is_reported_by_name(tmp_path):
    ref = _reference("resnet")
    path = _original_file(ref, "resnet", tmp_path / "model.pkl")
    wrong = Mask2FormerConfig(**tiny_resnet_config_kwargs(num_attention_heads=8, num_labels=7))
    with pytest.raises(CheckpointMismatchError,
                       match=r"sem_seg_head\.predictor\.class_embed\.weight \(4, 32\) -> class_predictor\.weight "
                             r"\(8, 32\)"):
        Mask2FormerForUniversalSegmentation.from_original_checkpoint(path, config=wrong)
    # a released file's name selects its preset: this tiny file does not fit coco-panoptic-r50, and says so
    (tmp_path / "model_final_94dc52.pkl").write_bytes(path.read_bytes())
    with pytest.raises(CheckpointMismatchError, match=r"preset coco-panoptic-r50 \(recognised by the file name"):
        Mask2FormerForUniversalSegmentation.from_original_checkpoint(tmp_path / "model_final_94dc52.pkl")
    (tmp_path / "model_final_34112b.pkl").write_bytes(path.read_bytes())
    with pytest.raises(ValueError, match="YouTubeVIS video model"):
        Mask2FormerForUniversalSegmentation.from_original_checkpoint(tmp_path / "model_final_34112b.pkl")
    with pytest.raises(ValueError, match="not a preset; presets: coco-panoptic-r50"):
        Mask2FormerForUniversalSegmentation.from_original_checkpoint(path, config="coco-panoptic-r5")


def test_not_a_mask2former_checkpoint(tmp_path):
    path = write_detectron2_pickle({"backbone.stem.conv1.weight": torch.zeros(64, 3, 7, 7)}, tmp_path / "R-50.pkl")
    with pytest.raises(ValueError, match="not an original Mask2Former checkpoint"):
        Mask2FormerForUniversalSegmentation.from_original_checkpoint(path)


@pytest.mark.parametrize("name", list(ZOO))
def test_every_preset_maps_every_key_at_full_size(name):
    """For each zoo entry (full size, on the meta device): our weights written in the original layout (by the tests'
    reverse mapping) come back under exactly our names and shapes, and the shapes alone give back the preset's
    architecture."""
    config = Mask2FormerConfig(**config_kwargs(ZOO[name]))
    with torch.device("meta"):
        model = Mask2FormerForUniversalSegmentation(config)
    own = model.state_dict()
    file = to_file_layout(own, backbone_config=config.backbone_config, num_labels=config.num_labels,
                          no_object_weight=config.no_object_weight)
    original = to_original_layout(file, config.backbone_config.model_type)
    converted = original_to_native(original, config.backbone_config)
    assert {k: tuple(v.shape) for k, v in converted.tensors.items()} == \
        {k: tuple(v.shape) for k, v in own.items() if k != "criterion.empty_weight"}
    inferred = Mask2FormerConfig(**infer_config_kwargs(original), id2label=config.id2label)
    architecture = ("num_queries", "num_labels", "decoder_layers", "hidden_dim", "feature_size", "encoder_layers")
    assert all(getattr(inferred, k) == getattr(config, k) for k in architecture)
    assert inferred.backbone_config == config.backbone_config


def test_preset_sizes_are_the_zoo_sizes():
    counts = {}
    for name in ("coco-panoptic-r50", "coco-panoptic-r101", "coco-panoptic-swin-t", "coco-panoptic-swin-l"):
        with torch.device("meta"):
            counts[name] = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config_kwargs(ZOO[name])))
        counts[name] = round(counts[name].num_parameters() / 1e6)
    assert counts == {"coco-panoptic-r50": 44, "coco-panoptic-r101": 63, "coco-panoptic-swin-t": 47,
                      "coco-panoptic-swin-l": 216}


def test_preset_labels_and_test_size():
    from mask2former.io.zoo import preset_for_file, processor_kwargs

    entry = preset_for_file("downloads/model_final_cc1b1f.pkl")
    assert entry is not None and entry.name == "cityscapes-semantic-r50"
    labels = config_kwargs(entry)["id2label"]
    assert len(labels) == 19 and labels[0] == "road" and labels[18] == "bicycle"
    assert processor_kwargs(entry)["size"] == {"shortest_edge": 1024, "longest_edge": 2048}
    assert processor_kwargs(ZOO["ade20k-semantic-swin-l"])["size"] == {"shortest_edge": 640, "longest_edge": 2560}
    assert ZOO["coco-instance-swin-l"].num_queries == 200 and ZOO["cityscapes-semantic-swin-l"].num_queries == 100
    assert len(config_kwargs(ZOO["coco-panoptic-swin-t"])["id2label"]) == 133
    assert len(config_kwargs(ZOO["ade20k-instance-r50"])["id2label"]) == 100
