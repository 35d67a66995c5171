"""End-to-end parity with transformers on the same weights, in both directions (their save -> our load and back)."""

from __future__ import annotations

import json

import pytest
import torch
from helpers import max_abs_diff, randomize_, tiny_config_kwargs, transformers_config

import mask2former
from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerModel

transformers = pytest.importorskip("transformers")

TOL = 1e-4  # the acceptance bound; the measured errors are far below it (printed with -s)

CONFIGS = {
    "tiny": tiny_config_kwargs(),
    "window12_prenorm": tiny_config_kwargs(backbone=dict(window_size=12), pre_norm=True),
    "input_projection": tiny_config_kwargs(enforce_input_projection=True, hidden_dim=64, num_queries=13),
    "more_layers": tiny_config_kwargs(decoder_layers=10, num_queries=7, num_labels=6),
    "two_layers": tiny_config_kwargs(decoder_layers=2, backbone=dict(depths=[2, 2, 2, 2], embed_dim=24,
                                                                      num_heads=[2, 2, 4, 4])),
}
INPUTS = {"tiny": (2, 61, 93), "window12_prenorm": (2, 97, 130), "input_projection": (1, 64, 64),
          "more_layers": (2, 45, 75), "two_layers": (2, 33, 40)}


def _reference_checkpoint(tmp_path, name: str, seed: int = 0):
    ref_cfg = transformers_config(**CONFIGS[name])
    torch.manual_seed(seed)
    ref = transformers.Mask2FormerForUniversalSegmentation(ref_cfg)
    randomize_(ref, seed)
    ref.eval()
    ref.save_pretrained(tmp_path / "ref")
    return ref, tmp_path / "ref"


def _compare_outputs(a, b) -> dict[str, float]:
    errors = {}
    for key in ("class_queries_logits", "masks_queries_logits", "encoder_last_hidden_state",
                "pixel_decoder_last_hidden_state", "transformer_decoder_last_hidden_state", "encoder_hidden_states",
                "pixel_decoder_hidden_states", "transformer_decoder_hidden_states", "auxiliary_logits",
                "attentions"):
        errors[key] = max_abs_diff(getattr(a, key), getattr(b, key))
    return errors


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_checkpoint_gives_same_outputs(tmp_path, name):
    ref, path = _reference_checkpoint(tmp_path, name)
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(path)
    assert not ours.load_report.missing and not ours.load_report.unexpected
    batch, height, width = INPUTS[name]
    pixel_values = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(1))
    flags = dict(output_hidden_states=True, output_auxiliary_logits=True, output_attentions=True)
    with torch.no_grad():
        expected = ref(pixel_values, **flags)
        got = ours(pixel_values, **flags)
    errors = _compare_outputs(expected, got)
    print(name, {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < TOL, errors
    # the masked attention must really mask: some attention-mask entries are off in this test
    assert got.masks_queries_logits.gt(0).any() and got.masks_queries_logits.lt(0).any()
    # Without auxiliary outputs our intermediate masks are only computed at the attention-mask sizes (odd input sizes
    # here, so the resizing factors are not integers): same final logits.
    with torch.no_grad():
        plain = ours(pixel_values)
    assert plain.auxiliary_logits is None
    plain_errors = {key: max_abs_diff(getattr(expected, key), getattr(plain, key))
                    for key in ("class_queries_logits", "masks_queries_logits")}
    print(name, "without auxiliary outputs", {k: f"{v:.1e}" for k, v in plain_errors.items()})
    assert max(plain_errors.values()) < TOL, plain_errors


def test_bare_model_matches_including_intermediate_states(tmp_path):
    ref_cfg = transformers_config(**CONFIGS["tiny"])
    torch.manual_seed(0)
    ref = randomize_(transformers.Mask2FormerModel(ref_cfg)).eval()
    ref.save_pretrained(tmp_path / "body")
    ours = Mask2FormerModel.from_pretrained(tmp_path / "body")
    pixel_values = torch.randn(2, 3, 50, 70)
    with torch.no_grad():
        expected = ref(pixel_values, output_hidden_states=True)
        got = ours(pixel_values, output_hidden_states=True)
    for key in ("encoder_last_hidden_state", "pixel_decoder_last_hidden_state",
                "transformer_decoder_last_hidden_state", "encoder_hidden_states", "pixel_decoder_hidden_states",
                "transformer_decoder_hidden_states", "transformer_decoder_intermediate_states",
                "masks_queries_logits"):
        assert max_abs_diff(getattr(expected, key), getattr(got, key)) < TOL, key
    # return_dict=False gives the same tuple positions as transformers
    with torch.no_grad():
        ref_tuple = ref(pixel_values, return_dict=False)
        our_tuple = ours(pixel_values, return_dict=False)
    assert len(ref_tuple) == len(our_tuple)
    assert max_abs_diff(list(ref_tuple), list(our_tuple)) < TOL


def test_our_save_loads_in_transformers_without_missing_or_unexpected_keys(tmp_path):
    torch.manual_seed(3)
    ours = randomize_(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["window12_prenorm"]))).eval()
    ours.save_pretrained(tmp_path / "ours")
    ref, info = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(
        tmp_path / "ours", output_loading_info=True
    )
    assert not any(info.get(k) for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    ref.eval()
    pixel_values = torch.randn(2, 3, 70, 50)
    with torch.no_grad():
        expected = ref(pixel_values, output_hidden_states=True, output_auxiliary_logits=True)
        got = ours(pixel_values, output_hidden_states=True, output_auxiliary_logits=True)
    errors = _compare_outputs(expected, got)
    print("reverse", {k: f"{v:.1e}" for k, v in errors.items()})
    assert max(errors.values()) < TOL, errors


def test_transformers_in_memory_state_dict_loads(tmp_path):
    """transformers 5 names its Swin modules differently in memory; a raw torch.save of that state dict loads too."""
    ref = randomize_(transformers.Mask2FormerForUniversalSegmentation(transformers_config(**CONFIGS["tiny"]))).eval()
    directory = tmp_path / "raw"
    directory.mkdir()
    ref.config.to_json_file(directory / "config.json")
    torch.save(ref.state_dict(), directory / "pytorch_model.bin")
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(directory)
    pixel_values = torch.randn(1, 3, 64, 48)
    with torch.no_grad():
        assert max_abs_diff(ref(pixel_values).masks_queries_logits, ours(pixel_values).masks_queries_logits) < TOL


def test_official_layout_with_relative_position_index_loads(tmp_path):
    """Hub files converted with transformers 4 carry relative_position_index buffers: dropped without complaint."""
    from safetensors.torch import load_file, save_file

    _, path = _reference_checkpoint(tmp_path, "tiny")
    weights = load_file(path / "model.safetensors")
    weights = {k: v for k, v in weights.items() if ".swin.layernorm." not in k}
    key = "model.pixel_level_module.encoder.encoder.layers.0.blocks.0.attention.self.relative_position_index"
    weights[key] = torch.zeros(49 * 49, dtype=torch.long)
    save_file(weights, path / "model.safetensors")
    ours = Mask2FormerForUniversalSegmentation.from_pretrained(path)
    assert key in ours.load_report.ignored_known_extras


def test_round_trip_is_bit_exact(tmp_path):
    torch.manual_seed(5)
    model = randomize_(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["tiny"])))
    model.save_pretrained(tmp_path / "a")
    loaded = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "a")
    original, again = model.state_dict(), loaded.state_dict()
    assert original.keys() == again.keys()
    assert all(torch.equal(original[k], again[k]) for k in original)
    loaded.save_pretrained(tmp_path / "b")
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "a" / "config.json").read_text()) == json.loads(
        (tmp_path / "b" / "config.json").read_text())
    # the legacy pickle format round-trips as well
    model.save_pretrained(tmp_path / "c", safe_serialization=False)
    from_bin = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "c")
    assert all(torch.equal(original[k], from_bin.state_dict()[k]) for k in original)


def test_body_and_full_checkpoints_load_into_either_class(tmp_path):
    full = randomize_(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["tiny"]))).eval()
    full.save_pretrained(tmp_path / "full")
    body = Mask2FormerModel.from_pretrained(tmp_path / "full")
    assert "class_predictor.weight" in body.load_report.ignored_known_extras
    pixel_values = torch.randn(1, 3, 40, 40)
    with torch.no_grad():
        assert torch.equal(body(pixel_values).masks_queries_logits[-1], full(pixel_values).masks_queries_logits)
    body.save_pretrained(tmp_path / "body")
    head_missing = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "body", strict=False)
    assert head_missing.load_report.missing == ["class_predictor.bias", "class_predictor.weight"]


def test_dtype_and_device_options(tmp_path):
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["tiny"]))
    model.save_pretrained(tmp_path / "m")
    half = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "m", dtype="bfloat16", device="cpu")
    assert all(p.dtype == torch.bfloat16 for p in half.parameters())
    with torch.no_grad():
        out = half(torch.randn(1, 3, 40, 40, dtype=torch.bfloat16))
    assert out.class_queries_logits.dtype == torch.bfloat16 and torch.isfinite(out.masks_queries_logits).all()


def test_batch_equals_single_images():
    model = randomize_(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**CONFIGS["tiny"]))).eval()
    pixel_values = torch.randn(3, 3, 45, 61)
    with torch.no_grad():
        batched = model(pixel_values)
        singles = [model(pixel_values[i : i + 1]) for i in range(3)]
    assert max_abs_diff(batched.masks_queries_logits, torch.cat([s.masks_queries_logits for s in singles])) < 1e-5
    assert max_abs_diff(batched.class_queries_logits, torch.cat([s.class_queries_logits for s in singles])) < 1e-5


def test_public_api_is_importable_and_light():
    import subprocess
    import sys

    code = "import sys, mask2former; bad = [m for m in ('transformers', 'pycocotools', 'huggingface_hub', 'scipy') " \
           "if m in sys.modules]; print(bad); assert not bad"
    subprocess.run([sys.executable, "-c", code], check=True)
    assert set(mask2former.__all__) >= {"Mask2FormerConfig", "Mask2FormerModel", "Mask2FormerForUniversalSegmentation"}
