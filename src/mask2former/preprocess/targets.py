"""Training targets: one label map -> binary masks (one per label present) and their class ids."""

from __future__ import annotations

from typing import Mapping

import numpy as np

# Above this many distinct possible ids a sort is cheaper than a dense lookup table.
_DENSE_LOOKUP_LIMIT = 1 << 22


def reduce_labels(label_map: np.ndarray, ignore_index: int | None = 255) -> np.ndarray:
    """Shift ids down by one for datasets whose 0 means "unlabelled" (e.g. ADE20K): 0 -> ``ignore_index``, k -> k-1.

    Pixels already equal to ``ignore_index`` stay ignored.
    """
    if ignore_index is None:
        raise ValueError("do_reduce_labels=True needs ignore_index (e.g. 255) to mark the former label 0.")
    return np.where((label_map == 0) | (label_map == ignore_index), ignore_index, label_map - 1)


def _present_labels(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct values and, for each value, the index of its label: like ``np.unique(return_inverse=True)``."""
    if values.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    low, high = int(values.min()), int(values.max())
    if low >= 0 and high < _DENSE_LOOKUP_LIMIT:
        present = np.bincount(values, minlength=high + 1) > 0  # (max_id + 1,)
        labels = np.flatnonzero(present)
        lookup = np.cumsum(present) - 1  # id -> position among present labels
        return labels.astype(np.int64), lookup[values]
    labels, inverse = np.unique(values, return_inverse=True)
    return labels.astype(np.int64), inverse.reshape(-1)


def class_ids_for(
    labels: np.ndarray,
    instance_id_to_semantic_id: Mapping[int, int] | None,
    do_reduce_labels: bool,
    image_index: int = 0,
) -> np.ndarray:
    """Class id of each label: the label itself for semantic maps, or looked up for instance maps."""
    if instance_id_to_semantic_id is None:
        return labels.astype(np.int64)
    mapping = {int(key): int(value) for key, value in instance_id_to_semantic_id.items()}
    offset = 1 if do_reduce_labels else 0
    classes = np.empty(len(labels), dtype=np.int64)
    for position, label in enumerate(labels.tolist()):
        instance_id = label + offset
        if instance_id not in mapping:
            raise ValueError(
                f"Instance id {instance_id} occurs in segmentation map {image_index} but not in "
                f"instance_id_to_semantic_id (which has ids {sorted(mapping)[:20]}); add it, or set its pixels to "
                "ignore_index."
            )
        classes[position] = mapping[instance_id] - offset
    return classes


def encode_label_map(
    label_map: np.ndarray,
    padded_size: tuple[int, int],
    instance_id_to_semantic_id: Mapping[int, int] | None = None,
    ignore_index: int | None = None,
    do_reduce_labels: bool = False,
    image_index: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Binary masks and class ids of an (H, W) int64 label map placed top-left in a (H_pad, W_pad) frame.

    Returns ``mask_labels`` (N, H_pad, W_pad) bool, one mask per distinct id other than ``ignore_index`` in increasing
    id order, False on padding; and ``class_labels`` (N,) int64. A map with no labels gives N = 0.
    """
    if do_reduce_labels:
        label_map = reduce_labels(label_map, ignore_index)
    height, width = label_map.shape
    pad_h, pad_w = padded_size
    if height > pad_h or width > pad_w:
        raise ValueError(f"A label map of size {(height, width)} does not fit the padded size {padded_size}.")

    positions = (np.arange(height)[:, None] * pad_w + np.arange(width)[None, :]).reshape(-1)  # (H*W,) in the frame
    values = label_map.reshape(-1)  # (H*W,)
    if ignore_index is not None:
        keep = values != ignore_index
        values, positions = values[keep], positions[keep]
    labels, inverse = _present_labels(values)  # (N,), (P,)

    masks = np.zeros((len(labels), pad_h * pad_w), dtype=bool)  # (N, H_pad*W_pad)
    masks[inverse, positions] = True
    classes = class_ids_for(labels, instance_id_to_semantic_id, do_reduce_labels, image_index)
    return masks.reshape(len(labels), pad_h, pad_w), classes
