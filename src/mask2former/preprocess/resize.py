"""Output sizes and Pillow resizing: the same Pillow calls as transformers' PIL-based processor, so the same bytes.

8-bit RGB images are resized as one Pillow image; float images (16-bit or float inputs) plane by plane in Pillow's
"F" mode; label maps with NEAREST in mode "I".
"""

from __future__ import annotations

import math
from typing import Mapping

import numpy as np
import PIL.Image

SizeDict = Mapping[str, int]


def as_resample(resample: int | PIL.Image.Resampling | None) -> PIL.Image.Resampling:
    """Pillow filter from an int (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming) or the enum."""
    if resample is None:
        return PIL.Image.Resampling.BILINEAR
    try:
        return PIL.Image.Resampling(int(resample))
    except (ValueError, TypeError) as error:
        raise ValueError(f"resample must be a Pillow filter id 0..5, got {resample!r}.") from error


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


def resize_image(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int | None) -> np.ndarray:
    """An image (Pillow RGB, or (H, W, C) uint8 or float32 array) -> (height, width, C) array of the same kind.

    uint8 with 1 to 4 channels is resized as one Pillow image (L, LA, RGB, RGBA, as transformers does), other
    arrays plane by plane; ``resample=None`` or the same size keeps the pixels.
    """
    if isinstance(image, PIL.Image.Image):
        if resample is not None and image.size != (width, height):
            image = image.resize((width, height), resample=resample)
        return np.asarray(image)
    if resample is None or image.shape[:2] == (height, width):
        return image
    channels = image.shape[2]
    if image.dtype == np.uint8 and channels <= 4:
        whole = PIL.Image.fromarray(image[:, :, 0] if channels == 1 else image)  # L, LA, RGB or RGBA
        return np.asarray(whole.resize((width, height), resample=resample)).reshape(height, width, channels)
    planes = [PIL.Image.fromarray(np.ascontiguousarray(image[:, :, c])).resize((width, height), resample=resample)
              for c in range(channels)]
    return np.stack([np.asarray(plane) for plane in planes], axis=2)  # (height, width, C)


def resize_labels(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) int64 label map, sampling the same pixels as Pillow's NEAREST."""
    if label_map.shape == (height, width):
        return label_map
    low, high = (int(label_map.min()), int(label_map.max())) if label_map.size else (0, 0)
    if low < -(2**31) or high >= 2**31:
        raise ValueError(f"Label ids must fit in int32 to be resized, got {low}..{high}.")
    resized = PIL.Image.fromarray(label_map.astype(np.int32)).resize((width, height), PIL.Image.Resampling.NEAREST)
    return np.asarray(resized).astype(np.int64)
