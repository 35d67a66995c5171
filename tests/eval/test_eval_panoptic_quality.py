"""Panoptic quality against a plain loop over segments, hotcoco (panopticapi parity) and torchmetrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mask2former.data import write_panoptic_png
from mask2former.eval import PanopticQuality, evaluate_panoptic_files

THINGS = (1, 2, 3)
STUFF = (10, 11, 12)
CATEGORIES = {**{c: True for c in THINGS}, **{c: False for c in STUFF}}
SIZE = 40


# ---------------------------------------------------------------- fixtures: random scenes and perturbed predictions


def _new_ids(rng: np.random.Generator, count: int) -> list[int]:
    return [int(i) for i in rng.choice(np.arange(1, 256**3), size=count, replace=False)]


def random_ground_truth(rng: np.random.Generator, crowd: bool = True, void: bool = True):
    """Stuff bands (one segment per stuff class), overlapping rectangles of things, crowd and void patches."""
    labels = np.zeros((SIZE, SIZE), dtype=np.int64)  # index into `kinds`, drawn in order
    kinds: list[tuple[int, bool]] = []  # (category, iscrowd)
    stuff = rng.permutation(STUFF)[: rng.integers(1, 4)]
    cuts = np.sort(rng.integers(5, SIZE - 5, len(stuff) - 1))
    for band, category in enumerate(stuff):
        top = 0 if band == 0 else cuts[band - 1]
        bottom = SIZE if band == len(stuff) - 1 else cuts[band]
        labels[top:bottom] = len(kinds)
        kinds.append((int(category), False))
    for _ in range(rng.integers(1, 6)):
        y, x = rng.integers(-5, SIZE, 2)
        h, w = rng.integers(4, 18, 2)
        labels[max(y, 0) : y + h, max(x, 0) : x + w] = len(kinds)
        kinds.append((int(rng.choice(THINGS)), bool(crowd and rng.random() < 0.25)))
    ids = np.zeros_like(labels)
    segment_ids = _new_ids(rng, len(kinds))
    segments = []
    seen_crowd = set()
    for index, (category, iscrowd) in enumerate(kinds):
        mask = labels == index
        if iscrowd and category in seen_crowd:
            iscrowd = False  # the reference tool keeps one crowd region per category and image
        if not mask.any():
            continue
        seen_crowd |= {category} if iscrowd else set()
        ids[mask] = segment_ids[index]
        segments.append({"id": segment_ids[index], "category_id": category, "iscrowd": int(iscrowd)})
    if void:
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, SIZE - 4, 2)
            ids[y : y + rng.integers(3, 12), x : x + rng.integers(3, 12)] = 0
    segments = [s for s in segments if (ids == s["id"]).any()]
    return ids, segments


def perturbed_prediction(rng: np.random.Generator, gt_ids, gt_segments, void: bool = True, same_kind: bool = False):
    """A prediction near the ground truth: shifted, some classes wrong, segments dropped, split or added."""
    shifted = np.roll(gt_ids, tuple(rng.integers(-3, 4, 2)), axis=(0, 1))
    pred = np.zeros_like(gt_ids)
    segments = []
    new = iter(_new_ids(rng, 4 * len(gt_segments) + 20))
    for segment in gt_segments:
        mask = shifted == segment["id"]
        category = segment["category_id"]
        if rng.random() < 0.2 and (category in THINGS or not same_kind):
            category = int(rng.choice(THINGS if same_kind else THINGS + STUFF))
        if void and rng.random() < 0.1:
            continue  # dropped: its pixels stay void
        if category in THINGS and rng.random() < 0.2:  # split in two at a random column
            column = rng.integers(0, SIZE)
            right = mask.copy()
            right[:, :column] = False
            second = next(new)
            pred[right] = second
            segments.append({"id": second, "category_id": category})
            mask &= ~right
        segment_id = next(new)
        pred[mask] = segment_id
        segments.append({"id": segment_id, "category_id": category})
    for _ in range(rng.integers(0, 3)):  # spurious things, possibly over ground-truth void
        y, x = rng.integers(0, SIZE - 3, 2)
        segment_id = next(new)
        pred[y : y + rng.integers(2, 12), x : x + rng.integers(2, 12)] = segment_id
        segments.append({"id": segment_id, "category_id": int(rng.choice(THINGS))})
    if void:
        y, x = rng.integers(0, SIZE - 3, 2)
        pred[y : y + 5, x : x + 5] = 0
        pred[rng.integers(0, SIZE), :] = 987654  # an id without segments_info: void
    else:
        filler = next(new)
        segments.append({"id": filler, "category_id": int(rng.choice(THINGS))})
        pred[pred == 0] = filler
    present = set(np.unique(pred).tolist())
    return pred, [s for s in segments if s["id"] in present]


def random_dataset(seed: int, count: int, crowd: bool = True, void: bool = True, same_kind: bool = False):
    """``count`` (gt ids, gt segments, pred ids, pred segments) tuples."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        gt_ids, gt_segments = random_ground_truth(rng, crowd=crowd, void=void)
        pred_ids, pred_segments = perturbed_prediction(rng, gt_ids, gt_segments, void=void, same_kind=same_kind)
        images.append((gt_ids, gt_segments, pred_ids, pred_segments))
    return images


# ---------------------------------------------------------------- a plain implementation of the official protocol


def reference_pq(images, categories) -> dict:
    """COCO panoptic PQ written as directly as possible: one boolean mask per segment, loops over pairs."""
    counts = {c: {"tp": 0, "fp": 0, "fn": 0, "iou": 0.0} for c in categories}
    for gt_ids, gt_segments, pred_ids, pred_segments in images:
        gt_void = ~np.isin(gt_ids, [s["id"] for s in gt_segments])
        gt_matched, pred_matched = set(), set()
        for g in gt_segments:
            if g.get("iscrowd", 0):
                continue
            g_mask = gt_ids == g["id"]
            for p in pred_segments:
                if p["category_id"] != g["category_id"]:
                    continue
                p_mask = pred_ids == p["id"]
                intersection = np.sum(g_mask & p_mask)
                union = np.sum(g_mask | p_mask) - np.sum(p_mask & gt_void)
                if union > 0 and intersection / union > 0.5:
                    counts[g["category_id"]]["tp"] += 1
                    counts[g["category_id"]]["iou"] += intersection / union
                    gt_matched.add(g["id"])
                    pred_matched.add(p["id"])
        crowd_of_category = {}
        for g in gt_segments:
            if g["id"] in gt_matched:
                continue
            if g.get("iscrowd", 0):
                crowd_of_category[g["category_id"]] = g["id"]
            else:
                counts[g["category_id"]]["fn"] += 1
        for p in pred_segments:
            if p["id"] in pred_matched:
                continue
            p_mask = pred_ids == p["id"]
            ignored = np.sum(p_mask & gt_void)
            if p["category_id"] in crowd_of_category:
                ignored += np.sum(p_mask & (gt_ids == crowd_of_category[p["category_id"]]))
            if ignored / np.sum(p_mask) <= 0.5:
                counts[p["category_id"]]["fp"] += 1
    result = {}
    for suffix, wanted in (("", (True, False)), ("_th", (True,)), ("_st", (False,))):
        pq, sq, rq = [], [], []
        for category, isthing in categories.items():
            c = counts[category]
            if isthing not in wanted or c["tp"] + c["fp"] + c["fn"] == 0:
                continue
            pq.append(c["iou"] / (c["tp"] + 0.5 * c["fp"] + 0.5 * c["fn"]))
            sq.append(c["iou"] / c["tp"] if c["tp"] else 0.0)
            rq.append(c["tp"] / (c["tp"] + 0.5 * c["fp"] + 0.5 * c["fn"]))
        for name, values in (("PQ", pq), ("SQ", sq), ("RQ", rq)):
            result[name + suffix] = sum(values) / len(values) if values else 0.0
    result["counts"] = counts
    return result


def ours(images, categories=CATEGORIES) -> dict:
    metric = PanopticQuality(categories)
    for image in images:
        metric.update(*image)
    return metric.compute()


KEYS = ("PQ", "SQ", "RQ", "PQ_th", "SQ_th", "RQ_th", "PQ_st", "SQ_st", "RQ_st")


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference_with_crowd_and_void(seed):
    images = random_dataset(seed, 12)
    assert any(s.get("iscrowd") for image in images for s in image[1])
    assert any((image[0] == 0).any() for image in images)
    expected, got = reference_pq(images, CATEGORIES), ours(images)
    for key in KEYS:
        assert got[key] == pytest.approx(expected[key], abs=1e-6), key
    for category, c in expected["counts"].items():
        row = got["per_class"][category]
        assert (row["TP"], row["FP"], row["FN"]) == (c["tp"], c["fp"], c["fn"])
    assert 0.2 < got["PQ"] < 0.95  # the fixtures are neither trivial nor hopeless


def _hand_case():
    """One thing class 1, a crowd of class 1, void; predictions on void / crowd / elsewhere."""
    gt = np.zeros((10, 20), dtype=np.int64)
    gt[:, :10] = 5  # stuff 10 on the left half
    gt[0:4, 10:16] = 7  # crowd of class 1
    gt[6:10, 12:18] = 8  # a thing of class 1
    gt_segments = [
        {"id": 5, "category_id": 10, "iscrowd": 0},
        {"id": 7, "category_id": 1, "iscrowd": 1},
        {"id": 8, "category_id": 1, "iscrowd": 0},
    ]
    pred = np.zeros_like(gt)
    pred[:, :10] = 1  # stuff: perfect
    pred[0:4, 10:14] = 2  # class 1 on the crowd: ignored
    pred[0:4, 14:17] = 3  # class 2 on the crowd (2 of 3 columns) and void (1 column): counted FP
    pred[4:6, 16:20] = 4  # class 1, entirely on void: ignored
    pred[6:10, 12:15] = 6  # class 1, IoU exactly 0.5 with the thing: no match -> FP and FN
    pred_segments = [
        {"id": 1, "category_id": 10},
        {"id": 2, "category_id": 1},
        {"id": 3, "category_id": 2},
        {"id": 4, "category_id": 1},
        {"id": 6, "category_id": 1},
    ]
    return gt, gt_segments, pred, pred_segments


def test_hand_built_case():
    image = _hand_case()
    got = ours([image])
    per_class = got["per_class"]
    assert (per_class[10]["TP"], per_class[10]["FP"], per_class[10]["FN"]) == (1, 0, 0)
    assert (per_class[1]["TP"], per_class[1]["FP"], per_class[1]["FN"]) == (0, 1, 1)
    assert (per_class[2]["TP"], per_class[2]["FP"], per_class[2]["FN"]) == (0, 1, 0)
    assert got["PQ"] == pytest.approx((1.0 + 0.0 + 0.0) / 3)
    assert got["num_classes"] == 3 and got["num_things"] == 2 and got["num_stuff"] == 1
    expected = reference_pq([image], CATEGORIES)
    for key in KEYS:
        assert got[key] == pytest.approx(expected[key], abs=1e-12)


def test_union_leaves_out_prediction_on_void():
    gt = np.zeros((4, 10), dtype=np.int64)
    gt[:, :5] = 1  # thing, 20 pixels; the rest is void
    pred = np.zeros_like(gt)
    pred[:, :8] = 9  # covers the thing and 12 void pixels: IoU 1 once void is left out
    got = ours([(gt, [{"id": 1, "category_id": 2}], pred, [{"id": 9, "category_id": 2}])])
    assert got["per_class"][2]["TP"] == 1 and got["SQ"] == pytest.approx(1.0)


def _write_coco(images, root, name):
    folder = root / name
    folder.mkdir()
    annotations = []
    for index, (ids, segments) in enumerate(images):
        write_panoptic_png(folder / f"{index}.png", ids)
        infos = [
            {**s, "iscrowd": s.get("iscrowd", 0), "area": int((ids == s["id"]).sum()), "bbox": [0, 0, 1, 1]}
            for s in segments
        ]
        annotations.append({"image_id": index, "file_name": f"{index}.png", "segments_info": infos})
    categories = [{"id": c, "name": f"c{c}", "isthing": int(t)} for c, t in CATEGORIES.items()]
    data = {
        "images": [{"id": i, "file_name": f"{i}.jpg", "height": SIZE, "width": SIZE} for i in range(len(images))],
        "annotations": annotations,
        "categories": categories,
    }
    path = root / f"{name}.json"
    path.write_text(json.dumps(data))
    return path


def test_files_match_hotcoco_panopticapi_port(tmp_path):
    hotcoco_panoptic = pytest.importorskip("hotcoco.panoptic")
    images = random_dataset(7, 12)
    gt_json = _write_coco([(g, gs) for g, gs, _, _ in images], tmp_path, "gt")
    pred_json = _write_coco([(p, ps) for _, _, p, ps in images], tmp_path, "pred")
    # the reference tool rejects PNG ids without segments_info; ours reads them as void: compare on clean files
    for index, (_, _, pred, pred_segments) in enumerate(images):
        known = np.isin(pred, [s["id"] for s in pred_segments])
        write_panoptic_png(tmp_path / "pred" / f"{index}.png", np.where(known, pred, 0))
    got = evaluate_panoptic_files(gt_json, pred_json)
    evaluator = hotcoco_panoptic.PanopticEval(str(gt_json), str(pred_json))
    evaluator.evaluate()
    expected = evaluator.results()
    for suffix, group in (("", "All"), ("_th", "Things"), ("_st", "Stuff")):
        for name in ("PQ", "SQ", "RQ"):
            assert got[name + suffix] == pytest.approx(expected[group][name.lower()], abs=1e-6), name + suffix
        assert got[{"": "num_classes", "_th": "num_things", "_st": "num_stuff"}[suffix]] == expected[group]["n"]
    for category, row in expected["per_class"].items():
        ours_row = got["per_class"][int(category)]
        assert (ours_row["TP"], ours_row["FP"], ours_row["FN"]) == (row["tp"], row["fp"], row["fn"])


def test_matches_torchmetrics_without_crowd_or_predicted_void():
    """torchmetrics has no crowd, and also drops ground-truth pixels predicted as void from the union and FN count;
    with neither crowd nor predicted void (one segment per stuff class), both protocols coincide."""
    torch = pytest.importorskip("torch")
    detection = pytest.importorskip("torchmetrics.detection")
    rng = np.random.default_rng(3)
    images = []
    for _ in range(10):
        gt, gt_segments = random_ground_truth(rng, crowd=False, void=True)
        images.append((gt, gt_segments, *perturbed_prediction(rng, gt, gt_segments, void=False, same_kind=True)))

    def pairs(ids, segments):  # (H, W, 2): category, instance; 0 = void (not a category)
        category = np.zeros_like(ids)
        for s in segments:
            category[ids == s["id"]] = s["category_id"]
        return torch.from_numpy(np.stack([category, ids], -1))

    metric = detection.PanopticQuality(things=set(THINGS), stuffs=set(STUFF), return_sq_and_rq=True)
    for gt, gt_segments, pred, pred_segments in images:
        assert (pred != 0).all()
        metric.update(pairs(pred, pred_segments)[None], pairs(gt, gt_segments)[None])
    pq, sq, rq = metric.compute().tolist()
    got = ours(images)
    assert (got["PQ"], got["SQ"], got["RQ"]) == pytest.approx((pq, sq, rq), abs=1e-6)


def test_merge_and_split_equal_one_pass():
    images = random_dataset(11, 8)
    whole = ours(images)
    first, second = PanopticQuality(CATEGORIES), PanopticQuality(CATEGORIES)
    for image in images[:3]:
        first.update(*image)
    for image in images[3:]:
        second.update(*image)
    merged = first.merge(second).compute()
    assert merged == whole
    assert merged["num_images"] == 8


def test_perfect_empty_and_errors():
    gt, gt_segments, _, _ = _hand_case()
    perfect = ours([(gt, gt_segments, gt, gt_segments)])
    assert perfect["PQ"] == 1.0 and perfect["num_classes"] == 2  # class 2 never appears; crowd-only adds nothing
    missed = ours([(gt, gt_segments, np.zeros_like(gt), [])])
    assert missed["PQ"] == 0.0 and missed["per_class"][1]["FN"] == 1 and missed["per_class"][1]["FP"] == 0
    nothing = ours([(np.zeros((3, 3)), [], np.zeros((3, 3)), [])])
    assert nothing["PQ"] == 0.0 and nothing["num_classes"] == 0
    with pytest.raises(ValueError, match="unknown category"):
        ours([(gt, gt_segments, gt, [{"id": 5, "category_id": 99}])])
    with pytest.raises(ValueError, match="differ in size"):
        ours([(gt, gt_segments, gt[:, :3], [])])
    with pytest.raises(ValueError, match="void"):
        ours([(gt, [{"id": 0, "category_id": 1}], gt, [])])
