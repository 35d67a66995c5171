"""Mask logits at each image's output size: upsample to the padded input, crop the image's padding, resize.

The padded size and each image's valid size come from the outputs (``padded_size``, ``image_sizes``); outputs
without them (e.g. transformers' own) are read as unpadded images of 4x the mask resolution. Every resize is
bilinear with ``align_corners=False``, as in the original Mask2Former.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

CHUNK_VALUES = 1 << 24  # values of an intermediate tensor computed at once (64 MB of float32)


@dataclass(frozen=True)
class ImageGeometry:
    """Where one image of a batch sits in the model input, and the size its results are wanted at."""

    padded: tuple[int, int]  # (H_pad, W_pad) of the model input
    valid: tuple[int, int]  # (h, w) of the image inside it, top-left
    target: tuple[int, int]  # (T_h, T_w) of the results


def batch_geometry(outputs: Any, target_sizes: Any = None) -> list[ImageGeometry]:
    """One :class:`ImageGeometry` per image of ``outputs``; ``target_sizes`` default to the valid sizes."""
    batch, _, low_h, low_w = outputs.masks_queries_logits.shape
    padded = getattr(outputs, "padded_size", None)
    padded = (4 * low_h, 4 * low_w) if padded is None else (int(padded[0]), int(padded[1]))
    image_sizes = getattr(outputs, "image_sizes", None)
    valid = [padded] * batch if image_sizes is None else [(int(h), int(w)) for h, w in image_sizes.tolist()]
    if len(valid) != batch:
        raise ValueError(f"outputs.image_sizes has {len(valid)} entries for a batch of {batch}.")
    if target_sizes is None:
        targets = valid
    else:
        listed = target_sizes.tolist() if isinstance(target_sizes, Tensor) else list(target_sizes)
        if len(listed) != batch:
            raise ValueError(
                f"Got {len(listed)} target_sizes for a batch of {batch} images; pass one (height, width) per image."
            )
        targets = [(int(size[0]), int(size[1])) for size in listed]
    for (valid_h, valid_w), (target_h, target_w) in zip(valid, targets):
        if not (0 < valid_h <= padded[0] and 0 < valid_w <= padded[1]) or min(target_h, target_w) <= 0:
            raise ValueError(f"Bad sizes: image {valid_h}x{valid_w}, padded {padded}, target {target_h}x{target_w}.")
    return [ImageGeometry(padded, v, t) for v, t in zip(valid, targets)]


def chunks(count: int, values_per_item: int, chunk_values: int = CHUNK_VALUES) -> Iterator[slice]:
    """Consecutive slices of ``range(count)``, each with at most ``chunk_values`` values (or one item)."""
    step = max(1, chunk_values // max(values_per_item, 1))
    for start in range(0, count, step):
        yield slice(start, min(start + step, count))


def mask_logits(masks: Tensor, geometry: ImageGeometry, chunk_values: int = CHUNK_VALUES) -> Tensor:
    """(n, h, w) low-resolution mask logits of one image -> (n, T_h, T_w) float32 logits at its target size.

    Where the padding is cropped or the image resized, the padded-size intermediate is computed in chunks of queries
    holding at most ``chunk_values`` values.
    """
    (pad_h, pad_w), (valid_h, valid_w), target = geometry.padded, geometry.valid, geometry.target
    masks = masks.float()
    if len(masks) == 0:
        return masks.new_zeros(0, *target)
    if geometry.valid == geometry.padded == target:  # no intermediate: the upsampled logits are the result
        return F.interpolate(masks[None], size=target, mode="bilinear", align_corners=False)[0]
    out = torch.empty(len(masks), *target, dtype=torch.float32, device=masks.device)
    for part in chunks(len(masks), pad_h * pad_w, chunk_values):
        up = F.interpolate(masks[None, part], size=(pad_h, pad_w), mode="bilinear", align_corners=False)
        up = up[:, :, :valid_h, :valid_w]  # (1, n', h_valid, w_valid): the image's padding cropped off
        if target != (valid_h, valid_w):
            up = F.interpolate(up, size=target, mode="bilinear", align_corners=False)
        out[part] = up[0]
    return out


def mask_probabilities(masks: Tensor, geometry: ImageGeometry, chunk_values: int = CHUNK_VALUES) -> Tensor:
    """(n, h, w) mask logits -> (n, T_h * T_w) float32 probabilities at the target size, pixels flattened."""
    return mask_logits(masks, geometry, chunk_values).flatten(1).sigmoid_()
