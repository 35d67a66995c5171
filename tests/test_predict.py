"""The library side of prediction: inputs, the Predictor's segments, the folder run and its COCO files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import tiny_config_kwargs
from PIL import Image

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
from mask2former.data import read_label_png, read_panoptic_png
from mask2former.postprocess import rle
from mask2former.predict import Predictor, bundled_examples, demo_model_dir
from mask2former.predict_folder import CocoTarget, InputError, collect_images, output_names, predict_to_folder
from mask2former.preprocess import Mask2FormerImageProcessor

LABELS = {0: "circle", 1: "square", 2: "sky"}


def tiny_model_dir(root: Path) -> Path:
    """A tiny random-weight model whose class head always prefers a real class over "no object", so that every
    task yields segments at a low threshold; processor shortest edge 64."""
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs(id2label=LABELS)))
    with torch.no_grad():
        model.class_predictor.bias[-1] = -10.0
    model.save_pretrained(root)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}).save_pretrained(root)
    return root


def write_images(folder: Path, count: int, seed: int = 0, size: tuple[int, int] = (72, 56)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        pixels = rng.integers(0, 255, (size[1], size[0] + 8 * i, 3), dtype=np.uint8)
        paths.append(folder / f"img{i}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


def test_collect_images_from_files_folders_and_globs(tmp_path):
    paths = write_images(tmp_path / "a", 3)
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / "deep").mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(tmp_path / "b" / "deep" / "x.jpg")
    assert collect_images([tmp_path / "a"]) == paths  # images only, sorted
    assert collect_images([paths[2], tmp_path / "a"]) == [paths[2], paths[0], paths[1]]  # each once, first wins
    assert collect_images([str(tmp_path / "a" / "img[01].png")]) == paths[:2]
    assert collect_images([str(tmp_path / "**" / "*.jpg")]) == [tmp_path / "b" / "deep" / "x.jpg"]
    with pytest.raises(InputError, match="no such file or folder"):
        collect_images([tmp_path / "missing.jpg"])
    with pytest.raises(InputError, match="holds no images"):
        collect_images([tmp_path / "b"])
    with pytest.raises(InputError, match="matches no image"):
        collect_images([str(tmp_path / "*.webp")])


def test_output_names_stay_distinct():
    assert output_names([Path("a/x.jpg"), Path("a/y.jpg")]) == ["x", "y"]
    names = output_names([Path("/d/a/x.jpg"), Path("/d/b/x.jpg"), Path("/d/b/x.png"), Path("/d/b/y.png")])
    assert names == ["a__x_jpg", "b__x_jpg", "b__x_png", "y"]


def _check_segments(prediction, semantic=False):
    assert prediction.segments
    for segment in prediction.segments:
        mask = rle.decode(segment["rle"])
        assert mask.shape == prediction.segmentation.shape
        assert segment["area"] == int(mask.sum()) > 0
        x, y, w, h = segment["bbox"]
        rows, cols = np.nonzero(mask)
        assert (x, y, w, h) == (cols.min(), rows.min(), np.ptp(cols) + 1, np.ptp(rows) + 1)
        assert segment["label"] == LABELS[segment["label_id"]]
        assert (segment["score"] is None) == semantic


def test_predictor_panoptic_instance_semantic(tiny):
    images = [Image.new("RGB", (70, 50), (200, 30, 30)), Image.fromarray(
        np.random.default_rng(1).integers(0, 255, (64, 90, 3), dtype=np.uint8))]
    panoptic = Predictor.from_pretrained(tiny, "panoptic", threshold=0.1)(images)
    assert [p.segmentation.shape for p in panoptic] == [(50, 70), (64, 90)]
    for prediction in panoptic:
        _check_segments(prediction)
        for segment in prediction.segments:  # panoptic segments are exactly the map's pixels
            assert (rle.decode(segment["rle"]) == (prediction.segmentation == segment["id"])).all()

    instance = Predictor.from_pretrained(tiny, "instance", threshold=0.1)(images[1:])[0]
    _check_segments(instance)
    scores = [s["score"] for s in instance.segments]
    assert scores == sorted(scores, reverse=True) and [s["id"] for s in instance.segments] == list(
        range(1, len(scores) + 1))
    best = rle.decode(instance.segments[0]["rle"])
    assert (instance.segmentation[best] == 1).all()  # the best instance is drawn on top

    semantic = Predictor.from_pretrained(tiny, "semantic")(images[:1])[0]
    _check_segments(semantic, semantic=True)
    assert sum(s["area"] for s in semantic.segments) == 50 * 70


def test_predictor_dtype_and_size(tiny):
    predictor = Predictor.from_pretrained(tiny, dtype="bf16", size=32)
    assert predictor.dtype == torch.bfloat16
    assert predictor.processor.size == {"shortest_edge": 32, "longest_edge": 64}
    assert predictor([Image.new("RGB", (40, 30))])[0].segmentation.shape == (30, 40)


def test_bundled_demo_model_is_small_stored_in_fp16_and_runs_in_fp32():
    files = {p.name: p.stat().st_size for p in demo_model_dir().iterdir()}
    assert {"config.json", "model.safetensors", "preprocessor_config.json"} <= set(files)
    assert sum(files.values()) < 6 * 2**20
    predictor = Predictor.from_pretrained(None, device="cpu")
    assert predictor.dtype == torch.float32
    assert set(predictor.id2label.values()) == {"circle", "square", "triangle", "sky", "grass", "water"}
    assert 3 <= len(bundled_examples()) <= 4


def test_predict_to_folder_writes_overlays_segments_and_coco(tiny, tmp_path):
    paths = write_images(tmp_path / "in", 3)
    predictor = Predictor.from_pretrained(tiny, "panoptic", threshold=0.1)
    summary = predict_to_folder(predictor, paths, tmp_path / "out", batch_size=2, coco=True)
    assert summary.ok and summary.num_written == 3
    data = json.loads((tmp_path / "out" / "panoptic.json").read_text())
    assert [a["image_id"] for a in data["annotations"]] == [0, 1, 2]
    assert [c["id"] for c in data["categories"]] == [0, 1, 2]
    for path, annotation in zip(paths, data["annotations"]):
        overlay = Image.open(tmp_path / "out" / f"{path.stem}.png")
        assert overlay.size == Image.open(path).size
        segments = json.loads((tmp_path / "out" / f"{path.stem}.json").read_text())["segments"]
        ids = read_panoptic_png(tmp_path / "out" / "panoptic" / annotation["file_name"])
        assert {s["id"] for s in annotation["segments_info"]} == set(np.unique(ids)) - {0}
        assert [s["category_id"] for s in annotation["segments_info"]] == [s["label_id"] for s in segments]
    with pytest.raises(FileExistsError, match="already exist"):
        predict_to_folder(predictor, paths, tmp_path / "out", coco=True)
    assert predict_to_folder(predictor, paths[:1], tmp_path / "out", coco=True, overwrite=True).ok


def test_coco_target_maps_names_and_image_ids(tiny, tmp_path):
    gt = {"images": [{"id": 42, "file_name": "img1.png"}],
          "categories": [{"id": 7, "name": "square"}, {"id": 9, "name": "circle"}, {"id": 3, "name": "dog"}]}
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    target = CocoTarget.from_coco_json(tmp_path / "gt.json", LABELS)
    assert target.category_of_label == {0: 9, 1: 7} and target.unmatched_labels == ["sky"]
    assert target.assign_image_ids([Path("x/img1.png"), Path("img5.png")]) == ([42, 43], [Path("img5.png")])
    paths = write_images(tmp_path / "in", 2)
    predictor = Predictor.from_pretrained(tiny, "instance", threshold=0.1)
    summary = predict_to_folder(predictor, paths, tmp_path / "out", coco=True, coco_target=target)
    results = json.loads((tmp_path / "out" / "instances_results.json").read_text())
    assert results and {r["category_id"] for r in results} <= {7, 9} and {r["image_id"] for r in results} <= {42, 43}
    assert any("sky" in note for note in summary.notes)


def test_semantic_label_pngs(tiny, tmp_path):
    paths = write_images(tmp_path / "in", 2)
    summary = predict_to_folder(Predictor.from_pretrained(tiny, "semantic"), paths, tmp_path / "out", coco=True)
    assert summary.ok
    for path in paths:
        labels = read_label_png(tmp_path / "out" / "semantic" / f"{path.stem}.png")
        segments = json.loads((tmp_path / "out" / f"{path.stem}.json").read_text())["segments"]
        assert {s["label_id"] for s in segments} == set(np.unique(labels))
        assert Image.open(tmp_path / "out" / f"{path.stem}.png").width > Image.open(path).width  # the legend


def test_unreadable_images_are_reported_and_skipped(tiny, tmp_path):
    paths = write_images(tmp_path / "in", 2)
    broken = tmp_path / "in" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not a JPEG")
    reports = []
    summary = predict_to_folder(Predictor.from_pretrained(tiny), [paths[0], broken, paths[1]], tmp_path / "out",
                                batch_size=2, report=reports.append)
    assert not summary.ok and summary.num_written == 2
    assert [f[0] for f in summary.failures] == [str(broken)] and "broken.jpg" in reports[0]
    assert not (tmp_path / "out" / "broken.png").exists()


def test_big_photos_get_a_reduced_overlay_and_full_size_segments(tiny, tmp_path):
    from mask2former.predict import reduce_for_drawing

    paths = write_images(tmp_path / "in", 1, size=(700, 150))
    predictor = Predictor.from_pretrained(tiny, threshold=0.1)
    predict_to_folder(predictor, paths, tmp_path / "small", overlay_max_side=350)
    predict_to_folder(predictor, paths, tmp_path / "full", overlay_max_side=0)
    with Image.open(tmp_path / "small" / "img0.png") as small, Image.open(tmp_path / "full" / "img0.png") as full:
        assert small.size == (350, 75) and full.size == (700, 150)
    assert (json.loads((tmp_path / "small" / "img0.json").read_text())
            == json.loads((tmp_path / "full" / "img0.json").read_text()))  # the data keeps the photo's size

    ids = np.arange(12 * 8).reshape(8, 12)
    photo, reduced = reduce_for_drawing(Image.new("RGB", (12, 8)), ids, 6)
    assert photo.size == (6, 4) and np.array_equal(reduced, ids[1::2, 1::2])  # each reduced pixel's centre
