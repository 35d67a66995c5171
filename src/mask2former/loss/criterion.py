"""Set criterion of Mask2Former: Hungarian matching, then class and point-sampled mask losses for every layer."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .matcher import HungarianMatcher, target_frame
from .point_sampling import importance_points, point_sample, sample_targets

# Names of the per-layer loss terms; auxiliary layer i adds the suffix f"_{i}".
LOSS_TERMS = ("loss_cross_entropy", "loss_mask", "loss_dice")


def sigmoid_bce_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """Sigmoid BCE averaged over the points of each mask, summed over masks and divided by ``num_masks``.

    Args:
        logits: (R, P) mask logits at P points.
        targets: (R, P) target values in [0, 1].
        num_masks: scalar normaliser.
    """
    per_point = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (R, P)
    return per_point.mean(1).sum() / num_masks


def dice_loss(logits: torch.Tensor, targets: torch.Tensor, num_masks: torch.Tensor) -> torch.Tensor:
    """Dice loss ``1 - (2 <p, t> + 1) / (sum p + sum t + 1)`` per mask, summed and divided by ``num_masks``.

    Args:
        logits: (R, P) mask logits at P points.
        targets: (R, P) target values in [0, 1].
        num_masks: scalar normaliser.
    """
    probs = logits.sigmoid()  # (R, P)
    intersection = 2.0 * (probs * targets).sum(-1)  # (R,)
    total = probs.sum(-1) + targets.sum(-1)  # (R,)
    return (1.0 - (intersection + 1.0) / (total + 1.0)).sum() / num_masks


def num_masks_normalizer(class_labels: Sequence[torch.Tensor], device: torch.device | str) -> torch.Tensor:
    """Average number of target masks per process, at least 1, as a float32 scalar on ``device``.

    The local count is summed over all processes (an all-reduce) when ``torch.distributed`` is initialised, then
    divided by the world size; every process must therefore call this together.
    """
    count = torch.tensor(float(sum(len(labels) for labels in class_labels)), dtype=torch.float32, device=device)
    world_size = 1
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(count, op=dist.ReduceOp.SUM)
        world_size = dist.get_world_size()
    return torch.clamp(count / world_size, min=1.0)


def _batch_and_query_indices(indices: Sequence[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Flatten per-image matches into (image index, query index) pairs, images in order: two (R,) tensors."""
    batch_idx = torch.cat([torch.full_like(pred, b) for b, (pred, _) in enumerate(indices)])  # (R,)
    query_idx = torch.cat([pred for pred, _ in indices])  # (R,)
    return batch_idx, query_idx


class Mask2FormerCriterion(nn.Module):
    """Training loss of Mask2Former.

    Each decoder layer's predictions are matched to the targets on their own, then supervised with

    - ``loss_cross_entropy``: cross-entropy over K+1 classes, unmatched queries labelled "no object" (index K), the
      no-object class weighted by ``no_object_weight``;
    - ``loss_mask`` / ``loss_dice``: sigmoid BCE and dice of each matched mask on ``train_num_points`` importance-
      sampled points, divided by the number of target masks in the batch (averaged over processes).

    ``forward`` returns the unweighted terms; ``total_loss`` (or ``weighted_losses``) applies the class/mask/dice
    weights by an explicit name-to-weight map. Matching and losses always run in float32 with autocast disabled.

    Random draws (``torch.rand`` on the logits' device), for the last layer first and then for auxiliary layers 0, 1,
    ...: one (1, P, 2) per image in the matcher, then (R, int(P * oversample_ratio), 2) and (R, P - int(P *
    importance_sample_ratio), 2) for the R matched masks of the batch. This is the order of the transformers and
    original implementations, so a shared seed gives the same points.
    """

    def __init__(
        self,
        *,
        num_labels: int,
        no_object_weight: float = 0.1,
        class_weight: float = 2.0,
        mask_weight: float = 5.0,
        dice_weight: float = 5.0,
        train_num_points: int = 12544,
        oversample_ratio: float = 3.0,
        importance_sample_ratio: float = 0.75,
        matcher_class_cost: float | None = None,
        matcher_mask_cost: float | None = None,
        matcher_dice_cost: float | None = None,
    ) -> None:
        """
        Args:
            num_labels: K, the number of classes without "no object".
            matcher_class_cost, matcher_mask_cost, matcher_dice_cost: matching cost weights; ``None`` uses the
                corresponding loss weight, as the original implementation does.
        """
        super().__init__()
        self.num_labels = num_labels
        self.class_weight = class_weight
        self.mask_weight = mask_weight
        self.dice_weight = dice_weight
        self.train_num_points = train_num_points
        self.oversample_ratio = oversample_ratio
        self.importance_sample_ratio = importance_sample_ratio
        self.matcher = HungarianMatcher(
            cost_class=class_weight if matcher_class_cost is None else matcher_class_cost,
            cost_mask=mask_weight if matcher_mask_cost is None else matcher_mask_cost,
            cost_dice=dice_weight if matcher_dice_cost is None else matcher_dice_cost,
            num_points=train_num_points,
        )
        empty_weight = torch.ones(num_labels + 1)  # (K+1,)
        empty_weight[-1] = no_object_weight
        self.register_buffer("empty_weight", empty_weight, persistent=True)

    # ----------------------------------------------------------------------------------------------- loss terms

    def loss_labels(
        self,
        class_logits: torch.Tensor,
        class_labels: Sequence[torch.Tensor],
        indices: Sequence[tuple[torch.Tensor, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        """Weighted cross-entropy of all queries; unmatched ones target "no object".

        Args:
            class_logits: (B, Q, K+1) float32 logits.
            class_labels: B tensors (N_i,).
            indices: the matcher's (pred_idx, tgt_idx) per image.
        """
        batch_size, num_queries, _ = class_logits.shape
        device = class_logits.device
        target = torch.full((batch_size, num_queries), self.num_labels, dtype=torch.int64, device=device)  # (B, Q)
        batch_idx, query_idx = _batch_and_query_indices(indices)  # (R,), (R,)
        matched_classes = torch.cat(
            [labels.to(device)[tgt.to(device)] for labels, (_, tgt) in zip(class_labels, indices)]
        )  # (R,)
        target[batch_idx.to(device), query_idx.to(device)] = matched_classes.to(torch.int64)
        loss = F.cross_entropy(
            class_logits.transpose(1, 2),  # (B, K+1, Q)
            target,
            weight=self.empty_weight.to(device=device, dtype=class_logits.dtype),
        )
        return {"loss_cross_entropy": loss}

    def loss_masks(
        self,
        mask_logits: torch.Tensor,
        mask_labels: Sequence[torch.Tensor],
        indices: Sequence[tuple[torch.Tensor, torch.Tensor]],
        num_masks: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Sigmoid BCE and dice of the matched masks on importance-sampled points.

        Args:
            mask_logits: (B, Q, h, w) float32 logits.
            mask_labels: B tensors (N_i, H, W), any dtype and resolution; smaller ones are read as zero-padded to the
                largest H and W in the batch.
            indices: the matcher's (pred_idx, tgt_idx) per image.
            num_masks: scalar normaliser.

        With no match in the batch both terms are a zero that still depends on ``mask_logits``, so that every
        parameter feeding the masks receives a (zero) gradient.
        """
        batch_idx, query_idx = _batch_and_query_indices(indices)  # (R,), (R,)
        if batch_idx.numel() == 0:
            zero = mask_logits.flatten()[:0].sum()  # 0, connected to the graph, never NaN
            return {"loss_mask": zero, "loss_dice": zero.clone()}

        device = mask_logits.device
        pred_masks = mask_logits[batch_idx.to(device), query_idx.to(device)].unsqueeze(1)  # (R, 1, h, w)
        coords = importance_points(
            pred_masks, self.train_num_points, self.oversample_ratio, self.importance_sample_ratio
        )  # (R, P, 2)

        with torch.no_grad():
            frame = target_frame(mask_labels)
            point_targets = []
            start = 0
            for masks, (_, tgt) in zip(mask_labels, indices):
                count = tgt.numel()
                if count:
                    point_targets.append(
                        sample_targets(masks, coords[start : start + count], frame, mask_index=tgt)
                    )  # (N_b', P): the matched targets, read in place
                start += count
            targets = torch.cat(point_targets)  # (R, P)

        point_logits = point_sample(pred_masks, coords).squeeze(1)  # (R, P)
        return {
            "loss_mask": sigmoid_bce_loss(point_logits, targets, num_masks),
            "loss_dice": dice_loss(point_logits, targets, num_masks),
        }

    def layer_losses(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        mask_labels: Sequence[torch.Tensor],
        class_labels: Sequence[torch.Tensor],
        num_masks: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Match one layer's predictions and compute its three unweighted terms (names without suffix)."""
        indices = self.matcher(class_logits, mask_logits, mask_labels, class_labels)
        losses = self.loss_masks(mask_logits, mask_labels, indices, num_masks)
        losses.update(self.loss_labels(class_logits, class_labels, indices))
        return {name: losses[name] for name in LOSS_TERMS}

    # -------------------------------------------------------------------------------------------------- forward

    def forward(
        self,
        class_logits_per_layer: Sequence[torch.Tensor],
        mask_logits_per_layer: Sequence[torch.Tensor],
        mask_labels: Sequence[torch.Tensor],
        class_labels: Sequence[torch.Tensor],
    ) -> dict[str, torch.Tensor]:
        """Unweighted loss terms of the final layer and of every auxiliary layer.

        Args:
            class_logits_per_layer: L tensors (B, Q, K+1); the last is the final prediction, the others auxiliary.
            mask_logits_per_layer: L tensors (B, Q, h, w), in the same order.
            mask_labels: B tensors (N_i, H, W) of binary target masks (bool, uint8 or float), any resolution.
            class_labels: B int64 tensors (N_i,); N_i may be 0 for any or all images.

        Returns:
            float32 scalars ``loss_cross_entropy``, ``loss_mask``, ``loss_dice`` for the final layer and
            ``loss_cross_entropy_{i}``, ``loss_mask_{i}``, ``loss_dice_{i}`` for auxiliary layer i = 0 .. L-2.
            Pass only the last layer to train without auxiliary losses.
        """
        if len(class_logits_per_layer) != len(mask_logits_per_layer) or not class_logits_per_layer:
            raise ValueError("expected the same, non-zero number of class and mask logit layers")
        if len(mask_labels) != len(class_labels):
            raise ValueError("mask_labels and class_labels must have one entry per image")

        device = mask_logits_per_layer[-1].device
        with torch.autocast(device_type=device.type, enabled=False):
            num_masks = num_masks_normalizer(class_labels, device)
            layers = list(zip(class_logits_per_layer, mask_logits_per_layer))
            final, auxiliary = layers[-1], layers[:-1]

            losses = self.layer_losses(final[0].float(), final[1].float(), mask_labels, class_labels, num_masks)
            for i, (class_logits, mask_logits) in enumerate(auxiliary):
                layer = self.layer_losses(
                    class_logits.float(), mask_logits.float(), mask_labels, class_labels, num_masks
                )
                losses.update({f"{name}_{i}": value for name, value in layer.items()})
        return losses

    # -------------------------------------------------------------------------------------------------- weights

    def weight_map(self, num_layers: int) -> dict[str, float]:
        """Explicit loss-term name -> weight for a decoder with ``num_layers`` supervised layers (final + auxiliary)."""
        per_term = {
            "loss_cross_entropy": self.class_weight,
            "loss_mask": self.mask_weight,
            "loss_dice": self.dice_weight,
        }
        weights = dict(per_term)
        for i in range(num_layers - 1):
            weights.update({f"{name}_{i}": weight for name, weight in per_term.items()})
        return weights

    def weighted_losses(self, loss_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Each term of ``forward``'s output multiplied by its weight (the per-term values transformers reports)."""
        weights = self.weight_map(num_layers=max(1, len(loss_dict) // len(LOSS_TERMS)))
        unknown = sorted(set(loss_dict) - set(weights))
        if unknown:
            raise KeyError(f"no weight for loss terms {unknown}")
        return {name: weights[name] * value for name, value in loss_dict.items()}

    def total_loss(self, loss_dict: dict[str, torch.Tensor]) -> torch.Tensor:
        """Weighted sum of the loss terms returned by ``forward``."""
        return torch.stack(list(self.weighted_losses(loss_dict).values())).sum()
