"""Swin backbone: numerical parity with transformers' SwinBackbone, checkpoint names, and invariants."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mask2former.modeling.backbones import FeatureInfo
from mask2former.modeling.backbones.swin import SwinBackbone
from mask2former.modeling.backbones.swin_layers import (
    relative_position_index,
    shifted_window_mask,
    window_gather_indices,
    window_partition,
    window_reverse,
)

transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

STAGES = ["stage1", "stage2", "stage3", "stage4"]

# (embed_dim, depths, num_heads, window_size)
TINY = (16, (1, 1, 2, 1), (1, 2, 2, 4), 7)
CONFIGS = {
    "w7-d1121": TINY,
    "w7-d2222": (16, (2, 2, 2, 2), (1, 2, 2, 4), 7),
    "w12-d2222": (24, (2, 2, 2, 2), (1, 2, 2, 4), 12),
    "w12-d1121": (24, (1, 1, 2, 1), (2, 2, 4, 4), 12),
}
# (height, width): odd sizes, a square multiple of 32, and inputs smaller than the window at the deep stages
SIZES = [(61, 93), (64, 64), (130, 97), (32, 40)]

OFFICIAL = {
    "tiny": (96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
    "small": (96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
    "base": (128, (2, 2, 18, 2), (4, 8, 16, 32), 12),
    "large": (192, (2, 2, 18, 2), (6, 12, 24, 48), 12),
}


def _kwargs(config: tuple) -> dict:
    embed_dim, depths, num_heads, window_size = config
    return dict(embed_dim=embed_dim, depths=list(depths), num_heads=list(num_heads), window_size=window_size)


def _reference_and_ours(config: tuple, tmp_path, *, seed: int = 0) -> tuple[torch.nn.Module, SwinBackbone]:
    """A transformers SwinBackbone with random weights (norms and bias tables too) and ours loaded from its file."""
    torch.manual_seed(seed)
    reference_config = transformers.SwinConfig(**_kwargs(config), out_features=STAGES)
    reference_config._attn_implementation = "eager"  # the plain softmax(QK^T + bias) path as the oracle
    reference = transformers.models.swin.modeling_swin.SwinBackbone(reference_config).eval()
    with torch.no_grad():
        for name, param in reference.named_parameters():
            is_norm_weight = param.dim() == 1 and "norm" in name and name.endswith("weight")
            param.copy_(torch.randn_like(param) * 0.1 + (1.0 if is_norm_weight else 0.0))
    reference.save_pretrained(tmp_path)
    state = safetensors_torch.load_file(tmp_path / "model.safetensors")
    state = {k: v for k, v in state.items() if not k.startswith("swin.layernorm.")}  # unused by the backbone
    ours = SwinBackbone(**_kwargs(config)).eval()
    ours.load_state_dict(state, strict=True)
    return reference, ours


@pytest.mark.parametrize("name", list(CONFIGS))
def test_matches_transformers(name, tmp_path):
    reference, ours = _reference_and_ours(CONFIGS[name], tmp_path)
    for height, width in SIZES:
        pixel_values = torch.randn(2, 3, height, width)
        with torch.no_grad():
            expected = reference(pixel_values).feature_maps
            actual = ours(pixel_values)
        assert len(actual) == len(expected) == 4
        for level, (a, e) in enumerate(zip(actual, expected)):
            assert a.shape == e.shape, (height, width, level)
            err = (a - e).abs().max().item()
            assert err < 1e-5, f"{name} {height}x{width} stage{level + 1}: max abs error {err:.2e}"


def test_state_dict_names(tmp_path):
    _, ours = _reference_and_ours(TINY, tmp_path)
    keys = set(ours.state_dict())
    assert not any("relative_position_index" in k for k in keys)
    assert "encoder.layers.0.blocks.0.attention.self.relative_position_bias_table" in keys
    assert "encoder.layers.2.blocks.1.attention.output.dense.weight" in keys
    assert "encoder.layers.0.downsample.reduction.weight" in keys
    assert "encoder.layers.0.downsample.reduction.bias" not in keys
    assert "encoder.layers.3.downsample.norm.weight" not in keys
    assert {f"hidden_states_norms.stage{s}.weight" for s in range(1, 5)} <= keys
    # the derived buffer exists and equals a fresh computation
    buffer = ours.encoder.layers[1].blocks[0].attention.self.relative_position_index
    assert torch.equal(buffer, relative_position_index(7))


def test_feature_info_matches_outputs():
    model = SwinBackbone(**_kwargs(TINY)).eval()
    assert model.feature_info == [FeatureInfo(16, 4), FeatureInfo(32, 8), FeatureInfo(64, 16), FeatureInfo(128, 32)]
    with torch.no_grad():
        features = model(torch.randn(1, 3, 61, 93))
    for info, feature in zip(model.feature_info, features):
        assert feature.shape == (1, info.channels, -(-61 // info.stride), -(-93 // info.stride))

    subset = SwinBackbone(**_kwargs(TINY), out_indices=(2, 4)).eval()
    assert [i.stride for i in subset.feature_info] == [8, 32]
    assert set(subset.hidden_states_norms) == {"stage2", "stage4"}
    with torch.no_grad():
        assert [f.shape[1] for f in subset(torch.randn(1, 3, 32, 32))] == [32, 128]


def test_batch_equals_single_images():
    torch.manual_seed(0)
    model = SwinBackbone(**_kwargs(CONFIGS["w7-d2222"])).eval()
    pixel_values = torch.randn(3, 3, 45, 70)
    with torch.no_grad():
        batched = model(pixel_values)
        singles = [model(pixel_values[i : i + 1]) for i in range(3)]
    for level, feature in enumerate(batched):
        single = torch.cat([s[level] for s in singles])
        torch.testing.assert_close(feature, single, atol=1e-5, rtol=0)


def test_gradient_reaches_every_parameter():
    torch.manual_seed(0)
    model = SwinBackbone(**_kwargs(CONFIGS["w7-d2222"]), drop_path_rate=0.2).train()
    features = model(torch.randn(2, 3, 40, 52))
    sum(f.square().mean() for f in features).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing


def test_drop_path_only_in_training():
    torch.manual_seed(0)
    plain = SwinBackbone(**_kwargs(TINY)).eval()
    dropping = SwinBackbone(**_kwargs(TINY), drop_path_rate=0.5)
    dropping.load_state_dict(plain.state_dict())
    pixel_values = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = plain(pixel_values)
        assert all(torch.equal(a, e) for a, e in zip(dropping.eval()(pixel_values), expected))
        assert not all(torch.equal(a, e) for a, e in zip(dropping.train()(pixel_values), expected))
    rates = [b.drop_path.drop_prob for stage in dropping.encoder.layers for b in stage.blocks]
    assert rates[0] == 0.0 and rates[-1] == pytest.approx(0.5) and rates == sorted(rates)


def test_window_helpers():
    x = torch.arange(2 * 6 * 9 * 2, dtype=torch.float32).view(2, 6, 9, 2)
    windows = window_partition(x, 3)  # (B, nW, N, C)
    assert windows.shape == (2, 6, 9, 2)
    assert torch.equal(windows[1, 4], x[1, 3:6, 3:6].reshape(9, 2))  # window row 1, column 1
    assert torch.equal(window_reverse(windows, 3, 6, 9), x)

    index = relative_position_index(3)
    assert index.shape == (9, 9) and index.min() == 0 and index.max() == 24
    assert (index.diagonal() == 12).all()  # zero offset sits in the middle of the 5x5 table

    mask = shifted_window_mask(6, 6, 3, 1, device=torch.device("cpu"), dtype=torch.float32)
    assert mask.shape == (4, 9, 9)
    assert (mask[0] == 0).all()  # the top-left window holds one region only
    assert set(mask.unique().tolist()) == {0.0, -100.0}


@pytest.mark.parametrize(
    "height, width, window, shift", [(13, 17, 7, 3), (14, 21, 7, 3), (5, 9, 7, 0), (7, 7, 7, 3), (3, 2, 12, 6)]
)
def test_window_gathers_equal_pad_roll_partition(height, width, window, shift):
    """The two gathers of a block equal the readable path: pad, roll, partition; reverse, roll back, crop."""
    x = torch.randn(2, height, width, 4)
    padded = F.pad(x, (0, 0, 0, -width % window, 0, -height % window))  # (B, Hp, Wp, C)
    expected = window_partition(torch.roll(padded, shifts=(-shift, -shift), dims=(1, 2)), window)  # (B, nW, N, C)
    to_windows, from_windows = window_gather_indices(height, width, window, shift, device=torch.device("cpu"))
    tokens = torch.cat([x.flatten(1, 2), x.new_zeros(2, 1, 4)], dim=1)  # map tokens, then the zero token
    windows = tokens[:, to_windows].view(expected.shape)
    assert torch.equal(windows, expected)
    rolled_back = torch.roll(window_reverse(windows, window, *padded.shape[1:3]), (shift, shift), dims=(1, 2))
    assert torch.equal(windows.flatten(1, 2)[:, from_windows].view(x.shape), rolled_back[:, :height, :width])


@pytest.mark.parametrize("size", list(OFFICIAL))
def test_official_sizes_parameter_count(size):
    config = OFFICIAL[size]
    reference_config = transformers.SwinConfig(**_kwargs(config), out_features=STAGES)
    with torch.device("meta"):
        ours = SwinBackbone(**_kwargs(config))
        reference = transformers.models.swin.modeling_swin.SwinBackbone(reference_config)
    ours_count = sum(p.numel() for p in ours.parameters())
    # the reference also holds ``swin.layernorm`` (a final norm SwinBackbone never uses); we do not
    reference_count = sum(p.numel() for n, p in reference.named_parameters() if not n.startswith("swin.layernorm."))
    print(f"Swin-{size}: {ours_count:,} parameters (transformers, without swin.layernorm: {reference_count:,})")
    assert ours_count == reference_count
    assert [i.channels for i in ours.feature_info] == [config[0] * 2**i for i in range(4)]


def _blocks(model):
    """Every Swin block of ``model`` (the fast-path thresholds are attributes of each)."""
    from mask2former.modeling.backbones.swin_layers import SwinBlock

    blocks = [m for m in model.modules() if isinstance(m, SwinBlock)]
    assert blocks
    return blocks


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_qkv_before_windows_equals_qkv_of_windows(qkv_bias):
    """Blocks on heavily padded maps compute q, k, v on the map's tokens and give padding the bias: same features
    as the product on the padded windows (checked on every map size, both ways)."""
    torch.manual_seed(0)
    model = SwinBackbone(**_kwargs(CONFIGS["w7-d2222"]), qkv_bias=qkv_bias).eval()
    blocks = _blocks(model)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.normal_()  # non-zero biases: padding must take exactly the bias
    x = torch.randn(2, 3, 61, 93)
    features = {}
    for threshold in (0.0, float("inf")):  # always first / never first
        for block in blocks:
            block.qkv_before_windows = threshold
        with torch.no_grad():
            features[threshold] = model(x)
    for first, last in zip(features[0.0], features[float("inf")], strict=True):
        torch.testing.assert_close(first, last, rtol=1e-5, atol=1e-5)


def test_window_slabs_give_the_bits_of_all_windows_at_once():
    """In CPU inference the attention runs a few windows at a time (shifted windows, padding and a batch of 2
    included): the same features, bit for bit."""
    torch.manual_seed(0)
    model = SwinBackbone(**_kwargs(CONFIGS["w7-d2222"])).eval()
    blocks = _blocks(model)
    x = torch.randn(2, 3, 157, 221)  # stage 1: 40x56 tokens per image, enough for slabs (> 1024 in the batch)
    features = {}
    for tokens in (10**9, 3 * 2 * 49):  # all windows in one call / three windows of each image per slab
        for block in blocks:
            block.window_slab_tokens = tokens
        with torch.no_grad():
            features[tokens] = model(x)
    for whole, sliced in zip(features[10**9], features[3 * 2 * 49], strict=True):
        assert torch.equal(whole, sliced)
