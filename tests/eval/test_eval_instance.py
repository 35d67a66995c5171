"""Mask AP through pycocotools on results written by ``masks_to_coco_results``."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pycocotools")

from mask2former.data import CocoInstanceDataset, generate_synthetic_dataset  # noqa: E402
from mask2former.data.formats import mask_to_uncompressed_rle  # noqa: E402
from mask2former.eval import evaluate_instance_segmentation, masks_to_coco_results  # noqa: E402


def _ground_truth(masks, category_ids):
    """A one-image COCO instance JSON without an ``info`` key (ours adds it)."""
    height, width = masks[0].shape
    annotations = [
        {
            "id": i + 1,
            "image_id": 1,
            "category_id": c,
            "iscrowd": 0,
            "area": int(m.sum()),
            "bbox": [0, 0, width, height],
            "segmentation": mask_to_uncompressed_rle(m),
        }
        for i, (m, c) in enumerate(zip(masks, category_ids))
    ]
    return {
        "images": [{"id": 1, "height": height, "width": width, "file_name": "1.png"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
    }


def _box(y0, y1, x0, x1, shape=(20, 20)):
    mask = np.zeros(shape, dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_perfect_predictions_on_synthetic_data(tmp_path):
    paths = generate_synthetic_dataset(tmp_path, 4, seed=2, min_size=64, max_size=80, crowd_prob=1.0)
    dataset = CocoInstanceDataset(paths.image_dir, paths.instances_json)
    label_to_category = {c.label_id: c.category_id for c in dataset.categories}
    results = []
    for index in range(len(dataset)):
        sample = dataset.load(index)
        keep = ~sample["iscrowd"]
        assert sample["iscrowd"].any()  # crowd regions exist and are not predicted
        categories = [label_to_category[int(label)] for label in sample["class_labels"][keep]]
        results += masks_to_coco_results(sample["image_id"], sample["masks"][keep], categories, [1.0] * len(categories))
    results_file = tmp_path / "results.json"
    results_file.write_text(json.dumps(results))
    metrics = evaluate_instance_segmentation(paths.instances_json, results_file, per_class=True)
    assert metrics["AP"] == pytest.approx(1.0) and metrics["AP50"] == pytest.approx(1.0)
    assert all(row["AP"] == pytest.approx(1.0) for row in metrics["per_class"].values())


def test_constructed_cases():
    gt = _ground_truth([_box(0, 10, 0, 10), _box(12, 20, 12, 20)], [1, 1])
    perfect = _box(0, 10, 0, 10)
    stray = _box(0, 4, 14, 20)
    # one hit (score 0.9) and one false positive (score 0.8) for two objects: at every IoU threshold, precision 1
    # up to recall 0.5 and no recall beyond -> 51 of 101 recall points
    results = masks_to_coco_results(1, np.stack([perfect, stray]), [1, 1], [0.9, 0.8])
    metrics = evaluate_instance_segmentation(gt, results)
    assert metrics["AP"] == pytest.approx(51 / 101) and metrics["AP50"] == pytest.approx(51 / 101)
    assert np.isnan(metrics["APl"])  # no large objects: pycocotools reports -1, we report NaN

    # one object, one prediction with IoU 0.62: a match at thresholds 0.50, 0.55, 0.60 only
    target = _box(0, 10, 0, 10)
    partial = np.zeros((20, 20), dtype=bool)
    partial.reshape(-1)[np.flatnonzero(target.reshape(-1))[:62]] = True
    results = masks_to_coco_results(1, partial[None], [2], [0.5])
    metrics = evaluate_instance_segmentation(_ground_truth([target], [2]), results, per_class=True)
    assert metrics["AP"] == pytest.approx(0.3) and metrics["AP50"] == pytest.approx(1.0) and metrics["AP75"] == 0.0
    assert metrics["per_class"][2] == {"name": "b", "AP": pytest.approx(0.3)}
    assert np.isnan(metrics["per_class"][1]["AP"])  # no ground truth of class 1

    empty = evaluate_instance_segmentation(gt, [])
    assert empty["AP"] == 0.0
