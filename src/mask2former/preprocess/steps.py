"""The processor's steps one at a time, on single channels-first arrays, as transformers' processor offers them
(``resize``, ``rescale``, ``normalize``, ``pad``). ``Mask2FormerImageProcessor.preprocess`` does the same work in one
pass (:mod:`.batch`); these are for users who compose their own pipeline.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .batch import per_channel
from .resize import as_resample, output_size, resize_image

SIZE_KEYS = ("shortest_edge", "longest_edge", "height", "width", "max_height", "max_width")


def size_mapping(size: Any) -> dict[str, int]:
    """A size as a dict: a mapping, or an object with the size keys as attributes (transformers' ``SizeDict``)."""
    if isinstance(size, Mapping):
        return {key: int(value) for key, value in size.items() if value is not None}
    found = {key: getattr(size, key, None) for key in SIZE_KEYS}
    if all(value is None for value in found.values()):
        raise ValueError(f"size must be a dict with keys among {list(SIZE_KEYS)}, got {size!r}.")
    return {key: int(value) for key, value in found.items() if value is not None}


def resize(image: np.ndarray, size: Any, size_divisor: int = 0, resample: int | None = None) -> np.ndarray:
    """(C, H, W) image -> (C, h, w): (h, w) from ``size`` as in preprocessing (shortest/longest edge, height/width or
    max height/width), rounded up to a multiple of ``size_divisor``; Pillow's filter ``resample`` (default bilinear).
    uint8 stays uint8 (the same Pillow call as transformers), floats are resized plane by plane."""
    image = np.asarray(image)
    if image.ndim != 3:
        raise ValueError(f"resize takes one (C, H, W) image, got shape {image.shape}.")
    height, width = output_size(image.shape[1], image.shape[2], size_mapping(size), size_divisor)
    pixels = image.transpose(1, 2, 0)  # (H, W, C)
    if pixels.dtype != np.uint8:
        pixels = pixels.astype(np.float32)
    return np.ascontiguousarray(resize_image(pixels, height, width, as_resample(resample)).transpose(2, 0, 1))


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """``image * scale`` as float32 (computed in float64)."""
    return (np.asarray(image, dtype=np.float64) * scale).astype(np.float32)


def normalize(image: np.ndarray, mean: float | Sequence[float], std: float | Sequence[float]) -> np.ndarray:
    """``(image - mean) / std`` per channel of a (C, H, W) image, in its float type (float32 for integers)."""
    image = np.asarray(image)
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    channels = image.shape[0]
    mean, std = (per_channel(name, values, channels).astype(image.dtype).reshape(-1, 1, 1)  # (C, 1, 1)
                 for name, values in (("mean", mean), ("std", std)))
    return (image - mean) / std


def pad(images: Sequence[np.ndarray], padded_size: tuple[int, int],
        segmentation_maps: Sequence[np.ndarray] | None = None, fill: float = 0,
        ignore_index: int = 255) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray] | None]:
    """Pad (C, H, W) images with ``fill`` and (N, H, W) maps with ``ignore_index`` at the bottom and right to
    ``padded_size``; returns (images, pixel masks (H_pad, W_pad) int64 with 1 on image pixels, maps or None)."""
    target_h, target_w = int(padded_size[0]), int(padded_size[1])

    def padded(array: np.ndarray, value: float) -> np.ndarray:
        height, width = array.shape[-2:]
        if height > target_h or width > target_w:
            raise ValueError(f"padded_size {(target_h, target_w)} is smaller than an input of {height}x{width}; "
                             "pass a size at least as large as every input.")
        out = np.full((*array.shape[:-2], target_h, target_w), value, dtype=array.dtype)
        out[..., :height, :width] = array
        return out

    out_images, masks = [], []
    for image in images:
        out_images.append(padded(np.asarray(image), fill))
        mask = np.zeros((target_h, target_w), dtype=np.int64)
        mask[: image.shape[-2], : image.shape[-1]] = 1
        masks.append(mask)
    out_maps = None if segmentation_maps is None else [padded(np.asarray(m), ignore_index) for m in segmentation_maps]
    return out_images, masks, out_maps
