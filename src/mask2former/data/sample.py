"""The sample format every dataset yields, conversions to metric inputs, and the shared dataset base class.

A sample is a dict:

- ``image``: (H, W, 3) uint8 RGB.
- ``masks``: (N, H, W) bool, one binary mask per segment (instance masks may overlap; panoptic and semantic ones
  do not).
- ``class_labels``: (N,) int64 contiguous label ids (``Category.label_id``).
- ``iscrowd``: (N,) bool; crowd regions are kept so that a training loop can drop them and an evaluator can ignore them.
- ``image_id`` and ``file_name``: where the sample came from.
- ``pixel_mask``: (H, W) bool, True on real pixels; only present after a transform that pads.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from .formats import Category

Sample = dict[str, Any]
Transform = Callable[[Sample, np.random.Generator], Sample]


def masks_to_panoptic(
    masks: np.ndarray, class_labels: np.ndarray, iscrowd: np.ndarray | None = None
) -> tuple[np.ndarray, list[dict[str, int]]]:
    """A panoptic id map and its ``segments_info`` from non-overlapping masks (the input of ``PanopticQuality``).

    Args:
        masks: (N, H, W) bool.
        class_labels: (N,) label ids, written as ``category_id``.
        iscrowd: (N,) bool or None.

    Returns:
        (H, W) int32 ids (segment n has id n + 1, 0 where no mask covers a pixel) and the segments. Where masks overlap,
        the later one wins.
    """
    num, height, width = masks.shape
    ids = np.zeros((height, width), dtype=np.int32)
    for index in range(num):
        ids[masks[index]] = index + 1
    crowd = np.zeros(num, dtype=bool) if iscrowd is None else np.asarray(iscrowd, dtype=bool)
    segments = [
        {"id": index + 1, "category_id": int(class_labels[index]), "iscrowd": int(crowd[index])} for index in range(num)
    ]
    return ids, segments


def masks_to_semantic(masks: np.ndarray, class_labels: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """(H, W) int64 label map from (N, H, W) masks and (N,) labels; ``ignore_index`` where no mask covers a pixel."""
    labels = np.full(masks.shape[1:], ignore_index, dtype=np.int64)
    for mask, label in zip(masks, class_labels):
        labels[mask] = int(label)
    return labels


class SegmentationDataset(Dataset):
    """Base of the datasets here: categories, the optional transform, and per-sample random generators.

    With a ``seed``, the augmentation of sample ``index`` in epoch ``e`` is drawn from
    ``numpy.random.default_rng((seed, e, index))``, so results do not depend on worker count or order; call
    :meth:`set_epoch` at the start of each epoch. Without a seed each call draws fresh entropy.
    """

    def __init__(self, categories: Sequence[Category], transform: Transform | None = None, seed: int | None = None):
        self._categories = list(categories)
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    @property
    def categories(self) -> list[Category]:
        """Categories ordered by contiguous label id."""
        return list(self._categories)

    @property
    def id2label(self) -> dict[int, str]:
        return {category.label_id: category.name for category in self._categories}

    @property
    def label2id(self) -> dict[str, int]:
        return {category.name: category.label_id for category in self._categories}

    @property
    def category_id_to_label_id(self) -> dict[int, int]:
        """Dataset category id -> contiguous label id."""
        return {category.category_id: category.label_id for category in self._categories}

    @property
    def label_id_to_isthing(self) -> dict[int, bool]:
        """Contiguous label id -> isthing; what ``PanopticQuality`` takes to evaluate in label-id space."""
        return {category.label_id: category.isthing for category in self._categories}

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng()
        return np.random.default_rng((self.seed, self.epoch, index))

    def files(self) -> list[Any]:
        """Every file (``pathlib.Path``) the samples read, to check before a run that they all exist."""
        return []

    def load(self, index: int) -> Sample:
        """The untransformed sample ``index``; subclasses read their files here."""
        raise NotImplementedError

    def __getitem__(self, index: int) -> Sample:
        sample = self.load(index)
        if self.transform is not None:
            sample = self.transform(sample, self.rng(index))
        return sample


def empty_targets(height: int, width: int) -> dict[str, np.ndarray]:
    return {
        "masks": np.zeros((0, height, width), dtype=bool),
        "class_labels": np.zeros(0, dtype=np.int64),
        "iscrowd": np.zeros(0, dtype=bool),
    }
