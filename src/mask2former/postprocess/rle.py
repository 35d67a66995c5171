"""COCO run-length encoding (the compressed string form that pycocotools reads and writes), in numpy.

A mask is flattened column by column (Fortran order); ``counts`` alternate runs of 0s and 1s, starting with 0s.
The string form stores each count (from the fourth on, as the difference to the count two places earlier) in
5-bit groups, least significant first, each as ``chr(48 + group)`` with bit 0x20 marking "more groups follow".
"""

from __future__ import annotations

from typing import Any

import numpy as np

_MAX_GROUPS = 13  # 13 * 5 bits cover any int64


def runs_from_positions(positions: np.ndarray, total: int) -> np.ndarray:
    """Run lengths of a mask given the sorted column-major positions (P,) of its 1s among ``total`` pixels."""
    positions = np.asarray(positions, dtype=np.int64)
    if positions.size == 0:
        return np.array([total], dtype=np.int64)
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1  # where a new run of 1s begins
    starts = positions[np.concatenate(([0], breaks))]
    ends = positions[np.concatenate((breaks - 1, [positions.size - 1]))] + 1
    edges = np.empty(2 * starts.size + 2, dtype=np.int64)  # 0, start_0, end_0, start_1, end_1, ..., total
    edges[0], edges[-1] = 0, total
    edges[1:-1:2], edges[2:-1:2] = starts, ends
    counts = np.diff(edges)
    return counts[:-1] if counts[-1] == 0 else counts


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


def from_positions(positions: np.ndarray, height: int, width: int) -> dict:
    """RLE of a (height, width) mask given the sorted column-major positions (``x * height + y``) of its 1s."""
    counts = runs_from_positions(positions, height * width)
    return {"size": [int(height), int(width)], "counts": counts_to_string(counts)}


def encode_box(box: np.ndarray, top: int, left: int, height: int, width: int) -> dict:
    """RLE of a (height, width) mask that is 0 except for the bool ``box`` (bh, bw) placed at (top, left)."""
    box_height = box.shape[0]
    flat = np.flatnonzero(np.asarray(box, dtype=bool).T)  # column-major positions inside the box, sorted
    positions = (left + flat // box_height) * height + top + flat % box_height
    return from_positions(positions, height, width)


def encode(mask: np.ndarray) -> dict:
    """COCO RLE ``{"size": [H, W], "counts": str}`` of an (H, W) binary mask."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"encode expects one (H, W) mask, got shape {mask.shape}.")
    return encode_box(mask, 0, 0, mask.shape[0], mask.shape[1])


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
    flat = (mask.detach().cpu().numpy() if hasattr(mask, "detach") else np.asarray(mask)).reshape(-1) != 0
    edges = np.flatnonzero(np.diff(np.concatenate(([False], flat, [False])).astype(np.int8)))  # (2R,) run bounds
    starts, ends = edges[0::2], edges[1::2]
    pairs = np.empty(2 * len(starts), dtype=np.int64)
    pairs[0::2], pairs[1::2] = starts + 1, ends - starts
    return pairs.tolist()


def convert_segmentation_to_rle(segmentation: Any) -> list[list[int]]:
    """One :func:`binary_mask_to_rle` per id of an (H, W) map of segment or class ids, in increasing id order."""
    ids = segmentation.detach().cpu().numpy() if hasattr(segmentation, "detach") else np.asarray(segmentation)
    return [binary_mask_to_rle(ids == value) for value in np.unique(ids)]
