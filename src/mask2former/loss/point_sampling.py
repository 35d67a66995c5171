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
        coords: (B, P, 2) points as (x, y) in [0, 1], or (1, P, 2) shared by all maps; points outside read zeros.

    Returns:
        (B, C, P) sampled values. Sampling uses ``align_corners=False``: pixel j covers [j / W, (j + 1) / W).
    """
    grid = (2.0 * coords - 1.0).unsqueeze(2)  # (B or 1, P, 1, 2) in [-1, 1]
    grid = grid.expand(features.shape[0], -1, -1, -1)  # shared points: expanded only after the arithmetic
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
        # The set of points matters, not their order (the losses sum over points): unsorted is ~2.5x faster on CPU.
        top = torch.topk(scores, k=num_uncertain, dim=1, sorted=False).indices  # (R, P_u)
        coords = torch.gather(candidates, 1, top.unsqueeze(2).expand(-1, -1, 2))  # (R, P_u, 2)
        if num_uniform > 0:
            extra = uniform_points(num_masks, num_uniform, mask_logits.device)  # (R, P - P_u, 2)
            coords = torch.cat((coords, extra), dim=1)  # (R, P, 2)
    return coords


def sample_targets(
    target_masks: torch.Tensor,
    coords: torch.Tensor,
    frame_size: tuple[int, int] | None = None,
    mask_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """Sample target masks (any dtype) as float32 at normalised points, reading the masks where they are.

    The same bilinear sampling as :func:`point_sample` (``grid_sample``, ``align_corners=False``, zeros outside), but
    computed by reading the four neighbours of each point straight from the masks: no float copy of the masks and no
    copy of the selected ones, which for full-resolution targets costs far more than the few points read (the loss
    samples every target once per decoder layer, 10 times per step).

    ``frame_size`` is the (H, W) that the coordinates refer to. Targets smaller than the frame are treated as its
    top-left corner with zeros elsewhere, exactly as if they had been zero-padded to the frame first.

    Args:
        target_masks: (N, H, W) masks; bool, integer or float.
        coords: (R, P, 2) or (1, P, 2) points (the latter shared by all rows).
        frame_size: (H_f, W_f) with H_f >= H and W_f >= W; defaults to (H, W).
        mask_index: (R,) which mask each row of points samples; defaults to all N masks in order (R = N).

    Returns:
        (R, P) float32 values in [0, 1] for binary masks.
    """
    num_masks, height, width = target_masks.shape
    frame_height, frame_width = (height, width) if frame_size is None else frame_size
    device = coords.device
    flat = target_masks.to(device).reshape(-1)  # (N*H*W,), a view of contiguous masks
    if mask_index is None:
        mask_index = torch.arange(num_masks, device=device)
    base = mask_index.to(device)[:, None] * (height * width)  # (R, 1) start of each row's mask
    coords = coords.float()
    x = coords[..., 0] * frame_width - 0.5  # (R|1, P) pixel coordinates, pixel centres at integers
    y = coords[..., 1] * frame_height - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    values = torch.zeros(base.shape[0], coords.shape[1], device=device)  # (R, P)
    for dy, weight_y in ((0, 1.0 - fy), (1, fy)):
        row = y0 + dy
        row_inside = (row >= 0) & (row < height)
        for dx, weight_x in ((0, 1.0 - fx), (1, fx)):
            column = x0 + dx
            inside = row_inside & (column >= 0) & (column < width)  # neighbours outside the mask read zero
            offset = row.clamp(0, height - 1).long() * width + column.clamp(0, width - 1).long()  # (R|1, P)
            index = (base + offset).view(-1)  # (R*P,)
            neighbour = flat.index_select(0, index).view(values.shape).float()  # (R, P)
            values += neighbour * (weight_y * weight_x) * inside
    return values
