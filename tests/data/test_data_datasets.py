"""Datasets read the synthetic generator's output consistently, and bad data names the file at fault."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from mask2former.data import (
    CocoInstanceDataset,
    CocoPanopticDataset,
    SemanticFolderDataset,
    generate_synthetic_dataset,
    masks_to_panoptic,
    masks_to_semantic,
    read_panoptic_png,
    reduce_labels,
    write_label_png,
    write_panoptic_png,
)
from mask2former.data.synthetic import main as synthetic_main
from mask2former.eval import PanopticQuality


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return generate_synthetic_dataset(root, 6, seed=3, min_size=64, max_size=96, crowd_prob=0.5, void_prob=0.5)


def _copy(synthetic, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(synthetic.root, root)
    return root


def _semantic_names(paths):
    id2label = json.loads(paths.id2label_json.read_text())
    return [id2label[str(i)] for i in range(len(id2label))]


def test_generator_is_deterministic_and_writes_valid_coco(synthetic, tmp_path):
    again = generate_synthetic_dataset(
        tmp_path / "again", 6, seed=3, min_size=64, max_size=96, crowd_prob=0.5, void_prob=0.5
    )
    for relative in (
        "panoptic.json",
        "instances.json",
        "panoptic/000004.png",
        "images/000004.jpg",
        "semantic/000004.png",
    ):
        assert (again.root / relative).read_bytes() == (synthetic.root / relative).read_bytes(), relative
    other = generate_synthetic_dataset(tmp_path / "other", 1, seed=4, min_size=64, max_size=96)
    assert (other.root / "panoptic.json").read_bytes() != (synthetic.root / "panoptic.json").read_bytes()

    data = json.loads(synthetic.panoptic_json.read_text())
    assert {c["name"]: c["isthing"] for c in data["categories"]} == {
        "circle": 1,
        "square": 1,
        "triangle": 1,
        "sky": 0,
        "grass": 0,
        "water": 0,
    }
    crowd = void = 0
    for image, annotation in zip(data["images"], data["annotations"]):
        ids = read_panoptic_png(synthetic.panoptic_dir / annotation["file_name"])
        assert ids.shape == (image["height"], image["width"]) and 64 <= min(ids.shape) <= max(ids.shape) <= 96
        listed = {s["id"] for s in annotation["segments_info"]}
        assert set(np.unique(ids).tolist()) - {0} == listed
        for segment in annotation["segments_info"]:
            mask = ids == segment["id"]
            rows, cols = np.nonzero(mask)
            assert segment["area"] == mask.sum()
            assert segment["bbox"] == [cols.min(), rows.min(), cols.max() - cols.min() + 1, rows.max() - rows.min() + 1]
            crowd += segment["iscrowd"]
        void += (ids == 0).any()
    assert crowd > 0 and void > 0


def test_panoptic_instance_and_semantic_views_agree(synthetic):
    panoptic = CocoPanopticDataset(synthetic.image_dir, synthetic.panoptic_json, synthetic.panoptic_dir)
    instance = CocoInstanceDataset(synthetic.image_dir, synthetic.instances_json)
    semantic = SemanticFolderDataset(synthetic.image_dir, synthetic.semantic_dir, _semantic_names(synthetic))
    assert len(panoptic) == len(instance) == len(semantic) == 6
    assert (
        panoptic.id2label
        == semantic.id2label
        == {0: "circle", 1: "square", 2: "triangle", 3: "sky", 4: "grass", 5: "water"}
    )
    assert panoptic.category_id_to_label_id == {1: 0, 2: 1, 3: 2, 10: 3, 11: 4, 12: 5}
    assert panoptic.label_id_to_isthing == {0: True, 1: True, 2: True, 3: False, 4: False, 5: False}
    assert instance.id2label == {0: "circle", 1: "square", 2: "triangle"}
    for index in range(len(panoptic)):
        p, i, s = panoptic[index], instance[index], semantic[index]
        assert p["image"].dtype == np.uint8 and p["image"].shape == (*p["masks"].shape[1:], 3)
        assert p["masks"].dtype == bool and p["class_labels"].dtype == np.int64 and p["iscrowd"].dtype == bool
        assert (p["masks"].sum(0) <= 1).all()  # panoptic segments never overlap
        things = p["class_labels"] <= 2
        assert np.array_equal(
            np.sort(p["masks"][things].reshape(things.sum(), -1), 0),
            np.sort(i["masks"].reshape(len(i["masks"]), -1), 0),
        )
        assert sorted(p["class_labels"][things].tolist()) == sorted(i["class_labels"].tolist())
        assert np.array_equal(masks_to_semantic(p["masks"], p["class_labels"]), semantic.label_map(index))
        assert np.array_equal(p["image"], s["image"]) and s["iscrowd"].sum() == 0


def test_thing_colours_are_learnable(synthetic):
    """Each thing class keeps its own mean colour: red circles, yellow squares, purple triangles."""
    dataset = CocoPanopticDataset(synthetic.image_dir, synthetic.panoptic_json, synthetic.panoptic_dir)
    colours = {label: [] for label in range(3)}
    for index in range(len(dataset)):
        sample = dataset[index]
        for mask, label in zip(sample["masks"], sample["class_labels"]):
            if label < 3:
                colours[int(label)].append(sample["image"][mask].mean(0))
    mean = {label: np.mean(values, 0) for label, values in colours.items() if values}
    dominant = {label: int(np.argmax(c - c.mean())) for label, c in mean.items()}
    assert dominant.get(0, 0) == 0 and dominant.get(2, 2) == 2  # red-dominant circles, blue-dominant triangles
    if 1 in mean:
        assert mean[1][2] < 100 and min(mean[1][:2]) > 150  # yellow squares


def test_ground_truth_scores_perfect_pq(synthetic):
    dataset = CocoPanopticDataset(synthetic.image_dir, synthetic.panoptic_json, synthetic.panoptic_dir)
    metric = PanopticQuality(dataset.label_id_to_isthing)
    for index in range(len(dataset)):
        gt_ids, gt_segments = dataset.panoptic_target(index)
        sample = dataset[index]
        pred_ids, pred_segments = masks_to_panoptic(sample["masks"], sample["class_labels"])
        pred_segments = [s for s, crowd in zip(pred_segments, sample["iscrowd"]) if not crowd]
        metric.update(gt_ids, gt_segments, pred_ids, pred_segments)
    result = metric.compute()
    assert result["PQ"] == 1.0 and result["num_things"] >= 1 and result["num_stuff"] >= 1


def test_command_line(tmp_path, capsys):
    synthetic_main(
        [
            str(tmp_path / "cli"),
            "--num-images",
            "2",
            "--seed",
            "5",
            "--min-size",
            "32",
            "--max-size",
            "40",
            "--image-format",
            "png",
            "--no-instances",
        ]
    )
    assert "wrote 2 images" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "cli" / "images").iterdir()) == ["000000.png", "000001.png"]
    assert not (tmp_path / "cli" / "instances.json").exists()


def test_coco_instance_segmentation_formats(tmp_path):
    """Polygons, compressed RLE, uncompressed RLE and a crowd region decode to the expected masks."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    from PIL import Image

    height, width = 12, 16
    Image.fromarray(np.zeros((height, width, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    square = np.zeros((height, width), dtype=bool)
    square[2:6, 3:9] = True
    compressed = mask_utils.encode(np.asfortranarray(square.astype(np.uint8)))
    compressed["counts"] = compressed["counts"].decode()
    crowd = np.zeros((height, width), dtype=bool)
    crowd[8:12, 0:4] = True
    from mask2former.data.formats import mask_to_uncompressed_rle

    annotations = [
        {"id": 1, "image_id": 7, "category_id": 5, "iscrowd": 0, "segmentation": [[3, 2, 9, 2, 9, 6, 3, 6]]},
        {"id": 2, "image_id": 7, "category_id": 9, "iscrowd": 0, "segmentation": compressed},
        {"id": 3, "image_id": 7, "category_id": 9, "iscrowd": 1, "segmentation": mask_to_uncompressed_rle(crowd)},
        {"id": 4, "image_id": 7, "category_id": 5, "iscrowd": 0, "segmentation": [[1, 1, 2, 2]]},  # degenerate
    ]
    data = {
        "images": [
            {"id": 7, "file_name": "a.png", "height": height, "width": width},
            {"id": 8, "file_name": "a.png", "height": height, "width": width},
        ],
        "annotations": annotations,
        "categories": [{"id": 9, "name": "b"}, {"id": 5, "name": "a"}],
    }
    (tmp_path / "instances.json").write_text(json.dumps(data))
    dataset = CocoInstanceDataset(tmp_path, tmp_path / "instances.json")
    assert dataset.id2label == {0: "a", 1: "b"}
    sample = dataset[0]
    assert sample["class_labels"].tolist() == [0, 1, 1] and sample["iscrowd"].tolist() == [False, False, True]
    assert np.array_equal(sample["masks"][1], square) and np.array_equal(sample["masks"][2], crowd)
    # the polygon's rasterisation covers the square's interior
    assert sample["masks"][0][3:5, 4:8].all() and not sample["masks"][0][8:].any()
    empty = dataset[1]
    assert empty["masks"].shape == (0, height, width) and empty["class_labels"].shape == (0,)


def test_semantic_reduce_labels(tmp_path):
    from PIL import Image

    (tmp_path / "img").mkdir()
    (tmp_path / "lab").mkdir()
    Image.fromarray(np.zeros((4, 4, 3), dtype=np.uint8)).save(tmp_path / "img" / "x.jpg")
    write_label_png(tmp_path / "lab" / "x.png", np.array([[0, 1, 2, 255]] * 4))
    assert reduce_labels(np.array([0, 1, 2, 255])).tolist() == [255, 0, 1, 255]
    dataset = SemanticFolderDataset(tmp_path / "img", tmp_path / "lab", ["a", "b"], reduce_labels=True)
    sample = dataset[0]
    assert sample["class_labels"].tolist() == [0, 1]
    assert masks_to_semantic(sample["masks"], sample["class_labels"])[0].tolist() == [255, 0, 1, 255]
    plain = SemanticFolderDataset(tmp_path / "img", tmp_path / "lab", ["a", "b"])
    with pytest.raises(ValueError, match="x.png"):  # label 2 is out of range without reduction
        plain[0]


# ---------------------------------------------------------------- bad data names the file


def test_missing_image_names_the_file(synthetic, tmp_path):
    root = _copy(synthetic, tmp_path)
    (root / "images" / "000002.jpg").unlink()
    dataset = CocoPanopticDataset(root / "images", root / "panoptic.json", root / "panoptic")
    dataset[1]
    with pytest.raises(FileNotFoundError, match="000002.jpg"):
        dataset[2]
    with pytest.raises(FileNotFoundError, match="000002.jpg"):
        CocoInstanceDataset(root / "images", root / "instances.json")[2]


def test_png_segment_without_segments_info_names_the_png(synthetic, tmp_path):
    root = _copy(synthetic, tmp_path)
    png = root / "panoptic" / "000001.png"
    ids = read_panoptic_png(png)
    ids[0, 0] = 4242
    write_panoptic_png(png, ids)
    dataset = CocoPanopticDataset(root / "images", root / "panoptic.json", root / "panoptic")
    with pytest.raises(ValueError, match=r"000001\.png.*4242"):
        dataset[1]


def test_unknown_category_names_the_json(synthetic, tmp_path):
    root = _copy(synthetic, tmp_path)
    for name in ("panoptic.json", "instances.json"):
        data = json.loads((root / name).read_text())
        if name == "panoptic.json":
            data["annotations"][0]["segments_info"][0]["category_id"] = 77
        else:
            data["annotations"][0]["category_id"] = 77
        (root / name).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"panoptic\.json.*77"):
        CocoPanopticDataset(root / "images", root / "panoptic.json", root / "panoptic")
    with pytest.raises(ValueError, match=r"instances\.json.*77"):
        CocoInstanceDataset(root / "images", root / "instances.json")


def test_label_without_image_names_the_label(synthetic, tmp_path):
    root = _copy(synthetic, tmp_path)
    shutil.copy(root / "semantic" / "000000.png", root / "semantic" / "orphan.png")
    with pytest.raises(ValueError, match="orphan.png"):
        SemanticFolderDataset(root / "images", root / "semantic", _semantic_names(synthetic))
    (root / "semantic" / "orphan.png").unlink()
    (root / "semantic" / "000003.png").unlink()
    with pytest.raises(ValueError, match="000003.jpg"):
        SemanticFolderDataset(root / "images", root / "semantic", _semantic_names(synthetic))
