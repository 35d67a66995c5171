"""Semantic segmentation metrics from a dataset-level confusion matrix: mIoU, fwIoU, pixel and mean accuracy.

Pixels whose ground truth is ``ignore_index`` are left out. A predicted label outside ``[0, K)`` counts as wrong for
its ground-truth class and as a prediction of no class. Per class: ``IoU = TP / (TP + FP + FN)``, accuracy
``TP / (TP + FN)``. mIoU averages IoU over classes with a non-empty union (``TP + FP + FN > 0``); mean accuracy over
classes present in the ground truth; fwIoU weights each class's IoU by its share of ground-truth pixels; pixel
accuracy is the fraction of labelled pixels predicted right.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.formats import PathLike, read_label_png
from ..preprocess.targets import reduce_labels as _reduce_labels


class ConfusionMatrix:
    """Accumulates a (K, K + 1) confusion matrix: rows ground truth, columns prediction, last column "no class".

    ``matrix`` summed over processes (e.g. ``torch.distributed.all_reduce``) is the same as ``merge``.
    """

    def __init__(self, num_classes: int, ignore_index: int = 255, class_names: Sequence[str] | None = None):
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.class_names = list(class_names) if class_names is not None else None
        self.matrix = np.zeros((num_classes, num_classes + 1), dtype=np.int64)

    def reset(self) -> None:
        self.matrix[:] = 0

    def update(self, gt: np.ndarray, pred: np.ndarray) -> None:
        """Add one image (or a batch): integer label maps of equal shape, e.g. (H, W)."""
        gt = np.asarray(gt, dtype=np.int64).reshape(-1)
        pred = np.asarray(pred, dtype=np.int64).reshape(-1)
        if gt.size != pred.size:
            raise ValueError(f"ground truth has {gt.size} pixels, prediction {pred.size}")
        labelled = gt != self.ignore_index
        gt, pred = gt[labelled], pred[labelled]
        if gt.size and (gt.min() < 0 or gt.max() >= self.num_classes):
            raise ValueError(f"ground-truth labels outside [0, {self.num_classes}) and not {self.ignore_index}")
        pred = np.where((pred >= 0) & (pred < self.num_classes), pred, self.num_classes)
        width = self.num_classes + 1
        self.matrix += np.bincount(gt * width + pred, minlength=self.num_classes * width).reshape(-1, width)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another accumulator's matrix into this one; returns self."""
        if other.matrix.shape != self.matrix.shape:
            raise ValueError("cannot merge confusion matrices of different sizes")
        self.matrix += other.matrix
        return self

    def compute(self) -> dict[str, Any]:
        """``mIoU``, ``fwIoU``, ``pACC``, ``mACC`` (fractions), ``per_class_IoU`` and ``per_class_ACC``.

        Per-class values are NaN for classes without pixels in the union (IoU) or in the ground truth (accuracy).
        """
        matrix = self.matrix.astype(np.float64)
        tp = np.diag(matrix[:, : self.num_classes])  # (K,)
        gt_pixels = matrix.sum(1)  # (K,)
        pred_pixels = matrix[:, : self.num_classes].sum(0)  # (K,)
        union = gt_pixels + pred_pixels - tp
        iou = np.divide(tp, union, out=np.full_like(tp, np.nan), where=union > 0)
        accuracy = np.divide(tp, gt_pixels, out=np.full_like(tp, np.nan), where=gt_pixels > 0)
        total = gt_pixels.sum()
        frequency = gt_pixels / total if total > 0 else np.zeros_like(gt_pixels)
        names = self.class_names or [str(i) for i in range(self.num_classes)]
        return {
            "mIoU": float(np.nanmean(iou)) if (union > 0).any() else 0.0,
            "fwIoU": float(np.nansum(frequency * iou)),
            "pACC": float(tp.sum() / total) if total > 0 else 0.0,
            "mACC": float(np.nanmean(accuracy)) if (gt_pixels > 0).any() else 0.0,
            "per_class_IoU": dict(zip(names, iou.tolist())),
            "per_class_ACC": dict(zip(names, accuracy.tolist())),
        }


def evaluate_semantic_folders(
    gt_dir: PathLike,
    pred_dir: PathLike,
    num_classes: int,
    ignore_index: int = 255,
    reduce_labels: bool = False,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Metrics of prediction label PNGs against ground-truth label PNGs matched by file stem.

    ``reduce_labels`` applies to the ground truth only (predictions are contiguous class ids). Every ground-truth PNG
    needs a prediction; raises ``ValueError`` naming the first missing one.
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    metric = ConfusionMatrix(num_classes, ignore_index, class_names)
    gt_files = sorted(p for p in gt_dir.iterdir() if p.suffix.lower() == ".png")
    if not gt_files:
        raise ValueError(f"no label PNGs in {gt_dir}")
    for gt_path in gt_files:
        pred_path = pred_dir / gt_path.name
        if not pred_path.is_file():
            raise ValueError(f"no prediction {pred_path} for ground truth {gt_path}")
        gt = read_label_png(gt_path)
        if reduce_labels:
            gt = _reduce_labels(gt, ignore_index)
        pred = read_label_png(pred_path)
        if gt.shape != pred.shape:
            raise ValueError(f"{pred_path}: size {pred.shape} differs from ground truth {gt_path} {gt.shape}")
        try:
            metric.update(gt, pred)
        except ValueError as error:
            raise ValueError(f"{gt_path}: {error}") from None
    return metric.compute()
