"""COCO run-length encoding (the compressed string form that pycocotools reads and writes), in numpy.

A mask is flattened column by column (Fortran order); ``counts`` alternate runs of 0s and 1s, starting with 0s.
The string form stores each count (from the fourth on, as the difference to the count two places earlier) in
5-bit groups, least significant first, each as ``chr(48 + group)`` with bit 0x20 marking "more groups follow".
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MAX_GROUPS = 13  # 13 * 5 bits cover any int64


def runs(mask: np.ndarray) -> np.ndarray:
    """Run lengths of an (H, W) binary mask read column by column, starting with a run of 0s (maybe empty)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")  # (H*W,)
    changes = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # where a new run begins
    counts = np.diff(np.concatenate(([0], changes, [flat.size])))
    return np.concatenate(([0], counts)) if flat.size and flat[0] else counts


def counts_to_string(counts: np.ndarray) -> str:
    """Compress run lengths into the COCO string form."""
    values = np.asarray(counts, dtype=np.int64).copy()
    values[3:] -= np.asarray(counts, dtype=np.int64)[1:-2]
    groups = np.zeros((_MAX_GROUPS, values.size), dtype=np.uint8)  # one row per 5-bit group, 0 = not emitted
    active = np.ones(values.size, dtype=bool)
    for row in range(_MAX_GROUPS):
        group = values & 0x1F
        values = values >> 5  # arithmetic shift: negative values end at -1
        more = np.where(group & 0x10, values != -1, values != 0)
        groups[row] = np.where(active, np.where(more, group | 0x20, group) + 48, 0)
        active &= more
        if not active.any():
            break
    symbols = groups.T.reshape(-1)  # count-major order
    return symbols[symbols != 0].tobytes().decode("ascii")


def string_to_counts(text: str | bytes) -> np.ndarray:
    """Inverse of :func:`counts_to_string`."""
    data = text.encode("ascii") if isinstance(text, str) else bytes(text)
    counts: list[int] = []
    position = 0
    while position < len(data):
        value, shift, more = 0, 0, True
        while more:
            group = data[position] - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            position += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(counts) > 2:
            value += counts[-2]
        counts.append(value)
    return np.asarray(counts, dtype=np.int64)


def encode(mask: np.ndarray) -> dict:
    """COCO RLE ``{"size": [H, W], "counts": str}`` of an (H, W) binary mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects one (H, W) mask, got shape {mask.shape}.")
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts_to_string(runs(mask))}


def encode_masks(masks: np.ndarray) -> list[dict]:
    """COCO RLE of each of (N, H, W) binary masks."""
    return [encode(mask) for mask in np.asarray(masks, dtype=bool)]


def decode(rle: dict) -> np.ndarray:
    """(H, W) bool mask of a COCO RLE with string (or list) ``counts``."""
    height, width = rle["size"]
    counts = rle["counts"]
    counts = string_to_counts(counts) if isinstance(counts, (str, bytes)) else np.asarray(counts, dtype=np.int64)
    values = np.zeros(counts.size, dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, counts)
    if flat.size != height * width:
        raise ValueError(f"RLE counts cover {flat.size} pixels, size {height}x{width} needs {height * width}.")
    return flat.reshape(width, height).T


# --- transformers' run-length format (``binary_mask_to_rle``), distinct from COCO's -------------------------------


def binary_mask_to_rle(mask: Any) -> list[int]:
    """transformers' run-length encoding of an (H, W) mask (nonzero = inside): the mask is flattened row by row
    and each run of 1s gives two numbers, its 1-based start and its length: ``[start_1, length_1, start_2, ...]``.
    Not COCO's RLE (column-major, alternating 0- and 1-runs; :func:`encode`)."""
    flat = _numpy(mask).reshape(-1) != 0
    edges = np.flatnonzero(np.diff(np.concatenate(([False], flat, [False])).astype(np.int8)))  # (2R,) run bounds
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.empty(2 * len(starts), dtype=np.int64)
    pairs[0::2], pairs[1::2] = starts + 1, ends - starts
    return pairs.tolist()


def convert_segmentation_to_rle(segmentation: Any) -> list[list[int]]:
    """One :func:`binary_mask_to_rle` per id of an (H, W) map of segment or class ids, in increasing id order."""
    ids = _numpy(segmentation)
    return [binary_mask_to_rle(ids == value) for value in np.unique(ids)]


def _numpy(array: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
    return array.detach().cpu().numpy() if hasattr(array, "detach") else np.asarray(array)
