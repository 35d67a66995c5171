"""Multi-scale deformable attention: the reference function against independent computations and transformers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mask2former.modeling.deformable_attention import (
    MultiScaleDeformableAttention,
    multi_scale_deformable_attention,
    multi_scale_deformable_attention_fast,
    softmax_short_rows,
    weighted_row_sums,
)
from mask2former.modeling.fast_paths import exportable

SPATIAL_SHAPES = [(3, 5), (2, 3), (1, 2)]


def _random_inputs(dtype: torch.dtype = torch.float64, batch: int = 2, heads: int = 2, head_dim: int = 3):
    generator = torch.Generator().manual_seed(0)
    seq_len = sum(h * w for h, w in SPATIAL_SHAPES)
    queries, levels, points = 7, len(SPATIAL_SHAPES), 3
    value = torch.randn(batch, seq_len, heads, head_dim, generator=generator, dtype=dtype)
    # a third of the points fall outside the map, some of them by less than a pixel (partly zero-padded corners)
    locations = torch.rand(batch, queries, heads, levels, points, 2, generator=generator, dtype=dtype) * 1.6 - 0.3
    weights = torch.rand(batch, queries, heads, levels, points, generator=generator, dtype=dtype)
    return value, locations, weights


def _explicit_bilinear(value, spatial_shapes, locations, weights):
    """Per-corner gather with zero padding, written from the definition of bilinear interpolation."""
    batch, _, heads, head_dim = value.shape
    _, queries, _, levels, points, _ = locations.shape
    output = value.new_zeros(batch, queries, heads, head_dim)
    start = 0
    for level, (height, width) in enumerate(spatial_shapes):
        value_level = value[:, start : start + height * width]  # (B, H*W, nh, hd)
        start += height * width
        # pixel coordinates: pixel (i, j) has its centre at (j + 0.5, i + 0.5) in normalised units times (W, H)
        x = locations[:, :, :, level, :, 0] * width - 0.5  # (B, Q, nh, P)
        y = locations[:, :, :, level, :, 1] * height - 0.5
        x0, y0 = x.floor(), y.floor()
        for dx in (0, 1):
            for dy in (0, 1):
                xc, yc = x0 + dx, y0 + dy
                corner_weight = (1 - (x - xc).abs()) * (1 - (y - yc).abs())  # (B, Q, nh, P)
                inside = (xc >= 0) & (xc < width) & (yc >= 0) & (yc < height)
                index = (yc.clamp(0, height - 1) * width + xc.clamp(0, width - 1)).long()  # (B, Q, nh, P)
                index = index.permute(0, 2, 1, 3).reshape(batch, heads, queries * points)  # (B, nh, Q*P)
                gathered = torch.gather(
                    value_level.permute(0, 2, 1, 3),  # (B, nh, H*W, hd)
                    2,
                    index[..., None].expand(-1, -1, -1, head_dim),
                )  # (B, nh, Q*P, hd)
                gathered = gathered.reshape(batch, heads, queries, points, head_dim).permute(0, 2, 1, 3, 4)
                factor = corner_weight * inside * weights[:, :, :, level]  # (B, Q, nh, P)
                output = output + (gathered * factor[..., None]).sum(dim=3)
    return output.reshape(batch, queries, heads * head_dim)


def _grads(fn, value, locations, weights):
    inputs = [t.clone().requires_grad_(True) for t in (value, locations, weights)]
    out = fn(inputs[0], SPATIAL_SHAPES, inputs[1], inputs[2])
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    grads = torch.autograd.grad((out * cotangent).sum(), inputs)
    return out.detach(), grads


def test_matches_explicit_bilinear_sampling_and_gradients():
    value, locations, weights = _random_inputs()
    out, grads = _grads(multi_scale_deformable_attention, value, locations, weights)
    expected, expected_grads = _grads(_explicit_bilinear, value, locations, weights)
    assert out.shape == (2, 7, 6)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-12)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_transformers_function_and_gradients(dtype):
    modeling = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    value, locations, weights = _random_inputs(dtype)
    out, grads = _grads(multi_scale_deformable_attention, value, locations, weights)
    expected, expected_grads = _grads(modeling.multi_scale_deformable_attention, value, locations, weights)
    atol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, expected, rtol=0, atol=atol)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_path_matches_reference_and_gradients(dtype):
    value, locations, weights = _random_inputs(dtype, batch=3, heads=4, head_dim=5)
    # beyond the random points (a third outside the map): points far outside, on the map's corners and half a pixel
    # outside, where one corner pair leaves the map
    locations[0, 0, :, :, 0] = torch.tensor([-3.0, 7.0], dtype=dtype)
    locations[0, 1, :, :, 0] = torch.tensor([50.0, -50.0], dtype=dtype)
    for level, (height, width) in enumerate(SPATIAL_SHAPES):
        locations[1, 3, :, level, 1] = torch.tensor([0.0, 1.0], dtype=dtype)  # corners of the map
        locations[2, 4, :, level, 2] = torch.tensor([1.0 + 0.5 / width, -0.5 / height], dtype=dtype)  # half outside
    out, grads = _grads(multi_scale_deformable_attention_fast, value, locations, weights)
    expected, expected_grads = _grads(multi_scale_deformable_attention, value, locations, weights)
    atol = 1e-5 if dtype == torch.float32 else 1e-12
    torch.testing.assert_close(out, expected, rtol=0, atol=atol)
    for name, grad, expected_grad in zip(("value", "locations", "weights"), grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=atol, msg=f"gradient w.r.t. {name}")
    assert grads[1][0, :2, :, :, 0].abs().max() == 0  # far outside: no gradient, as with grid_sample

    # Exactly on pixel centres the output is the pixel itself. (The location gradient is one-sided there, and which
    # side depends on the last bit of each implementation's coordinate arithmetic, so it is not compared.)
    for level, (height, width) in enumerate(SPATIAL_SHAPES):
        locations[:, :, :, level, 0] = torch.tensor([0.5 / width, 1.5 / height], dtype=dtype).clamp(max=1.0)
    torch.testing.assert_close(
        multi_scale_deformable_attention_fast(value, SPATIAL_SHAPES, locations, weights),
        multi_scale_deformable_attention(value, SPATIAL_SHAPES, locations, weights),
        rtol=0,
        atol=atol,
    )


def test_fast_path_on_one_level_one_point_and_unequal_widths():
    generator = torch.Generator().manual_seed(3)
    for shapes in ([(4, 9)], [(1, 1), (6, 2), (2, 11)]):
        seq_len = sum(h * w for h, w in shapes)
        value = torch.randn(2, seq_len, 3, 4, generator=generator, dtype=torch.float64)
        locations = torch.rand(2, 5, 3, len(shapes), 1, 2, generator=generator, dtype=torch.float64) * 1.4 - 0.2
        weights = torch.rand(2, 5, 3, len(shapes), 1, generator=generator, dtype=torch.float64)
        torch.testing.assert_close(
            multi_scale_deformable_attention_fast(value, shapes, locations, weights),
            multi_scale_deformable_attention(value, shapes, locations, weights),
            rtol=0,
            atol=1e-12,
        )


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_fast_path_in_half_precision_is_close_to_float32(dtype):
    value, locations, weights = _random_inputs(torch.float32, heads=4, head_dim=8)
    expected = multi_scale_deformable_attention(value, SPATIAL_SHAPES, locations, weights)
    got = multi_scale_deformable_attention_fast(value.to(dtype), SPATIAL_SHAPES, locations.to(dtype), weights.to(dtype))
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), expected, rtol=0, atol=0.05)


@pytest.mark.parametrize("per_level_reference", [False, True])
def test_module_switches_between_fast_path_and_reference(per_level_reference):
    """Same output and the same gradients for every parameter and input (the fast path reorders the rows of
    sampling_offsets and computes its own softmax and coordinates)."""
    torch.manual_seed(0)
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=3, num_points=2).double()
    with torch.no_grad():
        for param in attn.parameters():
            param.normal_(0, 0.5)
    seq_len = sum(h * w for h, w in SPATIAL_SHAPES)
    hidden = torch.randn(2, seq_len, 16, dtype=torch.float64, requires_grad=True)
    position = torch.randn(1, seq_len, 16, dtype=torch.float64)
    levels = len(SPATIAL_SHAPES) if per_level_reference else 1
    reference = torch.rand(2, seq_len, levels, 2, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, seq_len, 16, dtype=torch.float64)

    def run(use_reference: bool):
        with exportable(use_reference):
            out, weights = attn(hidden, position, reference, SPATIAL_SHAPES)
        grads = torch.autograd.grad((out * upstream).sum(), [hidden, reference, *attn.parameters()])
        return out, weights, grads

    fast, fast_weights, fast_grads = run(False)
    slow, slow_weights, slow_grads = run(True)
    torch.testing.assert_close(fast, slow, rtol=0, atol=1e-12)
    torch.testing.assert_close(fast_weights, slow_weights, rtol=0, atol=1e-12)
    for got, expected in zip(fast_grads, slow_grads):
        torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_short_row_softmax_matches_softmax_and_its_gradient():
    logits = torch.randn(5, 7, 12, dtype=torch.float64) * 30  # large logits: the shift by the maximum matters
    logits.requires_grad_(True)
    upstream = torch.randn(5, 7, 12, dtype=torch.float64)
    got = softmax_short_rows(logits)
    expected = logits.softmax(-1)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-15)
    (got_grad,) = torch.autograd.grad((got * upstream).sum(), logits)
    (expected_grad,) = torch.autograd.grad((expected * upstream).sum(), logits)
    torch.testing.assert_close(got_grad, expected_grad, rtol=0, atol=1e-12)
    with torch.no_grad():  # in place without autograd
        torch.testing.assert_close(softmax_short_rows(logits.detach().clone()), expected.detach(), rtol=0, atol=1e-15)


@pytest.mark.parametrize("function", [multi_scale_deformable_attention, multi_scale_deformable_attention_fast])
def test_rejects_shapes_that_do_not_cover_the_sequence(function):
    value, locations, weights = _random_inputs()
    with pytest.raises(ValueError):
        function(value, SPATIAL_SHAPES[:2], locations[:, :, :, :2], weights[:, :, :, :2])


def test_initialisation():
    attn = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=3, num_points=2)
    assert set(dict(attn.named_parameters())) == {
        f"{name}.{kind}"
        for name in ("sampling_offsets", "attention_weights", "value_proj", "output_proj")
        for kind in ("weight", "bias")
    }
    assert attn.sampling_offsets.weight.abs().sum() == 0
    assert attn.attention_weights.weight.abs().sum() == 0 and attn.attention_weights.bias.abs().sum() == 0
    assert attn.value_proj.bias.abs().sum() == 0 and attn.output_proj.bias.abs().sum() == 0
    grid = attn.sampling_offsets.bias.view(4, 3, 2, 2)  # (nh, L, P, 2)
    # head h points along angle 2*pi*h/4 (right, down, left, up), point p at distance p + 1, on every level
    directions = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    expected = directions[:, None, None, :] * torch.tensor([1.0, 2.0])[None, None, :, None]
    torch.testing.assert_close(grid, expected.expand(4, 3, 2, 2), atol=1e-6, rtol=0)
    # the diagonal heads of an 8-head module are scaled so that max(|x|, |y|) = 1
    attn8 = MultiScaleDeformableAttention(embed_dim=16, num_heads=8, num_levels=1, num_points=1)
    assert torch.allclose(attn8.sampling_offsets.bias.view(8, 2)[1], torch.tensor([1.0, 1.0]))


def test_module_matches_transformers_module():
    modeling = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
    torch.manual_seed(0)
    ours = MultiScaleDeformableAttention(embed_dim=16, num_heads=4, num_levels=3, num_points=2)
    theirs = modeling.Mask2FormerPixelDecoderEncoderMultiscaleDeformableAttention(16, 4, 3, 2)
    with torch.no_grad():
        for param in theirs.parameters():
            param.normal_(0, 0.5)
    ours.load_state_dict(theirs.state_dict(), strict=True)

    seq_len = sum(h * w for h, w in SPATIAL_SHAPES)
    hidden = torch.randn(2, seq_len, 16)
    pos = torch.randn(1, seq_len, 16)
    reference = torch.rand(2, seq_len, 3, 2)
    out, weights = ours(hidden, pos, reference, SPATIAL_SHAPES)
    expected, expected_weights = theirs(
        hidden_states=hidden,
        encoder_hidden_states=hidden,
        position_embeddings=pos,
        reference_points=reference,
        spatial_shapes_list=SPATIAL_SHAPES,
    )
    assert out.shape == (2, seq_len, 16) and weights.shape == (2, seq_len, 4, 3, 2)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-5)
    torch.testing.assert_close(weights, expected_weights, rtol=0, atol=1e-6)
    # one reference point shared by all levels broadcasts like the expanded tensor
    shared = reference[:, :, :1]
    torch.testing.assert_close(
        ours(hidden, pos, shared, SPATIAL_SHAPES)[0], ours(hidden, pos, shared.expand(-1, -1, 3, -1), SPATIAL_SHAPES)[0]
    )
    # softmax over levels x points
    torch.testing.assert_close(weights.detach().sum(dim=(-2, -1)), torch.ones(2, seq_len, 4))


@pytest.mark.parametrize("index_dtype", [torch.int32, torch.int64])
def test_weighted_row_sums_gradients_equal_embedding_bags(index_dtype):
    """The sorted, transposed backward gives embedding_bag's own gradients (repeated rows, table rows nobody reads)."""
    gen = torch.Generator().manual_seed(3)
    table = torch.randn(50, 6, dtype=torch.float64, generator=gen, requires_grad=True)
    rows = torch.randint(0, 40, (30, 8), generator=gen).to(index_dtype)  # rows 40..49 are never read
    rows[:, 1] = rows[:, 0]  # the same row twice in a bag
    weights = torch.rand(30, 8, dtype=torch.float64, generator=gen, requires_grad=True)
    upstream = torch.randn(30, 6, dtype=torch.float64, generator=gen)
    got = weighted_row_sums(rows, table, weights)
    expected = F.embedding_bag(rows, table, mode="sum", per_sample_weights=weights)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    got_grads = torch.autograd.grad(got, (table, weights), upstream)
    expected_grads = torch.autograd.grad(expected, (table, weights), upstream)
    for a, b in zip(got_grads, expected_grads):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert got_grads[0][40:].abs().max() == 0
    # only the table needs a gradient
    (table_only,) = torch.autograd.grad(weighted_row_sums(rows, table, weights.detach()), table, upstream)
    torch.testing.assert_close(table_only, expected_grads[0], rtol=0, atol=1e-12)
