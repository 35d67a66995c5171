"""Hungarian matcher and point sampling: invariants, robustness, and vectorised vs reference costs."""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F

from mask2former.loss import (
    HungarianMatcher,
    dice_loss,
    importance_points,
    pairwise_dice,
    pairwise_sigmoid_bce,
    point_sample,
    sample_targets,
    sigmoid_bce_loss,
)

K = 4


def _blocky_masks(n: int, gen: torch.Generator, size: int = 32, block: int = 4) -> torch.Tensor:
    coarse = torch.rand(n, size // block, size // block, generator=gen) > 0.5
    return coarse.repeat_interleave(block, 1).repeat_interleave(block, 2)  # (N, size, size) bool


def _well_separated(gen: torch.Generator, num_queries: int = 6, num_targets: int = 3):
    """A problem whose optimal assignment is ``perm[:N] -> 0..N-1`` whatever points are drawn."""
    masks = _blocky_masks(num_targets, gen)  # (N, 32, 32)
    labels = torch.randint(0, K, (num_targets,), generator=gen)
    perm = torch.randperm(num_queries, generator=gen)
    class_logits = torch.randn(num_queries, K + 1, generator=gen)
    mask_logits = torch.randn(num_queries, 8, 8, generator=gen)
    for n in range(num_targets):
        q = perm[n]
        class_logits[q, labels[n]] = 10.0
        small = F.interpolate(masks[n][None, None].float(), size=(8, 8), mode="area")[0, 0]  # (8, 8)
        mask_logits[q] = (small * 2 - 1) * 20.0
    return class_logits, mask_logits, masks, labels, perm[:num_targets]


def test_image_alone_equals_image_in_batch():
    gen = torch.Generator().manual_seed(0)
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=256)
    first = _well_separated(gen)
    second = _well_separated(gen, num_targets=4)

    # random points are drawn per image in order: the first image sees the same points alone or in the batch
    torch.manual_seed(7)
    alone = matcher(first[0][None], first[1][None], [first[2]], [first[3]])
    torch.manual_seed(7)
    batched = matcher(
        torch.stack([first[0], second[0]]),
        torch.stack([first[1], second[1]]),
        [first[2], second[2]],
        [first[3], second[3]],
    )
    assert torch.equal(alone[0][0], batched[0][0]) and torch.equal(alone[0][1], batched[0][1])

    # the second image has large margins, so its matching does not depend on the points either
    second_alone = matcher(second[0][None], second[1][None], [second[2]], [second[3]])
    for pred_idx, tgt_idx in (second_alone[0], batched[1]):
        assert torch.equal(pred_idx[torch.argsort(tgt_idx)], second[4])
    for pred_idx, tgt_idx in (alone[0], batched[0]):
        assert pred_idx.dtype == tgt_idx.dtype == torch.int64
        assert torch.equal(pred_idx[torch.argsort(tgt_idx)], first[4])


def test_matches_brute_force_on_tiny_problem():
    gen = torch.Generator().manual_seed(3)
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    for num_targets in (1, 3, 5):  # 5 targets > 4 queries: only 4 get matched
        class_logits = torch.randn(1, 4, K + 1, generator=gen)
        mask_logits = torch.randn(1, 4, 8, 8, generator=gen)
        masks = _blocky_masks(num_targets, gen, size=16)
        labels = torch.randint(0, K, (num_targets,), generator=gen)

        torch.manual_seed(11)
        coords = torch.rand(1, 64, 2)
        cost = matcher.cost_matrix(class_logits[0], mask_logits[0], masks, labels, coords)  # (Q, N)
        torch.manual_seed(11)
        (pred_idx, tgt_idx), = matcher(class_logits, mask_logits, [masks], [labels])

        best = min(
            sum(cost[q, n].item() for q, n in zip(queries, targets))
            for targets in itertools.permutations(range(num_targets), min(4, num_targets))
            for queries in itertools.permutations(range(4), len(targets))
        )
        assert len(pred_idx) == min(4, num_targets)
        assert abs(cost[pred_idx, tgt_idx].sum().item() - best) < 1e-5


def test_non_finite_logits_do_not_crash():
    gen = torch.Generator().manual_seed(5)
    matcher = HungarianMatcher(cost_class=1.0, cost_mask=5.0, cost_dice=5.0, num_points=64)
    class_logits = torch.randn(2, 5, K + 1, generator=gen)
    mask_logits = torch.randn(2, 5, 8, 8, generator=gen)
    class_logits[0, 1] = float("nan")
    mask_logits[0, 2] = float("inf")
    mask_logits[0, 3, 0, 0] = float("-inf")
    class_logits[1] = float("nan")  # every cost of the second image is NaN
    masks = [_blocky_masks(2, gen, size=16), _blocky_masks(3, gen, size=16)]
    labels = [torch.tensor([0, 1]), torch.tensor([2, 3, 0])]

    indices = matcher(class_logits, mask_logits, masks, labels)
    # broken queries are used only when nothing finite is left: image 0 has two healthy queries (0 and 4)
    assert sorted(indices[0][0].tolist()) == [0, 4]
    assert len(indices[1][0]) == 3 and len(set(indices[1][0].tolist())) == 3


def test_empty_image_gives_empty_indices():
    matcher = HungarianMatcher(cost_class=2.0, cost_mask=5.0, cost_dice=5.0, num_points=32)
    masks = [torch.zeros(0, 16, 16), torch.zeros(0)]  # an empty (0,) tensor is accepted too
    labels = [torch.zeros(0, dtype=torch.int64)] * 2
    indices = matcher(torch.randn(2, 3, K + 1), torch.randn(2, 3, 8, 8), masks, labels)
    for pred_idx, tgt_idx in indices:
        assert pred_idx.shape == tgt_idx.shape == (0,) and pred_idx.dtype == torch.int64


def test_pairwise_costs_match_per_pair_losses():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(5, 50, generator=gen) * 4  # (Q, P)
    targets = (torch.rand(3, 50, generator=gen) > 0.5).float()  # (N, P)
    bce = pairwise_sigmoid_bce(logits, targets)  # (Q, N)
    dice = pairwise_dice(logits, targets)  # (Q, N)
    one = torch.tensor(1.0)
    for q in range(5):
        for n in range(3):
            torch.testing.assert_close(bce[q, n], sigmoid_bce_loss(logits[q : q + 1], targets[n : n + 1], one))
            torch.testing.assert_close(dice[q, n], dice_loss(logits[q : q + 1], targets[n : n + 1], one))


def test_point_sample_reads_pixel_centres():
    features = torch.arange(2 * 3 * 4, dtype=torch.float32).reshape(2, 1, 3, 4)  # (B, C, H, W)
    ys, xs = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    coords = torch.stack(((xs.flatten() + 0.5) / 4, (ys.flatten() + 0.5) / 3), dim=-1)  # (P, 2) as (x, y)
    sampled = point_sample(features, coords[None].expand(2, -1, -1))  # (B, 1, P)
    torch.testing.assert_close(sampled, features.flatten(2))


def test_small_targets_read_as_zero_padded():
    gen = torch.Generator().manual_seed(2)
    masks = torch.rand(3, 20, 28, generator=gen) > 0.5  # (N, H, W) inside a (32, 40) frame
    padded = F.pad(masks.float(), (0, 12, 0, 12))  # (N, 32, 40)
    coords = torch.rand(3, 100, 2, generator=gen)
    torch.testing.assert_close(sample_targets(masks, coords, (32, 40)), sample_targets(padded, coords))
    for dtype in (torch.uint8, torch.float16):
        torch.testing.assert_close(sample_targets(masks.to(dtype), coords), sample_targets(masks, coords))


def test_target_sampling_equals_grid_sample_of_the_float_masks():
    """sample_targets reads the four neighbours in place; the reference is grid_sample on a float copy of the
    selected masks zero-padded to the frame (points beyond the borders included)."""
    gen = torch.Generator().manual_seed(5)
    masks = torch.rand(4, 13, 17, generator=gen) > 0.5  # (N, H, W)
    frame = (16, 21)
    padded = F.pad(masks.float(), (0, 21 - 17, 0, 16 - 13))  # (N, 16, 21)
    coords = torch.rand(3, 500, 2, generator=gen) * 1.2 - 0.1  # some points outside [0, 1]
    chosen = torch.tensor([2, 0, 3])
    expected = point_sample(padded[chosen][:, None], coords)[:, 0]  # (3, P)
    torch.testing.assert_close(sample_targets(masks, coords, frame, mask_index=chosen), expected, rtol=0, atol=1e-6)
    shared = coords[:1]  # (1, P, 2): every mask at the same points, as the matcher samples them
    expected = point_sample(padded[:, None], shared)[:, 0]  # (N, P)
    torch.testing.assert_close(sample_targets(masks, shared, frame), expected, rtol=0, atol=1e-6)


def test_importance_points_prefer_uncertain_regions():
    logits = torch.full((2, 1, 16, 16), 10.0)
    logits[:, :, :, :8] = 0.0  # the left half is maximally uncertain
    torch.manual_seed(0)
    coords = importance_points(logits, num_points=40, oversample_ratio=3.0, importance_sample_ratio=0.75)
    assert coords.shape == (2, 40, 2)
    assert bool((coords >= 0).all() and (coords <= 1).all())
    assert bool((coords[:, :30, 0] < 0.5).all())  # the 30 importance points lie in the uncertain half
