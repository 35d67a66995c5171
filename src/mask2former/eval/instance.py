"""Mask AP with the COCO protocol through pycocotools ``COCOeval(iouType="segm")`` (imported on first use)."""

from __future__ import annotations

import contextlib
import copy
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..data.formats import PathLike, read_json
from ..extras import require

#: names of ``COCOeval.stats[:6]`` for segmentation
AP_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def masks_to_coco_results(
    image_id: int, masks: np.ndarray, category_ids: Sequence[int], scores: Sequence[float]
) -> list[dict[str, Any]]:
    """COCO results entries (compressed RLE ``segmentation`` with string counts) for one image.

    Args:
        image_id: the image's id in the ground-truth JSON.
        masks: (N, H, W) bool.
        category_ids: (N,) dataset category ids (not contiguous label ids).
        scores: (N,) confidences.
    """
    mask_utils = require("pycocotools.mask", "coco", "Encoding COCO instance results")

    results = []
    for mask, category_id, score in zip(masks, category_ids, scores):
        rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        rle["counts"] = rle["counts"].decode("ascii")  # JSON-serialisable
        results.append(
            {"image_id": image_id, "category_id": int(category_id), "segmentation": rle, "score": float(score)}
        )
    return results


def _load_ground_truth(gt: PathLike | dict[str, Any]):
    COCO = require("pycocotools.coco", "coco", "Mask AP").COCO

    data = read_json(gt) if isinstance(gt, (str, Path)) else copy.deepcopy(gt)
    data.setdefault("info", {})  # some pycocotools versions require it in loadRes
    data.setdefault("licenses", [])
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _compress_rles(detections: list[dict[str, Any]]) -> None:
    """Uncompressed RLE segmentations (``counts`` as a list) become compressed RLE, which ``loadRes`` requires."""
    mask_utils = require("pycocotools.mask", "coco", "Mask AP")

    for detection in detections:
        segmentation = detection.get("segmentation")
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), list):
            height, width = segmentation["size"]
            detection["segmentation"] = mask_utils.frPyObjects(segmentation, height, width)


def evaluate_instance_segmentation(
    gt: PathLike | dict[str, Any],
    results: PathLike | Sequence[dict[str, Any]],
    per_class: bool = False,
    verbose: bool = False,
) -> dict[str, Any]:
    """Mask AP of ``results`` (list or JSON file of COCO results with RLE/polygon ``segmentation``) against ``gt``.

    Returns ``AP``, ``AP50``, ``AP75``, ``APs``, ``APm``, ``APl`` as fractions (NaN where pycocotools reports -1, i.e.
    no ground truth in that area range), and with ``per_class`` a ``per_class`` dict category id -> {name, AP}.
    No results at all gives AP 0. ``verbose`` prints pycocotools' own summary.
    """
    COCOeval = require("pycocotools.cocoeval", "coco", "Mask AP").COCOeval

    coco_gt = _load_ground_truth(gt)
    detections = read_json(results) if isinstance(results, (str, Path)) else copy.deepcopy(list(results))
    where = results if isinstance(results, (str, Path)) else "results"
    needed = ("image_id", "category_id", "segmentation", "score")
    if not isinstance(detections, list) or not all(isinstance(d, dict) and all(k in d for k in needed)
                                                   for d in detections):
        raise ValueError(f"{where}: not COCO results (a list of {{{', '.join(needed)}}} objects).")
    if not detections:
        output: dict[str, Any] = {name: 0.0 for name in AP_NAMES}
        if per_class:
            output["per_class"] = {
                c["id"]: {"name": c.get("name", str(c["id"])), "AP": 0.0} for c in coco_gt.dataset["categories"]
            }
        return output
    _compress_rles(detections)
    quiet = contextlib.nullcontext() if verbose else contextlib.redirect_stdout(io.StringIO())
    with quiet:
        coco_dt = coco_gt.loadRes(detections)
        evaluator = COCOeval(coco_gt, coco_dt, iouType="segm")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    output = {name: (float(v) if v >= 0 else float("nan")) for name, v in zip(AP_NAMES, evaluator.stats[:6])}
    if per_class:
        # precision: (iou thresholds, recall points, classes, area ranges, max detections); area "all", 100 detections
        precision = evaluator.eval["precision"]
        output["per_class"] = {}
        for index, category_id in enumerate(evaluator.params.catIds):
            values = precision[:, :, index, 0, -1]
            values = values[values > -1]
            name = coco_gt.cats[category_id].get("name", str(category_id))
            output["per_class"][category_id] = {
                "name": name,
                "AP": float(values.mean()) if values.size else float("nan"),
            }
    return output
