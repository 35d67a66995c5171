"""Point sampling for the matcher and the mask losses (PointRend style).

Coordinates are (x, y) pairs in [0, 1] x [0, 1] over the whole map, so a prediction at 1/4 resolution and a target
at full (padded) resolution are sampled at the same physical locations without resizing either of them.

Random draws are made with ``torch.rand`` on the default generator of the tensor's device, in the same order and with
the same shapes as the reference implementations, so seeding the global RNG reproduces their point sets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``features`` at normalised point coordinates.

    Args:
        features: (B, C, H, W) maps.
        coords: (B, P, 2) points as (x, y) in [0, 1]; points outside read zeros.

    Returns:
        (B, C, P) sampled values. Sampling uses ``align_corners=False``: pixel j covers [j / W, (j + 1) / W).
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (B, P, 1, 2) in [-1, 1]
    sampled = F.grid_sample(features, grid, mode="bilinear", padding_mode="zeros", align_corners=False)  # (B, C, P, 1)
    return sampled.squeeze(3)  # (B, C, P)


def uniform_points(num_masks: int, num_points: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(num_masks, num_points, 2) points drawn uniformly in [0, 1]^2 (one ``torch.rand`` call)."""
    return torch.rand(num_masks, num_points, 2, device=device)


def uncertainty(mask_logits: torch.Tensor) -> torch.Tensor:
    """Uncertainty of a binary mask logit: -|logit|, highest where the prediction is closest to 0.5."""
    return -mask_logits.abs()


def importance_points(
    mask_logits: torch.Tensor,
    num_points: int,
    oversample_ratio: float,
    importance_sample_ratio: float,
) -> torch.Tensor:
    """Points biased towards the uncertain regions of each mask.

    ``int(num_points * oversample_ratio)`` candidates are drawn uniformly per mask; the
    ``int(importance_sample_ratio * num_points)`` most uncertain of them are kept (by ``uncertainty`` of the bilinearly
    sampled logit) and the remaining points are drawn uniformly. Gradients do not flow through the coordinates.

    Args:
        mask_logits: (R, 1, h, w) logits of the masks to sample.

    Returns:
        (R, num_points, 2) coordinates in [0, 1]: the importance points first, then the uniform ones.
    """
    num_masks = mask_logits.shape[0]
    num_candidates = int(num_points * oversample_ratio)
    num_uncertain = int(importance_sample_ratio * num_points)
    num_uniform = num_points - num_uncertain

    with torch.no_grad():
        candidates = uniform_points(num_masks, num_candidates, mask_logits.device)  # (R, P_c, 2)
        candidate_logits = point_sample(mask_logits, candidates)  # (R, 1, P_c)
        scores = uncertainty(candidate_logits)[:, 0, :]  # (R, P_c)
        top = torch.topk(scores, k=num_uncertain, dim=1).indices  # (R, P_u)
        coords = torch.gather(candidates, 1, top.unsqueeze(2).expand(-1, -1, 2))  # (R, P_u, 2)
        if num_uniform > 0:
            extra = uniform_points(num_masks, num_uniform, mask_logits.device)  # (R, P - P_u, 2)
            coords = torch.cat((coords, extra), dim=1)  # (R, P, 2)
    return coords


def sample_targets(
    target_masks: torch.Tensor, coords: torch.Tensor, frame_size: tuple[int, int] | None = None
) -> torch.Tensor:
    """Sample target masks (any dtype) as float32 at normalised points.

    ``frame_size`` is the (H, W) that the coordinates refer to. Targets smaller than the frame are treated as its
    top-left corner with zeros elsewhere, exactly as if they had been zero-padded to the frame first (the points are
    rescaled instead, so no padded copy is built).

    Args:
        target_masks: (N, H, W) masks; bool, integer or float.
        coords: (N, P, 2) or (1, P, 2) points (the latter shared by all masks).
        frame_size: (H_f, W_f) with H_f >= H and W_f >= W; defaults to (H, W).

    Returns:
        (N, P) float32 values in [0, 1] for binary masks.
    """
    num_masks, height, width = target_masks.shape
    coords = coords.float()
    if frame_size is not None and tuple(frame_size) != (height, width):
        scale = coords.new_tensor([frame_size[1] / width, frame_size[0] / height])  # (2,) as (x, y)
        coords = coords * scale
    coords = coords.expand(num_masks, -1, -1)  # (N, P, 2)
    masks = target_masks.to(device=coords.device, dtype=torch.float32).unsqueeze(1)  # (N, 1, H, W)
    return point_sample(masks, coords).squeeze(1)  # (N, P)
