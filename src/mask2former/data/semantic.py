"""Semantic segmentation from two folders: images and single-channel label PNGs matched by file stem (ADE20K layout)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .formats import Category, PathLike, read_label_png, read_rgb_image
from .sample import Sample, SegmentationDataset, Transform
from mask2former.preprocess.targets import reduce_labels  # one implementation, shared with the processor

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


class SemanticFolderDataset(SegmentationDataset):
    """Images in ``image_dir`` and label PNGs in ``label_dir`` with the same stem (``a.jpg`` <-> ``a.png``).

    Labels are contiguous ids into ``class_names`` (after ``reduce_labels``), ``ignore_index`` marks unlabelled
    pixels. Every class is a stuff class (semantic segmentation has no instances). A sample holds one mask per
    class present in the label map.

    Raises ``ValueError`` naming the file for a label PNG without an image, an image without a label PNG, and (when
    loaded) a label value outside ``[0, len(class_names))`` other than ``ignore_index``.
    """

    def __init__(
        self,
        image_dir: PathLike,
        label_dir: PathLike,
        class_names: Sequence[str],
        reduce_labels: bool = False,
        ignore_index: int = 255,
        transform: Transform | None = None,
        seed: int | None = None,
    ):
        categories = [Category(i, i, str(name), isthing=False) for i, name in enumerate(class_names)]
        super().__init__(categories, transform, seed)
        self.image_dir = Path(image_dir)
        self.label_dir = Path(label_dir)
        self.reduce_labels = reduce_labels
        self.ignore_index = ignore_index
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"image folder not found: {self.image_dir}")
        if not self.label_dir.is_dir():
            raise FileNotFoundError(f"label folder not found: {self.label_dir}")
        images = {p.stem: p for p in sorted(self.image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        labels = {p.stem: p for p in sorted(self.label_dir.iterdir()) if p.suffix.lower() == ".png"}
        problems = [f"label PNG has no image in {self.image_dir}: {path}" for stem, path in labels.items()
                    if stem not in images]
        problems += [f"image has no label PNG in {self.label_dir}: {path}" for stem, path in images.items()
                     if stem not in labels]
        if problems:
            more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
            raise ValueError(f"{len(problems)} unpaired file(s): {'; '.join(problems[:10])}{more}.")
        self._pairs = [(images[stem], labels[stem]) for stem in sorted(images)]

    def __len__(self) -> int:
        return len(self._pairs)

    def files(self) -> list[Path]:
        """Every file the samples read: each image and its label PNG."""
        return [path for pair in self._pairs for path in pair]

    def label_map(self, index: int) -> np.ndarray:
        """(H, W) int64 contiguous labels of ``index`` with ``ignore_index`` for unlabelled pixels (mIoU input)."""
        path = self._pairs[index][1]
        labels = read_label_png(path)
        if self.reduce_labels:
            labels = reduce_labels(labels, self.ignore_index)
        bad = ((labels >= len(self._categories)) | (labels < 0)) & (labels != self.ignore_index)
        if bad.any():
            raise ValueError(
                f"{path}: label values {np.unique(labels[bad]).tolist()} outside [0, {len(self._categories)}) "
                f"and not the ignore index {self.ignore_index}"
            )
        return labels

    def load(self, index: int) -> Sample:
        image_path, label_path = self._pairs[index]
        image = read_rgb_image(image_path)
        labels = self.label_map(index)
        if labels.shape != image.shape[:2]:
            raise ValueError(f"{label_path}: size {labels.shape} differs from image {image_path} {image.shape[:2]}")
        present = np.unique(labels)
        present = present[present != self.ignore_index]  # (N,)
        return {
            "image": image,
            "masks": labels[None] == present[:, None, None],  # (N, H, W)
            "class_labels": present.astype(np.int64),
            "iscrowd": np.zeros(present.size, dtype=bool),
            "image_id": image_path.stem,
            "file_name": image_path.name,
        }
