"""Output row bands of a Pillow bilinear resize that can be computed separately and still give its exact pixels.

Pillow resamples an 8-bit image in two passes (horizontal then vertical, or the other way round: :mod:`.pass_order`);
each output row of the vertical pass is a weighted sum of a few source rows, with weights rounded to 22-bit fixed
point. To compute output rows ``[top, bottom)`` alone, take the source rows ``[first, last)`` they read and resize
them with the vertical pass over ``box=(0, y0 - first, width, y1 - first)``, where ``[y0, y1)`` is the band's span
in source rows. Pillow then derives the weights from the box (centre ``box_top + (j + 0.5) * scale``) instead of
from the whole image (centre ``(top + j + 0.5) * scale``), and the two can differ in the last bit of a double.
:func:`exact_row_bands` therefore only proposes bands whose edges map to source rows that a C float holds exactly
(integers, or fractions with a power-of-two denominator), so that the scales and the centres agree up to rounding;
it evaluates both sets of fixed-point weights with the arithmetic of Pillow's ``precompute_coeffs`` and
``normalize_coeffs_8bpc``, and accepts the bands only when they are equal *and* every rounding decision is at least
``_MARGIN`` away from its boundary, so that a last-bit difference (or a compiler's fused multiply-add in Pillow's
build) cannot change any of them. Tests check the result against Pillow itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

_PRECISION = 1 << 22  # Pillow's fixed-point scale for 8-bit resampling (32 - 8 - 2 bits)
_MARGIN = 1e-6  # in units of the fixed-point scale: far above any last-bit difference, far below 1


@dataclass(frozen=True)
class _Taps:
    rows: np.ndarray  # (out, ksize) int64: source row of each non-zero tap, sorted; -1 pads
    weights: np.ndarray  # (out, ksize) int64: its fixed-point coefficient; 0 pads
    clear: bool  # every rounding decision is at least _MARGIN from its boundary
    first: np.ndarray  # (out,) int64: first source row of each output's window
    last: np.ndarray  # (out,) int64: one past its last source row


def pillow_bilinear_taps(in_size: int, top: float, bottom: float, out_size: int) -> _Taps:
    """Pillow's 8-bit bilinear taps for ``out_size`` outputs over source coordinates [top, bottom) of an axis of
    ``in_size`` pixels, following its ``precompute_coeffs`` and ``normalize_coeffs_8bpc`` step by step."""
    low, high = float(np.float32(top)), float(np.float32(bottom))  # the box is passed as C floats
    scale = float(np.float32(high - low)) / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale  # the triangle filter's support is 1
    ksize = int(math.ceil(support)) * 2 + 1
    center = low + (np.arange(out_size, dtype=np.float64) + 0.5) * scale  # (out,)
    first = np.maximum(np.trunc(center - support + 0.5), 0).astype(np.int64)
    last = np.minimum(np.trunc(center + support + 0.5).astype(np.int64), in_size)
    offsets = np.arange(ksize)
    rows = first[:, None] + offsets[None, :]  # (out, ksize)
    distance = np.abs((rows - center[:, None] + 0.5) * (1.0 / filterscale))
    weights = np.where((distance < 1.0) & (rows < last[:, None]), 1.0 - distance, 0.0)
    total = np.zeros(out_size)
    for tap in range(ksize):  # summed in tap order, as Pillow does
        total = total + weights[:, tap]
    normalised = np.divide(weights, total[:, None], out=weights.copy(), where=total[:, None] != 0.0)
    scaled = normalised * _PRECISION + 0.5  # Pillow truncates this (the weights are never negative)
    fixed = np.trunc(scaled).astype(np.int64)
    # A window edge that lands within a last bit of an integer can move by one row, but the tap it adds or drops sits
    # at distance 1 from the centre, where the triangle's weight is 0; only the rounding of the weights can matter.
    clear = bool(np.all(np.abs(scaled - np.round(scaled)) >= _MARGIN))
    order = np.argsort(np.where(fixed != 0, rows, np.iinfo(np.int64).max), axis=1, kind="stable")
    fixed = np.take_along_axis(fixed, order, axis=1)
    rows = np.where(fixed != 0, np.take_along_axis(rows, order, axis=1), -1)
    return _Taps(rows, fixed, clear, first, last)


# output rows [top, bottom), the source rows [first, last) they read, and their span [y0, y1) in source rows
Band = tuple[int, int, int, int, float, float]


@lru_cache(maxsize=256)
def exact_row_bands(in_size: int, out_size: int, parts: int) -> tuple[Band, ...] | None:
    """Up to ``parts`` bands ``(top, bottom, first, last, y0, y1)`` of a bilinear resize from ``in_size`` to ``out_size``
    rows that give exactly the rows of one call when computed as the module docstring describes, or None where
    there is no such split into at least two bands."""
    if parts < 2 or in_size < 1 or out_size < 2:
        return None
    # An edge's source row top * in / out must be exact as a C float: a multiple of the odd part of out / gcd gives
    # a power-of-two denominator (a quarter, a thirty-second...).
    period = out_size // math.gcd(in_size, out_size)
    step = period // (period & -period)
    edges = sorted({0, out_size} | {round(out_size * part / parts / step) * step for part in range(1, parts)})
    spans = [(top, bottom) for top, bottom in zip(edges, edges[1:]) if bottom > top]
    if len(spans) < 2:
        return None
    whole = pillow_bilinear_taps(in_size, 0, in_size, out_size)
    if not whole.clear:
        return None
    bands = []
    for top, bottom in spans:
        first, last = int(whole.first[top:bottom].min()), int(whole.last[top:bottom].max())
        y0, y1 = top * in_size / out_size, bottom * in_size / out_size
        if float(np.float32(y0 - first)) != y0 - first or float(np.float32(y1 - first)) != y1 - first:
            return None
        band = pillow_bilinear_taps(last - first, y0 - first, y1 - first, bottom - top)
        rows = np.where(band.weights != 0, band.rows + first, -1)
        if not (band.clear and np.array_equal(rows, whole.rows[top:bottom])
                and np.array_equal(band.weights, whole.weights[top:bottom])):
            return None
        bands.append((top, bottom, first, last, y0, y1))
    return tuple(bands)
