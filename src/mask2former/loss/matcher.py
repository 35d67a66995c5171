"""Hungarian matching between predicted queries and target masks, one image at a time."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .point_sampling import point_sample, sample_targets, uniform_points


def pairwise_sigmoid_bce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean sigmoid binary cross-entropy of every prediction against every target.

    Args:
        logits: (Q, P) mask logits at P points.
        targets: (N, P) target values in [0, 1] at the same points.

    Returns:
        (Q, N) costs; entry (q, n) equals the per-point mean BCE of prediction q against target n.
    """
    num_points = logits.shape[1]
    loss_if_one = F.softplus(-logits) / num_points  # (Q, P): BCE against target 1, pre-divided for the mean
    loss_if_zero = F.softplus(logits) / num_points  # (Q, P): BCE against target 0
    # (Q, P) x (P, N) -> (Q, N), twice: the BCE is linear in the target
    return loss_if_one @ targets.T + loss_if_zero @ (1.0 - targets).T


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Dice loss (with +1 smoothing) of every prediction against every target.

    Args:
        logits: (Q, P) mask logits at P points.
        targets: (N, P) target values in [0, 1].

    Returns:
        (Q, N) costs ``1 - (2 <p, t> + 1) / (sum p + sum t + 1)`` with ``p = sigmoid(logits)``.
    """
    probs = logits.sigmoid()  # (Q, P)
    intersection = 2.0 * (probs @ targets.T)  # (Q, P) x (P, N) -> (Q, N)
    total = probs.sum(-1)[:, None] + targets.sum(-1)[None, :]  # (Q, 1) + (1, N) -> (Q, N)
    return 1.0 - (intersection + 1.0) / (total + 1.0)


def finite_cost(cost: torch.Tensor) -> np.ndarray:
    """The cost matrix as float64 numpy with every NaN/inf replaced by a value worse than any finite cost.

    A broken pair is then chosen only when no finite assignment exists, and the solver never sees a non-finite entry.
    """
    cost = cost.detach().to(device="cpu", dtype=torch.float64)  # (Q, N)
    finite = torch.isfinite(cost)
    if not bool(finite.all()):
        worst = cost[finite].abs().max().item() if bool(finite.any()) else 0.0
        cost = torch.where(finite, cost, torch.full_like(cost, 2.0 * worst + 1e6))
    return cost.numpy()


def target_frame(mask_labels: Sequence[torch.Tensor]) -> tuple[int, int] | None:
    """(H, W) of the padded batch frame: the largest target height and width in the batch.

    Tensors that are not (N, H, W) (e.g. an empty (0,) tensor for an image without targets) are ignored; ``None`` if
    there is no (N, H, W) tensor at all.
    """
    sizes = [tuple(masks.shape[-2:]) for masks in mask_labels if masks.dim() == 3]
    if not sizes:
        return None
    return max(int(h) for h, _ in sizes), max(int(w) for _, w in sizes)


class HungarianMatcher(nn.Module):
    """One-to-one assignment of queries to target masks minimising a weighted class + mask cost.

    The cost of query q for target n is ``cost_class * -softmax(class_logits)[q, label_n] + cost_mask * BCE(q, n) +
    cost_dice * dice(q, n)``, the two mask terms computed on ``num_points`` uniform random points shared by all
    predictions and targets of an image. Queries left unmatched are supervised as "no object" by the criterion.

    The original Mask2Former uses the loss weights as cost weights (class 2.0, mask 5.0, dice 5.0); a class cost of
    1.0 is also in use elsewhere. The weights are explicit so that either convention can be reproduced.
    """

    def __init__(self, cost_class: float, cost_mask: float, cost_dice: float, num_points: int) -> None:
        super().__init__()
        if cost_class == 0 and cost_mask == 0 and cost_dice == 0:
            raise ValueError("at least one matching cost must be non-zero")
        self.cost_class = cost_class
        self.cost_mask = cost_mask
        self.cost_dice = cost_dice
        self.num_points = num_points

    def extra_repr(self) -> str:
        return (
            f"cost_class={self.cost_class}, cost_mask={self.cost_mask}, cost_dice={self.cost_dice}, "
            f"num_points={self.num_points}"
        )

    def cost_matrix(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        target_masks: torch.Tensor,
        target_classes: torch.Tensor,
        coords: torch.Tensor,
        frame_size: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Matching cost of one image in float32.

        Args:
            class_logits: (Q, K+1).
            mask_logits: (Q, h, w).
            target_masks: (N, H, W), any dtype.
            target_classes: (N,) class indices.
            coords: (1, P, 2) points in [0, 1] shared by predictions and targets.
            frame_size: (H_f, W_f) that the coordinates refer to for the targets (see ``sample_targets``).

        Returns:
            (Q, N) cost matrix.
        """
        class_logits = class_logits.float()
        mask_logits = mask_logits.float()

        probs = class_logits.softmax(-1)  # (Q, K+1)
        cost_class = -probs[:, target_classes.to(probs.device)]  # (Q, N)

        targets = sample_targets(target_masks, coords, frame_size)  # (N, P)
        preds = point_sample(mask_logits[:, None], coords).squeeze(1)  # (Q, P)

        cost_mask = pairwise_sigmoid_bce(preds, targets)  # (Q, N)
        cost_dice = pairwise_dice(preds, targets)  # (Q, N)
        return self.cost_mask * cost_mask + self.cost_class * cost_class + self.cost_dice * cost_dice

    @torch.no_grad()
    def forward(
        self,
        class_logits: torch.Tensor,
        mask_logits: torch.Tensor,
        mask_labels: Sequence[torch.Tensor],
        class_labels: Sequence[torch.Tensor],
    ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Match every image of the batch.

        Args:
            class_logits: (B, Q, K+1) class logits, K+1 being "no object".
            mask_logits: (B, Q, h, w) mask logits at any resolution.
            mask_labels: B tensors (N_i, H, W) of binary target masks (bool, integer or float), H/W any resolution.
            class_labels: B tensors (N_i,) of target classes.

        Returns:
            For each image, ``(pred_idx, tgt_idx)``: int64 CPU tensors of length min(Q, N_i), ``pred_idx`` sorted; an
            image without targets gives two empty tensors. One ``torch.rand(1, num_points, 2)`` draw is made per image,
            in batch order, empty images included.
        """
        device_type = mask_logits.device.type
        frame = target_frame(mask_labels)
        indices = []
        with torch.autocast(device_type=device_type, enabled=False):
            for b in range(mask_logits.shape[0]):
                coords = uniform_points(1, self.num_points, mask_logits.device)  # (1, P, 2)
                if class_labels[b].numel() == 0:
                    empty = torch.empty(0, dtype=torch.int64)
                    indices.append((empty, empty.clone()))
                    continue
                cost = self.cost_matrix(
                    class_logits[b], mask_logits[b], mask_labels[b], class_labels[b], coords, frame
                )  # (Q, N_b)
                pred_idx, tgt_idx = _linear_sum_assignment()(finite_cost(cost))
                indices.append(
                    (torch.as_tensor(pred_idx, dtype=torch.int64), torch.as_tensor(tgt_idx, dtype=torch.int64))
                )
        return indices


def _linear_sum_assignment():
    """scipy's Hungarian solver, imported on first use so that ``import mask2former`` stays light."""
    from scipy.optimize import linear_sum_assignment

    return linear_sum_assignment
