"""Resizing with Pillow, the way transformers' PIL-based processor does, whole or in exact bands.

8-bit RGB images are resized as one Pillow image, which is what the reference does, so the pixels are identical;
float images are resized plane by plane in Pillow's "F" mode. Pillow releases the GIL while it resamples, so the
bands of :func:`banded_resize` can be computed concurrently (:mod:`.threads`).
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import numpy as np
import PIL.Image

from .pillow_memory import as_array
from .threads import Step

Planes = list[np.ndarray]  # three (rows, columns) channel planes, uint8 or float32
Sink = Callable[[int, int, Planes], None]  # (top, left, planes) of one piece of a resized image


def resized_planes(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int | None) -> Planes:
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
    return _planes(image)


def _planes(image: PIL.Image.Image) -> Planes:
    return [as_array(band) for band in image.split()]


def resize_plane(plane: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """Resize one (H, W) uint8 or float32 channel with Pillow. For uint8, each plane of :func:`resized_planes` is
    exactly this: Pillow computes every band of an RGB image with the same integer arithmetic."""
    if plane.shape == (height, width):
        return plane
    return as_array(PIL.Image.fromarray(np.ascontiguousarray(plane)).resize((width, height), resample))


def resize_labels(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) int64 label map, sampling the same pixels as Pillow's NEAREST."""
    if label_map.shape == (height, width):
        return label_map
    low, high = (int(label_map.min()), int(label_map.max())) if label_map.size else (0, 0)
    if low < -(2**31) or high >= 2**31:
        raise ValueError(f"Label ids must fit in int32 to be resized, got {low}..{high}.")
    resized = PIL.Image.fromarray(label_map.astype(np.int32)).resize((width, height), PIL.Image.Resampling.NEAREST)
    return as_array(resized).astype(np.int64)


def can_split(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int | None) -> bool:
    """Whether :func:`banded_resize` applies: an 8-bit RGB image that Pillow resamples in passes (any filter but
    NEAREST) to a new size."""
    if resample is None or resample == PIL.Image.Resampling.NEAREST:
        return False
    if isinstance(image, np.ndarray):
        return image.dtype == np.uint8 and image.shape[:2] != (height, width)
    return image.mode == "RGB" and image.size != (width, height)


def banded_resize(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int, parts: int,
                  sink: Sink) -> tuple[list[Step], list[Step]]:
    """``image.resize((width, height), resample)`` as two lists of steps for :func:`~.threads.run_shared`, to run
    one after the other: the horizontal pass on row bands of the input, then the vertical pass on column bands of
    its result, each pass in at most ``parts`` bands. Together they give exactly the pixels of one call; each final
    piece reaches ``sink`` once, from the thread that committed it. Only for :func:`can_split` images.

    Pillow resamples in two passes with an 8-bit image in between: horizontally when the width changes, then
    vertically when the height changes, each pass with coefficients that depend only on its axis's input and output
    lengths. Rows are independent in the first pass and columns in the second.
    """
    source = PIL.Image.fromarray(image) if isinstance(image, np.ndarray) else image
    in_width, in_height = source.size

    def rows_resized(top: int, bottom: int) -> PIL.Image.Image:  # rows [top, bottom) after the horizontal pass
        return source.crop((0, top, in_width, bottom)).resize((width, bottom - top), resample)

    def rows_planes(top: int, bottom: int) -> Planes:  # when the horizontal pass is the whole resize
        return _planes(rows_resized(top, bottom))

    if in_width == width:
        across = source
        first: list[Step] = []
    elif in_height == height:
        bands = _bands(in_height, parts)
        return [(partial(rows_planes, top, bottom), partial(sink, top, 0)) for top, bottom in bands], []
    else:
        across = PIL.Image.new("RGB", (width, in_height), None)  # None: every pixel is pasted
        first = [(partial(rows_resized, top, bottom), lambda band, top=top: across.paste(band, (0, top)))
                 for top, bottom in _bands(in_height, parts)]

    def columns_resized(left: int, right: int) -> Planes:  # columns [left, right) after both passes
        return _planes(across.crop((left, 0, right, in_height)).resize((right - left, height), resample))

    second = [(partial(columns_resized, left, right), partial(sink, 0, left)) for left, right in _bands(width, parts)]
    return first, second


def _bands(length: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting ``length`` into at most ``parts`` near-equal non-empty bands."""
    edges = [length * part // parts for part in range(parts + 1)]
    return [(start, stop) for start, stop in zip(edges, edges[1:]) if stop > start]
