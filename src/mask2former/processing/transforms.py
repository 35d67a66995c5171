"""Pixel-level steps of preprocessing: output sizes, resizing, rescale+normalise fused into a padded batch.

Resizing goes through Pillow on the 8-bit RGB image, which is exactly what transformers' PIL-based processor does for
8-bit inputs, so ``pixel_values`` agree with it; Pillow also splits the result into channel planes, and the
arithmetic that follows is a conversion, a multiply and an add per image, written straight into the padded batch.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

import numpy as np
import PIL.Image
import torch

from .buffers import empty

SizeDict = Mapping[str, int]


def scaled_size(height: int, width: int, shortest_edge: int, longest_edge: int | None) -> tuple[int, int]:
    """Size that brings the short side to ``shortest_edge`` unless the long side would exceed ``longest_edge``.

    The rounding follows the reference exactly: when the long side limits, the short side becomes
    ``round(longest * short / long)`` and the long side is truncated from the unrounded value; otherwise the long
    side is ``int(shortest * long / short)``. An image whose short side already has the target length is unchanged.
    """
    short, long = (height, width) if height <= width else (width, height)
    target_short: int = shortest_edge
    unrounded: float | None = None
    if longest_edge is not None and long / short * shortest_edge > longest_edge:
        unrounded = longest_edge * short / long
        target_short = int(round(unrounded))
    if short == target_short:
        return height, width
    factor = unrounded if unrounded is not None else target_short
    new_long = int(factor * long / short)
    return (target_short, new_long) if height <= width else (new_long, target_short)


def output_size(height: int, width: int, size: SizeDict, size_divisor: int) -> tuple[int, int]:
    """(height, width) an image of the given size is resized to, rounded *up* to a multiple of ``size_divisor``."""
    if size.get("shortest_edge"):
        new = scaled_size(height, width, size["shortest_edge"], size.get("longest_edge"))
    elif size.get("height") and size.get("width"):
        new = (size["height"], size["width"])
    elif size.get("max_height") and size.get("max_width"):
        factor = min(size["max_height"] / height, size["max_width"] / width)
        new = (int(height * factor), int(width * factor))
    else:
        raise ValueError(
            f"size must have 'shortest_edge' (and optionally 'longest_edge'), 'height' and 'width', or 'max_height' "
            f"and 'max_width'; got {dict(size)}."
        )
    if size_divisor and size_divisor > 0:
        new = (math.ceil(new[0] / size_divisor) * size_divisor, math.ceil(new[1] / size_divisor) * size_divisor)
    return new


def resized_planes(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int | None
                   ) -> list[np.ndarray]:
    """The three (height, width) channel planes of an RGB image (Pillow, or (H, W, 3) uint8 or float32 array) resized
    with Pillow: uint8 stays uint8 and float32 is resized plane by plane; ``resample=None`` or the same size keeps
    the pixels.

    8-bit images are resized as one RGB image and Pillow splits the result into planes: its de-interleaving is about
    4x faster than a strided copy of (H, W, 3) pixels into channel planes.
    """
    if isinstance(image, np.ndarray):
        if resample is None or image.shape[:2] == (height, width):
            return [image[:, :, channel] for channel in range(3)]
        if image.dtype != np.uint8:
            return [resize_plane(image[:, :, channel], height, width, resample) for channel in range(3)]
        image = PIL.Image.fromarray(image)
    if resample is not None and image.size != (width, height):
        image = image.resize((width, height), resample=resample)
    return [np.asarray(band) for band in image.split()]


def resize_plane(plane: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """Resize one (H, W) uint8 or float32 channel with Pillow. For uint8, each plane of :func:`resized_planes` is
    exactly this: Pillow computes every band of an RGB image with the same integer arithmetic."""
    if plane.shape == (height, width):
        return plane
    return np.asarray(PIL.Image.fromarray(np.ascontiguousarray(plane)).resize((width, height), resample))


def resize_labels(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) int64 label map, sampling the same pixels as Pillow's NEAREST."""
    if label_map.shape == (height, width):
        return label_map
    low, high = (int(label_map.min()), int(label_map.max())) if label_map.size else (0, 0)
    if low < -(2**31) or high >= 2**31:
        raise ValueError(f"Label ids must fit in int32 to be resized, got {low}..{high}.")
    resized = PIL.Image.fromarray(label_map.astype(np.int32)).resize((width, height), PIL.Image.Resampling.NEAREST)
    return np.asarray(resized).astype(np.int64)


def affine_coefficients(
    do_rescale: bool,
    rescale_factor: float,
    do_normalize: bool,
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) so that ``x * scale + shift`` equals rescaling then normalising, each (3,)."""
    factor = float(rescale_factor) if do_rescale else 1.0
    if do_normalize:
        mean = np.broadcast_to(np.asarray(image_mean, dtype=np.float64), (3,))
        std = np.broadcast_to(np.asarray(image_std, dtype=np.float64), (3,))
        scale, shift = factor / std, -mean / std
    else:
        scale, shift = np.full(3, factor), np.zeros(3)
    return torch.from_numpy(scale.astype(np.float32)), torch.from_numpy(shift.astype(np.float32))


def images_to_batch(
    images: Sequence[np.ndarray | PIL.Image.Image],
    sizes: Sequence[tuple[int, int]],
    resample: int | None,
    padded_size: tuple[int, int],
    scale: torch.Tensor,
    shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize each (H, W, 3) image to its (h, w) in ``sizes`` and write ``x * scale + shift`` into the top-left of a
    zero (B, 3, H_pad, W_pad) float32 batch; ``resample=None`` keeps the images as they are (sizes = their sizes).

    Returns the batch and ``pixel_mask`` (B, H_pad, W_pad) int64, 1 on image pixels and 0 on padding. With more than
    one torch thread (``torch.get_num_threads()``) and more than one image, the images are resized concurrently
    (Pillow releases the GIL); the arithmetic then uses torch's own threads.
    """
    height, width = padded_size
    # Uninitialised memory, every element written once: zero-filling first would cost as much again.
    batch = empty((len(images), 3, height, width), torch.float32)
    pixel_mask = empty((len(images), height, width), torch.int64)
    scale, shift = scale.reshape(3, 1, 1), shift.reshape(3, 1, 1)

    workers = min(len(images), torch.get_num_threads()) if resample is not None else 1
    with ThreadPoolExecutor(workers) if workers > 1 else contextlib.nullcontext() as pool, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # read-only arrays (e.g. from PIL) are only read here

        def planes(index: int) -> list[np.ndarray]:
            return resized_planes(images[index], *sizes[index], resample)

        resized = pool.map(planes, range(len(images))) if pool is not None else map(planes, range(len(images)))
        for index, channels in enumerate(resized):
            h, w = sizes[index]
            target = batch[index, :, :h, :w]
            for channel, plane in enumerate(channels):
                target[channel].copy_(torch.from_numpy(plane))  # uint8 or float32 -> float32, plane to plane
            target.mul_(scale).add_(shift)
    for index, (h, w) in enumerate(sizes):
        batch[index, :, :h, w:] = 0.0
        batch[index, :, h:] = 0.0
        pixel_mask[index, :h, :w] = 1
        pixel_mask[index, :h, w:] = 0
        pixel_mask[index, h:] = 0
    return batch, pixel_mask


def normalise_into_batch(
    images: Sequence[np.ndarray], padded_size: tuple[int, int], scale: torch.Tensor, shift: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`images_to_batch` without resizing."""
    return images_to_batch(images, [image.shape[:2] for image in images], None, padded_size, scale, shift)


def as_resample(resample: int | PIL.Image.Resampling | None) -> PIL.Image.Resampling:
    """Pillow filter from an int (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming) or the enum."""
    if resample is None:
        return PIL.Image.Resampling.BILINEAR
    try:
        return PIL.Image.Resampling(int(resample))
    except (ValueError, TypeError) as error:
        raise ValueError(f"resample must be a Pillow filter id 0..5, got {resample!r}.") from error
