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

from .pass_order import horizontal_first
from .pillow_memory import as_array
from .row_bands import Band, exact_row_bands
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
                  sink: Sink, rounds: int = 2) -> tuple[list[Step], list[Step]] | None:
    """``image.resize((width, height), resample)`` as two lists of steps for :func:`~.threads.run_shared`, to run
    one after the other (the second may be empty), in at most ``parts`` bands each. Together they give exactly the
    pixels of one call; each final piece reaches ``sink`` once, from the thread that committed it. None where the
    installed Pillow's order of passes is not known (:func:`~.pass_order.horizontal_first`), or where it would take
    two rounds and ``rounds`` is 1: resize in one piece then. Only for :func:`can_split` images.

    Pillow resamples in two passes with an 8-bit image in between, each with coefficients that depend only on its
    axis's lengths; rows are independent in the horizontal pass and columns in the vertical one. One round of
    whole-row bands where :func:`~.row_bands.exact_row_bands` finds exact ones (bilinear), otherwise the first pass
    in bands along which it is independent and the second in bands along which that one is.
    """
    in_height, in_width = image.shape[:2] if isinstance(image, np.ndarray) else image.size[::-1]
    if in_width != width and in_height != height:
        first_pass = horizontal_first(in_width, in_height, width, height)
        if first_pass is None:
            return None
    else:
        first_pass = True
    bands = exact_row_bands(in_height, height, parts) if (
        resample == PIL.Image.Resampling.BILINEAR and in_height != height) else None
    if bands is not None:  # each band converts its own rows of an array input, on its thread
        return [_row_band_step(image, band, width, resample, first_pass, sink) for band in bands], []
    if in_height != height and rounds < 2:
        return None
    source = PIL.Image.fromarray(image) if isinstance(image, np.ndarray) else image
    if in_height == height:  # one horizontal pass: row bands
        return [_rows_step(source, top, bottom, width, resample, sink) for top, bottom in _bands(height, parts)], []
    if first_pass:  # horizontal on row bands of the source, then vertical on column bands of that
        across = source if in_width == width else PIL.Image.new("RGB", (width, in_height), None)
        first = [] if in_width == width else [
            (partial(_resized, source, (0, top, in_width, bottom), (width, bottom - top), resample),
             partial(_paste, across, top=top)) for top, bottom in _bands(in_height, parts)]
        second = [(partial(_planes_of, across, (left, 0, right, in_height), (right - left, height), resample),
                   partial(sink, 0, left)) for left, right in _bands(width, parts)]
        return first, second
    # vertical on column bands of the source, then horizontal on row bands of that: whole output rows
    down = PIL.Image.new("RGB", (in_width, height), None)  # None: every pixel is pasted
    first = [(partial(_resized, source, (left, 0, right, in_height), (right - left, height), resample),
              partial(_paste, down, left=left)) for left, right in _bands(in_width, parts)]
    second = [_rows_step(down, top, bottom, width, resample, sink) for top, bottom in _bands(height, parts)]
    return first, second


def _resized(source: PIL.Image.Image, crop: tuple[int, int, int, int], size: tuple[int, int],
             resample: int) -> PIL.Image.Image:
    """One pass over a piece of ``source``: the crop changes length along one axis only."""
    return source.crop(crop).resize(size, resample)


def _planes_of(source: PIL.Image.Image, crop: tuple[int, int, int, int], size: tuple[int, int],
               resample: int) -> Planes:
    return _planes(_resized(source, crop, size, resample))


def _paste(target: PIL.Image.Image, piece: PIL.Image.Image, top: int = 0, left: int = 0) -> None:
    target.paste(piece, (left, top))


def _rows_step(source: PIL.Image.Image, top: int, bottom: int, width: int, resample: int, sink: Sink) -> Step:
    """Rows [top, bottom) of ``source`` resized horizontally to ``width``: whole rows of the result."""
    return (partial(_planes_of, source, (0, top, source.size[0], bottom), (width, bottom - top), resample),
            partial(sink, top, 0))


def _row_band_step(source: np.ndarray | PIL.Image.Image, band: Band, width: int, resample: int,
                   horizontal_first: bool, sink: Sink) -> Step:
    return partial(_row_band, source, band, width, resample, horizontal_first), partial(sink, band[0], 0)


def _row_band(source: np.ndarray | PIL.Image.Image, band: Band, width: int, resample: int,
              horizontal_first: bool) -> Planes:
    """Output rows [top, bottom) from the source rows [first, last) they read, both passes in Pillow's order; the
    vertical one over the band's source span [y0, y1) as a box, which :func:`~.row_bands.exact_row_bands` has
    found to give exactly the rows of the whole resize."""
    top, bottom, first, last, y0, y1 = band
    if isinstance(source, np.ndarray):
        rows = PIL.Image.fromarray(source[first:last])
    else:
        rows = source.crop((0, first, source.size[0], last))
    in_width = rows.size[0]
    if horizontal_first:
        across = rows if width == in_width else rows.resize((width, last - first), resample)
        return _planes(across.resize((width, bottom - top), resample, box=(0, y0 - first, width, y1 - first)))
    down = rows.resize((in_width, bottom - top), resample, box=(0, y0 - first, in_width, y1 - first))
    return _planes(down if width == in_width else down.resize((width, bottom - top), resample))


def _bands(length: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting ``length`` into at most ``parts`` near-equal non-empty bands."""
    edges = [length * part // parts for part in range(parts + 1)]
    return [(start, stop) for start, stop in zip(edges, edges[1:]) if stop > start]
