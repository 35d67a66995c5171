"""Semantic metrics against plain per-class loops, torchmetrics' Jaccard index and hotcoco (mmsegmentation parity)."""

from __future__ import annotations

import numpy as np
import pytest

from mask2former.data import write_label_png
from mask2former.eval import ConfusionMatrix, evaluate_semantic_folders

K = 6  # class 5 never appears in ground truth or prediction


def random_pairs(seed: int, count: int = 5, size: int = 24):
    """(gt, pred) label maps over classes 0..4 with ignored pixels; predictions are noisy copies."""
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        gt = rng.integers(0, 4, (size // 4, size // 4)).repeat(4, 0).repeat(4, 1)  # blocky regions of classes 0..3
        gt[rng.random(gt.shape) < 0.1] = 255
        pred = np.where(gt == 255, rng.integers(0, 5, gt.shape), gt)
        noise = rng.random(gt.shape) < 0.25
        pred[noise] = rng.integers(0, 5, int(noise.sum()))  # class 4 is only ever predicted
        pairs.append((gt, pred))
    return pairs


def reference(pairs, num_classes: int, ignore: int = 255) -> dict:
    """Each metric from its definition, class by class."""
    ious, accuracies, weighted, correct, labelled = [], [], 0.0, 0, 0
    gt_all = np.concatenate([g.ravel() for g, _ in pairs])
    pred_all = np.concatenate([p.ravel() for _, p in pairs])
    keep = gt_all != ignore
    gt_all, pred_all = gt_all[keep], pred_all[keep]
    for c in range(num_classes):
        tp = np.sum((gt_all == c) & (pred_all == c))
        union = np.sum((gt_all == c) | (pred_all == c))
        if union:
            ious.append(tp / union)
            weighted += np.sum(gt_all == c) / gt_all.size * tp / union
        if np.sum(gt_all == c):
            accuracies.append(tp / np.sum(gt_all == c))
        correct += tp
        labelled += np.sum(gt_all == c)
    return {"mIoU": np.mean(ious), "mACC": np.mean(accuracies), "fwIoU": weighted, "pACC": correct / labelled}


def ours(pairs, num_classes: int = K) -> dict:
    metric = ConfusionMatrix(num_classes)
    for gt, pred in pairs:
        metric.update(gt, pred)
    return metric.compute()


@pytest.mark.parametrize("seed", [0, 1])
def test_matches_definitions(seed):
    pairs = random_pairs(seed)
    expected, got = reference(pairs, K), ours(pairs)
    for key in ("mIoU", "mACC", "fwIoU", "pACC"):
        assert got[key] == pytest.approx(expected[key], abs=1e-12), key
    assert np.isnan(got["per_class_IoU"]["5"]) and np.isnan(got["per_class_ACC"]["4"])


def test_miou_matches_torchmetrics_jaccard():
    """torchmetrics' macro average leaves out classes whose union is empty (class 5 here), like ours."""
    torch = pytest.importorskip("torch")
    classification = pytest.importorskip("torchmetrics.classification")
    pairs = random_pairs(3)
    macro = classification.MulticlassJaccardIndex(num_classes=K, ignore_index=255, average="macro")
    per_class = classification.MulticlassJaccardIndex(num_classes=K, ignore_index=255, average="none")
    for gt, pred in pairs:
        for metric in (macro, per_class):
            metric.update(torch.from_numpy(pred)[None], torch.from_numpy(gt)[None])
    got = ours(pairs)
    assert got["mIoU"] == pytest.approx(macro.compute().item(), abs=1e-6)
    theirs = per_class.compute().tolist()
    for c in range(5):
        assert got["per_class_IoU"][str(c)] == pytest.approx(theirs[c], abs=1e-6)
    assert theirs[5] == 0.0  # torchmetrics reports 0 for an empty class, ours NaN; both leave it out of the mean


def test_matches_hotcoco_semantic():
    semantic = pytest.importorskip("hotcoco.semantic")
    pairs = random_pairs(4)
    evaluator = semantic.SemanticEval(K, ignore_index=255)
    for gt, pred in pairs:
        evaluator.update(gt.astype(np.int64), pred.astype(np.int64))
    expected = evaluator.results()
    got = ours(pairs)
    for ours_key, their_key in (("mIoU", "mIoU"), ("fwIoU", "fwIoU"), ("mACC", "mAcc"), ("pACC", "aAcc")):
        assert got[ours_key] == pytest.approx(expected[their_key], abs=1e-9), ours_key


def test_merge_out_of_range_and_empty():
    pairs = random_pairs(5)
    first, second = ConfusionMatrix(K), ConfusionMatrix(K)
    for gt, pred in pairs[:2]:
        first.update(gt, pred)
    for gt, pred in pairs[2:]:
        second.update(gt, pred)
    assert first.merge(second).compute()["mIoU"] == ours(pairs)["mIoU"]
    metric = ConfusionMatrix(2)
    metric.update(np.array([0, 1, 1, 255]), np.array([0, 1, 7, 0]))  # 7: no class, counts as a miss for class 1
    result = metric.compute()
    assert result["per_class_IoU"] == {"0": 1.0, "1": 0.5} and result["pACC"] == pytest.approx(2 / 3)
    assert ConfusionMatrix(3).compute()["mIoU"] == 0.0
    with pytest.raises(ValueError, match="outside"):
        metric.update(np.array([3]), np.array([0]))


def test_folders(tmp_path):
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    pred_dir.mkdir()
    pairs = random_pairs(6, count=3)
    for index, (gt, pred) in enumerate(pairs):
        write_label_png(gt_dir / f"{index}.png", gt)
        write_label_png(pred_dir / f"{index}.png", pred)
    result = evaluate_semantic_folders(gt_dir, pred_dir, K)
    assert result["mIoU"] == pytest.approx(ours(pairs)["mIoU"])
    # reduce_labels on ground truth written with 0 = "other" and classes shifted up by one
    shifted = tmp_path / "shifted"
    shifted.mkdir()
    for index, (gt, _) in enumerate(pairs):
        write_label_png(shifted / f"{index}.png", np.where(gt == 255, 0, gt + 1))
    reduced = evaluate_semantic_folders(shifted, pred_dir, K, reduce_labels=True)
    assert reduced["mIoU"] == pytest.approx(result["mIoU"])
    (pred_dir / "1.png").unlink()
    with pytest.raises(ValueError, match="1.png"):
        evaluate_semantic_folders(gt_dir, pred_dir, K)
