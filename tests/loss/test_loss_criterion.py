"""Mask2FormerCriterion: names and weights, empty targets, any target resolution/dtype, autocast."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mask2former.loss import LOSS_TERMS, Mask2FormerCriterion

K, Q = 4, 5


class TinyHeads(nn.Module):
    """Per-layer class and mask logits from learnable parameters, so gradients can be checked per parameter."""

    def __init__(self, num_layers: int = 2) -> None:
        super().__init__()
        self.queries = nn.Parameter(torch.randn(Q, 8))
        self.pixels = nn.Parameter(torch.randn(1, 8, 8, 8))  # (1, C, h, w)
        self.class_heads = nn.ModuleList(nn.Linear(8, K + 1) for _ in range(num_layers))
        self.mask_heads = nn.ModuleList(nn.Linear(8, 8) for _ in range(num_layers))

    def forward(self, batch: int):
        pixels = self.pixels.expand(batch, -1, -1, -1)  # (B, C, h, w)
        class_logits, mask_logits = [], []
        for class_head, mask_head in zip(self.class_heads, self.mask_heads):
            queries = self.queries.expand(batch, -1, -1)  # (B, Q, C)
            class_logits.append(class_head(queries))  # (B, Q, K+1)
            mask_logits.append(torch.einsum("bqc,bchw->bqhw", mask_head(queries), pixels))  # (B, Q, h, w)
        return class_logits, mask_logits


def _targets(counts, size=(32, 32), seed=0):
    gen = torch.Generator().manual_seed(seed)
    masks = [torch.rand(n, *size, generator=gen) > 0.6 for n in counts]
    labels = [torch.randint(0, K, (n,), generator=gen) for n in counts]
    return masks, labels


def _criterion(**kwargs):
    return Mask2FormerCriterion(num_labels=K, train_num_points=64, **kwargs)


def test_names_buffer_and_explicit_weights():
    criterion = _criterion(class_weight=2.0, mask_weight=5.0, dice_weight=3.0, no_object_weight=0.25)
    assert torch.equal(criterion.state_dict()["empty_weight"], torch.tensor([1.0, 1.0, 1.0, 1.0, 0.25]))
    assert criterion.matcher.cost_class == 2.0 and criterion.matcher.cost_dice == 3.0

    heads = TinyHeads(num_layers=3)
    masks, labels = _targets([2, 1])
    losses = criterion(*heads(2), masks, labels)
    expected = list(LOSS_TERMS) + [f"{name}_{i}" for i in range(2) for name in LOSS_TERMS]
    assert sorted(losses) == sorted(expected)
    assert all(value.dtype == torch.float32 and value.dim() == 0 for value in losses.values())

    weights = criterion.weight_map(num_layers=3)
    assert weights["loss_dice_1"] == 3.0 and weights["loss_cross_entropy_0"] == 2.0 and weights["loss_mask"] == 5.0
    total = sum(weights[name] * value for name, value in losses.items())
    torch.testing.assert_close(criterion.total_loss(losses), total)
    with pytest.raises(KeyError):
        criterion.total_loss({**losses, "loss_mask_extra": losses["loss_mask"]})

    explicit = _criterion(matcher_class_cost=1.0, matcher_mask_cost=4.0, matcher_dice_cost=6.0)
    assert (explicit.matcher.cost_class, explicit.matcher.cost_mask, explicit.matcher.cost_dice) == (1.0, 4.0, 6.0)


@pytest.mark.parametrize("counts", [(3, 0), (0, 0)], ids=["one-empty", "all-empty"])
def test_empty_targets_give_finite_loss_and_gradients(counts):
    torch.manual_seed(0)
    heads = TinyHeads()
    criterion = _criterion()
    masks, labels = _targets(counts)
    losses = criterion(*heads(2), masks, labels)
    total = criterion.total_loss(losses)
    assert torch.isfinite(total)
    assert losses["loss_cross_entropy"] > 0  # all-no-object targets still supervise the classes
    if sum(counts) == 0:
        assert losses["loss_mask"] == 0 and losses["loss_dice_0"] == 0
    total.backward()
    for name, param in heads.named_parameters():
        assert param.grad is not None, name  # DDP needs every parameter in the graph
        assert torch.isfinite(param.grad).all(), name


def test_target_dtype_and_resolution_do_not_matter():
    heads = TinyHeads()
    criterion = _criterion()
    masks, labels = _targets([2, 3], size=(16, 16))
    logits = heads(2)

    def run(target_masks):
        torch.manual_seed(3)
        return criterion.total_loss(criterion(*logits, target_masks, labels))

    reference = run(masks)
    for dtype in (torch.uint8, torch.float32):
        torch.testing.assert_close(run([m.to(dtype) for m in masks]), reference)
    # the same masks at 4x nearest-neighbour upsampling (64x64 targets for 8x8 logits): the points are the same
    # physical locations, only the bilinear blur at mask edges differs
    upsampled = [m.repeat_interleave(4, 1).repeat_interleave(4, 2) for m in masks]
    torch.testing.assert_close(run(upsampled), reference, rtol=0.05, atol=0.0)
    # odd sizes, different per image (read as zero-padded to the largest): just finite
    odd = [torch.rand(2, 50, 70) > 0.5, torch.rand(3, 45, 66) > 0.5]
    assert torch.isfinite(run(odd))


def test_bf16_autocast_loss_is_fp32_and_close():
    torch.manual_seed(0)
    heads = TinyHeads()
    criterion = _criterion()
    masks, labels = _targets([3, 2])

    torch.manual_seed(5)
    reference = criterion.total_loss(criterion(*heads(2), masks, labels))

    torch.manual_seed(5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        class_logits, mask_logits = heads(2)
        assert class_logits[0].dtype == torch.bfloat16
        losses = criterion(class_logits, mask_logits, masks, labels)
        total = criterion.total_loss(losses)
    assert total.dtype == torch.float32 and all(v.dtype == torch.float32 for v in losses.values())
    torch.testing.assert_close(total, reference, rtol=1e-2, atol=0.0)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in heads.parameters())
