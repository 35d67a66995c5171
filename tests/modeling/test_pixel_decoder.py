"""Pixel decoder: numerical parity with transformers' Mask2FormerPixelDecoder, and invariants."""

from __future__ import annotations

import math

import pytest
import torch

from mask2former.modeling.backbones import FeatureInfo
from mask2former.modeling.pixel_decoder import PixelDecoder, PixelDecoderOutput

CHANNELS = [16, 24, 40, 48]
STRIDES = [4, 8, 16, 32]
DIM = 32  # GroupNorm(32) needs a multiple of 32


def _backbone_maps(batch: int, height: int, width: int, channels=CHANNELS, strides=STRIDES, seed: int = 0):
    """Random maps with the sizes a real backbone gives for an odd (height, width) input (ceil at every stride)."""
    generator = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, c, math.ceil(height / s), math.ceil(width / s), generator=generator)
        for c, s in zip(channels, strides)
    ]


def _ours(channels=CHANNELS, strides=STRIDES, common_stride: int = 4, num_encoder_layers: int = 2) -> PixelDecoder:
    return PixelDecoder(
        in_features=[FeatureInfo(c, s) for c, s in zip(channels, strides)],
        feature_dim=DIM,
        mask_dim=DIM,
        num_heads=4,
        num_encoder_layers=num_encoder_layers,
        encoder_ffn_dim=64,
        common_stride=common_stride,
    )


def _randomised_transformers_decoder(channels, strides, common_stride: int, encoder_layers: int):
    transformers = pytest.importorskip("transformers")
    from transformers.models.mask2former.modeling_mask2former import Mask2FormerPixelDecoder

    config = transformers.Mask2FormerConfig(
        feature_size=DIM,
        mask_feature_size=DIM,
        hidden_dim=DIM,
        encoder_feedforward_dim=64,
        num_attention_heads=4,
        encoder_layers=encoder_layers,
        feature_strides=list(strides),
        common_stride=common_stride,
    )
    torch.manual_seed(0)
    decoder = Mask2FormerPixelDecoder(config, feature_channels=list(channels)).eval()
    with torch.no_grad():
        for name, param in decoder.named_parameters():
            if name == "level_embed":
                param.normal_()
            elif param.dim() == 1 and ("norm" in name or name.split(".")[-2] == "1"):  # LayerNorm / GroupNorm
                param.copy_((1.0 if name.endswith("weight") else 0.0) + 0.2 * torch.randn_like(param))
            elif "sampling_offsets" in name:
                # spread the points over several pixels, many of them outside the coarse maps
                param.normal_(0.0, 0.3 if name.endswith("weight") else 1.0)
            elif "attention_weights" in name:
                param.normal_(0.0, 0.3)
    return decoder


def _parity(channels, strides, common_stride, encoder_layers, height, width):
    theirs = _randomised_transformers_decoder(channels, strides, common_stride, encoder_layers)
    ours = _ours(channels, strides, common_stride, encoder_layers).eval()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    features = _backbone_maps(2, height, width, channels, strides)
    with torch.no_grad():
        out = ours(features, output_attentions=True)
        expected = theirs(features, output_attentions=True)
    return out, expected


def test_matches_transformers():
    # 45 x 75 input: maps 12x19, 6x10, 3x5, 2x3, so the FPN upsampling is by a non-integer factor
    out, expected = _parity(CHANNELS, STRIDES, common_stride=4, encoder_layers=2, height=45, width=75)
    assert isinstance(out, PixelDecoderOutput)
    assert out.mask_features.shape == (2, DIM, 12, 19)
    assert [tuple(x.shape) for x in out.multi_scale_features] == [(2, DIM, 2, 3), (2, DIM, 3, 5), (2, DIM, 6, 10)]
    torch.testing.assert_close(out.mask_features, expected.mask_features, rtol=0, atol=1e-5)
    assert len(out.multi_scale_features) == len(expected.multi_scale_features) == 3
    for ours_map, their_map in zip(out.multi_scale_features, expected.multi_scale_features):
        torch.testing.assert_close(ours_map, their_map, rtol=0, atol=1e-5)
    assert len(out.attentions) == 2
    for ours_weights, their_weights in zip(out.attentions, expected.attentions):
        assert ours_weights.shape == (2, 6 + 15 + 60, 4, 3, 4)
        # transformers hands them out as (S, B, nh, L, P)
        torch.testing.assert_close(ours_weights, their_weights.transpose(0, 1), rtol=0, atol=1e-6)


def test_matches_transformers_with_two_fpn_levels():
    # five backbone maps and common_stride 2: adapter_1 on stride 2, adapter_2 on stride 4
    channels, strides = [16, 16, 24, 40, 48], [2, 4, 8, 16, 32]
    out, expected = _parity(channels, strides, common_stride=2, encoder_layers=1, height=27, width=37)
    assert out.mask_features.shape == (2, DIM, 14, 19)
    torch.testing.assert_close(out.mask_features, expected.mask_features, rtol=0, atol=1e-5)
    for ours_map, their_map in zip(out.multi_scale_features, expected.multi_scale_features):
        torch.testing.assert_close(ours_map, their_map, rtol=0, atol=1e-5)


def test_state_dict_names_and_init():
    decoder = _ours()
    expected = {"level_embed", "mask_projection.weight", "mask_projection.bias"}
    expected |= {f"input_projections.{i}.{m}.{k}" for i in range(3) for m in (0, 1) for k in ("weight", "bias")}
    expected |= {"adapter_1.0.weight", "adapter_1.1.weight", "adapter_1.1.bias"}
    expected |= {"layer_1.0.weight", "layer_1.1.weight", "layer_1.1.bias"}
    for i in range(2):
        for name in ("self_attn.sampling_offsets", "self_attn.attention_weights", "self_attn.value_proj",
                     "self_attn.output_proj", "self_attn_layer_norm", "fc1", "fc2", "final_layer_norm"):
            expected |= {f"encoder.layers.{i}.{name}.weight", f"encoder.layers.{i}.{name}.bias"}
    assert set(decoder.state_dict()) == expected
    assert len(list(decoder.buffers())) == 0
    assert all(decoder.input_projections[i][0].bias.abs().sum() == 0 for i in range(3))
    assert decoder.mask_projection.bias.abs().sum() == 0
    assert decoder.encoder.layers[0].self_attn.sampling_offsets.weight.abs().sum() == 0
    # no FPN level at all when the encoder's finest stride already is the common stride
    assert not hasattr(_ours(common_stride=8, num_encoder_layers=1), "adapter_1")


def test_batched_equals_per_image():
    decoder = _ours().eval()
    features = _backbone_maps(2, 45, 75)
    with torch.no_grad():
        batched = decoder(features)
        singles = [decoder([x[i : i + 1] for x in features]) for i in range(2)]
    for i, single in enumerate(singles):
        torch.testing.assert_close(batched.mask_features[i : i + 1], single.mask_features, rtol=0, atol=1e-5)
        for batched_map, single_map in zip(batched.multi_scale_features, single.multi_scale_features):
            torch.testing.assert_close(batched_map[i : i + 1], single_map, rtol=0, atol=1e-5)
    assert batched.attentions is None


def test_gradient_reaches_every_parameter():
    decoder = _ours()
    # the offset and weight linears start at zero, which keeps the queries (and level_embed) out of the output until
    # the first update; move them off zero as a training step would
    with torch.no_grad():
        for layer in decoder.encoder.layers:
            layer.self_attn.sampling_offsets.weight.normal_(0.0, 0.01)
            layer.self_attn.attention_weights.weight.normal_(0.0, 0.01)
    out = decoder(_backbone_maps(1, 45, 75))
    generator = torch.Generator().manual_seed(1)
    # random cotangents: a plain sum is flat through GroupNorm with one channel per group
    outputs = (out.mask_features, *out.multi_scale_features)
    loss = sum((t * torch.randn(t.shape, generator=generator)).sum() for t in outputs)
    loss.backward()
    missing = [name for name, p in decoder.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not missing
