"""Parity of the criterion with transformers' Mask2FormerLoss (used as a test-time oracle only).

Random points: both implementations draw with ``torch.rand`` on the global CPU generator in the same order and with
the same shapes (per layer, final layer first then auxiliary layers 0, 1, ...: one (1, P, 2) draw per image in the
matcher, then (R, int(P * oversample_ratio), 2) and (R, P - int(P * importance_sample_ratio), 2) for the R matched
masks). Seeding the global generator identically before each call therefore gives both the same points; nothing is
monkeypatched.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from mask2former.loss import Mask2FormerCriterion

transformers_m2f = pytest.importorskip("transformers.models.mask2former.modeling_mask2former")
from transformers import Mask2FormerConfig  # noqa: E402

NUM_LABELS = 4


def _random_problem(seed: int, num_layers: int = 3, batch: int = 2, queries: int = 6, targets_per_image=(3, 0)):
    gen = torch.Generator().manual_seed(seed)
    class_logits = [torch.randn(batch, queries, NUM_LABELS + 1, generator=gen) * 2 for _ in range(num_layers)]
    mask_logits = [torch.randn(batch, queries, 16, 16, generator=gen) * 3 for _ in range(num_layers)]
    mask_labels, class_labels = [], []
    for n in targets_per_image:
        # blocky masks at 64x64 (4x the logits here, but any size works)
        coarse = torch.rand(n, 8, 8, generator=gen) > 0.5
        mask_labels.append(coarse.repeat_interleave(8, 1).repeat_interleave(8, 2).float())
        class_labels.append(torch.randint(0, NUM_LABELS, (n,), generator=gen))
    return class_logits, mask_logits, mask_labels, class_labels


def _transformers_losses(config, class_logits, mask_logits, mask_labels, class_labels):
    """Weighted per-term losses and total exactly as Mask2FormerForUniversalSegmentation computes them."""
    weight_dict = {
        "loss_cross_entropy": config.class_weight,
        "loss_mask": config.mask_weight,
        "loss_dice": config.dice_weight,
    }
    model = SimpleNamespace(
        criterion=transformers_m2f.Mask2FormerLoss(config=config, weight_dict=weight_dict), weight_dict=weight_dict
    )
    auxiliary = [
        {"masks_queries_logits": m, "class_queries_logits": c} for c, m in zip(class_logits[:-1], mask_logits[:-1])
    ]
    loss_dict = transformers_m2f.Mask2FormerForUniversalSegmentation.get_loss_dict(
        model, mask_logits[-1], class_logits[-1], mask_labels, class_labels, auxiliary
    )
    return loss_dict, sum(loss_dict.values())


@pytest.mark.parametrize(
    "targets_per_image, num_points",
    [((3, 0), 12544), ((2, 5), 300), ((0, 0), 300)],
    ids=["one-empty-image", "both-nonempty-odd-points", "all-empty"],
)
def test_matches_transformers_loss(targets_per_image, num_points):
    config = Mask2FormerConfig(num_labels=NUM_LABELS, train_num_points=num_points)
    problem = _random_problem(0, targets_per_image=targets_per_image)
    class_logits, mask_logits, mask_labels, class_labels = problem

    criterion = Mask2FormerCriterion(
        num_labels=NUM_LABELS,
        no_object_weight=config.no_object_weight,
        class_weight=config.class_weight,
        mask_weight=config.mask_weight,
        dice_weight=config.dice_weight,
        train_num_points=config.train_num_points,
        oversample_ratio=config.oversample_ratio,
        importance_sample_ratio=config.importance_sample_ratio,
        # the installed transformers passes class_weight as the class cost; older releases used 1.0
        matcher_class_cost=config.class_weight,
    )

    torch.manual_seed(1234)
    ours = criterion(class_logits, mask_logits, mask_labels, class_labels)
    ours_weighted = criterion.weighted_losses(ours)
    ours_total = criterion.total_loss(ours)

    torch.manual_seed(1234)
    theirs, theirs_total = _transformers_losses(config, class_logits, mask_logits, mask_labels, class_labels)

    assert set(ours) == set(theirs)
    assert len(ours) == 3 * len(class_logits)
    errors = {name: (ours_weighted[name] - theirs[name]).abs().item() for name in theirs}
    assert max(errors.values()) < 1e-4, errors
    assert (ours_total - theirs_total).abs().item() < 1e-4
    if sum(targets_per_image) > 0:
        assert ours["loss_mask"].item() > 0 and ours["loss_dice_1"].item() > 0
        # control: with a different seed the points differ, so the agreement above is not an accident
        torch.manual_seed(4321)
        other, _ = _transformers_losses(config, class_logits, mask_logits, mask_labels, class_labels)
        mask_terms = ("loss_mask", "loss_mask_0", "loss_mask_1")
        assert max((ours_weighted[n] - other[n]).abs().item() for n in mask_terms) > 1e-4
