"""Panoptic quality (PQ, SQ, RQ) with the COCO panoptic protocol, vectorised per image, accumulated per class.

Per image, a segment is a set of pixels of one id in an (H, W) id map, described by a ``segments_info`` entry
(``id``, ``category_id``, optional ``iscrowd``). The protocol (Kirillov et al. 2019, COCO panoptic evaluation):

- Id 0 is void; so is every pixel whose id has no ``segments_info`` entry.
- A ground-truth and a predicted segment of the same category, the ground truth not crowd, match when
  IoU > 0.5, where the union leaves out the predicted pixels that fall on void. Such matches are unique.
- TP: matched pairs (their IoU is summed per class). FN: unmatched non-crowd ground-truth segments; crowd segments
  never count. FP: unmatched predictions, except those with more than half of their pixels on void plus the crowd
  regions of their own category.
- Per class: ``PQ = IoU_sum / (TP + FP/2 + FN/2)``, ``SQ = IoU_sum / TP`` (0 without TP) and
  ``RQ = TP / (TP + FP/2 + FN/2)``. PQ, SQ and RQ of a group (all, things, stuff) are means over its classes with
  ``TP + FP + FN > 0``.

Choices where the reference tool is silent or fails: areas are counted in the id maps (the reference reads ground-truth
areas from the JSON); segments without pixels are ignored (the reference raises for such predictions); pixels of an
unknown id count as void on both sides (the reference raises for predictions and treats ground truth as neither void
nor a segment); all crowd regions of a category are used (the reference keeps one per category and image).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.formats import PathLike, read_json, read_panoptic_png

Segments = Sequence[Mapping[str, Any]]

_TP, _FP, _FN, _IOU = range(4)


def _segment_table(segments: Segments, category_index: Mapping[int, int], side: str) -> tuple[np.ndarray, ...]:
    """Arrays (ids, class indices, crowd flags) of a ``segments_info`` list, validated."""
    missing = [s for s in segments if "id" not in s or "category_id" not in s]
    if missing:
        raise ValueError(
            f"{side} segments need 'id' and 'category_id' (map a post-processor's 'label_id'), got {missing[0]}"
        )
    ids = np.array([int(s["id"]) for s in segments], dtype=np.int64)  # (S,)
    if np.unique(ids).size != ids.size:
        raise ValueError(f"{side} segments_info has duplicate ids")
    if (ids == 0).any():
        raise ValueError(f"{side} segments_info uses id 0, which is void")
    unknown = [s["category_id"] for s in segments if int(s["category_id"]) not in category_index]
    if unknown:
        raise ValueError(f"{side} segments have unknown category ids {sorted(set(unknown))}")
    classes = np.array([category_index[int(s["category_id"])] for s in segments], dtype=np.int64)  # (S,)
    crowd = np.array([bool(s.get("iscrowd", 0)) for s in segments], dtype=bool)  # (S,)
    return ids, classes, crowd


def _compact_indices(id_map: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Per pixel, 1 + the position of its id in ``ids``, or 0 for void and unknown ids. (H*W,) int64."""
    flat = np.asarray(id_map, dtype=np.int64).reshape(-1)  # (H*W,)
    if ids.size == 0:
        return np.zeros(flat.size, dtype=np.int64)
    order = np.argsort(ids)
    position = np.clip(np.searchsorted(ids[order], flat), 0, ids.size - 1)  # (H*W,)
    found = ids[order][position] == flat
    return np.where(found, order[position] + 1, 0)


def panoptic_image_stats(
    gt_ids: np.ndarray,
    gt_segments: Segments,
    pred_ids: np.ndarray,
    pred_segments: Segments,
    category_index: Mapping[int, int],
) -> np.ndarray:
    """Per-class TP, FP, FN and IoU sum of one image.

    Args:
        gt_ids, pred_ids: (H, W) integer segment id maps.
        gt_segments, pred_segments: ``segments_info`` lists (``id``, ``category_id``, optional ``iscrowd``).
        category_index: category id -> row of the result.

    Returns:
        (K, 4) float64 with columns TP, FP, FN, IoU sum.
    """
    if np.shape(gt_ids) != np.shape(pred_ids):
        raise ValueError(f"ground truth {np.shape(gt_ids)} and prediction {np.shape(pred_ids)} differ in size")
    g_ids, g_class, g_crowd = _segment_table(gt_segments, category_index, "ground-truth")
    p_ids, p_class, _ = _segment_table(pred_segments, category_index, "predicted")
    num_g, num_p = g_ids.size, p_ids.size
    g_pix = _compact_indices(gt_ids, g_ids)  # (H*W,) 0 = void
    p_pix = _compact_indices(pred_ids, p_ids)  # (H*W,) 0 = void
    counts = np.bincount(g_pix * (num_p + 1) + p_pix, minlength=(num_g + 1) * (num_p + 1))
    counts = counts.reshape(num_g + 1, num_p + 1).astype(np.float64)  # (G+1, P+1) pixel counts per pair
    inter = counts[1:, 1:]  # (G, P)
    g_area = counts[1:].sum(1)  # (G,)
    p_area = counts[:, 1:].sum(0)  # (P,)
    p_on_void = counts[0, 1:]  # (P,) predicted pixels on ground-truth void

    same_class = (g_class[:, None] == p_class[None, :]) & ~g_crowd[:, None]  # (G, P)
    union = g_area[:, None] + p_area[None, :] - inter - p_on_void[None, :]  # (G, P)
    iou = np.where(same_class & (inter > 0), inter / np.maximum(union, 1.0), 0.0)  # (G, P)
    match = iou > 0.5  # (G, P), at most one True per row and per column
    g_matched, p_matched = match.any(1), match.any(0)

    stats = np.zeros((len(category_index), 4), dtype=np.float64)
    rows, cols = np.nonzero(match)
    np.add.at(stats[:, _TP], g_class[rows], 1.0)
    np.add.at(stats[:, _IOU], g_class[rows], iou[rows, cols])
    false_neg = (g_area > 0) & ~g_matched & ~g_crowd
    np.add.at(stats[:, _FN], g_class[false_neg], 1.0)
    # predicted pixels on crowd regions of the prediction's own category
    crowd_same = g_crowd[:, None] & (g_class[:, None] == p_class[None, :])  # (G, P)
    p_on_crowd = (inter * crowd_same).sum(0)  # (P,)
    ignored = (p_on_void + p_on_crowd) > 0.5 * p_area
    false_pos = (p_area > 0) & ~p_matched & ~ignored
    np.add.at(stats[:, _FP], p_class[false_pos], 1.0)
    return stats


class PanopticQuality:
    """Dataset-level PQ accumulator: ``update`` per image, ``merge`` across processes, ``compute`` at the end.

    Args:
        categories: category id -> isthing, for every class that may appear. Use the same id space as the
            ``category_id`` of the segments (dataset ids or contiguous label ids).
        names: optional category id -> name, used in the per-class results.

    ``stats`` is the (K, 4) float64 array of per-class TP, FP, FN and IoU sums (rows in ``category_ids`` order);
    summing it over processes (e.g. ``torch.distributed.all_reduce``) is the same as ``merge``.
    """

    def __init__(self, categories: Mapping[int, bool], names: Mapping[int, str] | None = None):
        self.category_ids = [int(c) for c in categories]
        self.isthing = np.array([bool(categories[c]) for c in categories], dtype=bool)  # (K,)
        self.names = {int(k): str(v) for k, v in (names or {}).items()}
        self._index = {c: i for i, c in enumerate(self.category_ids)}
        self.stats = np.zeros((len(self.category_ids), 4), dtype=np.float64)
        self.num_images = 0

    @classmethod
    def from_coco_categories(cls, categories: Sequence[Mapping[str, Any]]) -> PanopticQuality:
        """From a COCO panoptic ``categories`` list (``id``, ``name``, ``isthing``), in dataset ids."""
        return cls(
            {int(c["id"]): bool(c.get("isthing", 1)) for c in categories},
            {int(c["id"]): str(c.get("name", c["id"])) for c in categories},
        )

    def reset(self) -> None:
        self.stats[:] = 0.0
        self.num_images = 0

    def update(self, gt_ids: np.ndarray, gt_segments: Segments, pred_ids: np.ndarray, pred_segments: Segments) -> None:
        """Add one image: (H, W) id maps and their ``segments_info`` (see :func:`panoptic_image_stats`)."""
        self.stats += panoptic_image_stats(gt_ids, gt_segments, pred_ids, pred_segments, self._index)
        self.num_images += 1

    def merge(self, other: PanopticQuality) -> PanopticQuality:
        """Add another accumulator's counts (same categories) into this one; returns self."""
        if other.category_ids != self.category_ids:
            raise ValueError("cannot merge PanopticQuality accumulators with different categories")
        self.stats += other.stats
        self.num_images += other.num_images
        return self

    def compute(self) -> dict[str, Any]:
        """PQ, SQ, RQ (fractions in [0, 1]) for all classes (``PQ``), things (``PQ_th``) and stuff (``PQ_st``).

        Also ``num_classes``/``num_things``/``num_stuff`` (classes averaged over), ``num_images`` and ``per_class``
        (category id -> PQ, SQ, RQ, TP, FP, FN and name). A group without any counted class scores 0.
        """
        tp, fp, fn, iou = self.stats.T  # (K,) each
        denominator = tp + 0.5 * fp + 0.5 * fn
        counted = denominator > 0
        pq = np.divide(iou, denominator, out=np.zeros_like(iou), where=counted)
        sq = np.divide(iou, tp, out=np.zeros_like(iou), where=tp > 0)
        rq = np.divide(tp, denominator, out=np.zeros_like(iou), where=counted)
        result: dict[str, Any] = {}
        groups = {"": counted, "_th": counted & self.isthing, "_st": counted & ~self.isthing}
        for suffix, chosen in groups.items():
            for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
                result[name + suffix] = float(values[chosen].mean()) if chosen.any() else 0.0
        result["num_classes"], result["num_things"], result["num_stuff"] = (int(g.sum()) for g in groups.values())
        result["num_images"] = self.num_images
        per_class = {}
        for index, category_id in enumerate(self.category_ids):
            entry = {"PQ": float(pq[index]), "SQ": float(sq[index]), "RQ": float(rq[index])}
            entry.update(TP=int(tp[index]), FP=int(fp[index]), FN=int(fn[index]), isthing=bool(self.isthing[index]))
            if category_id in self.names:
                entry["name"] = self.names[category_id]
            per_class[category_id] = entry
        result["per_class"] = per_class
        return result


def evaluate_panoptic_files(
    gt_json: PathLike,
    pred_json: PathLike,
    gt_folder: PathLike | None = None,
    pred_folder: PathLike | None = None,
) -> dict[str, Any]:
    """PQ of COCO panoptic predictions on disk against COCO panoptic ground truth on disk.

    Each JSON has ``annotations`` (``image_id``, ``file_name`` of the PNG, ``segments_info``); categories (with
    ``isthing``) come from the ground-truth JSON. PNG folders default to the JSON path without ``.json``. Every
    ground-truth image needs a prediction; predictions for other images are ignored.
    """
    gt_json, pred_json = Path(gt_json), Path(pred_json)
    gt_folder = Path(gt_folder) if gt_folder is not None else gt_json.with_suffix("")
    pred_folder = Path(pred_folder) if pred_folder is not None else pred_json.with_suffix("")
    gt_data, pred_data = read_json(gt_json), read_json(pred_json)
    for path, data, keys in ((gt_json, gt_data, ("annotations", "categories")), (pred_json, pred_data,
                                                                                 ("annotations",))):
        if not isinstance(data, dict) or any(not isinstance(data.get(key), list) for key in keys):
            raise ValueError(f"{path}: not a COCO panoptic JSON (it needs {' and '.join(keys)} lists).")
    metric = PanopticQuality.from_coco_categories(gt_data["categories"])
    try:
        predictions = {annotation["image_id"]: annotation for annotation in pred_data["annotations"]}
    except (KeyError, TypeError):
        raise ValueError(f"{pred_json}: every annotation needs an image_id.") from None
    for gt_annotation in gt_data["annotations"]:
        image_id = gt_annotation["image_id"]
        if image_id not in predictions:
            raise ValueError(f"{pred_json}: no prediction for image id {image_id}")
        prediction = predictions[image_id]
        if not isinstance(prediction.get("file_name"), str) or not isinstance(prediction.get("segments_info"), list):
            raise ValueError(f"{pred_json}: the annotation of image id {image_id} needs file_name and segments_info.")
        gt_png, pred_png = gt_folder / gt_annotation["file_name"], pred_folder / prediction["file_name"]
        try:
            metric.update(
                read_panoptic_png(gt_png),
                gt_annotation["segments_info"],
                read_panoptic_png(pred_png),
                prediction["segments_info"],
            )
        except ValueError as error:
            raise ValueError(f"image id {image_id} ({gt_png}, {pred_png}): {error}") from None
    return metric.compute()
