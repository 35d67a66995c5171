"""``mask2former demo`` and ``mask2former predict`` end to end: outputs, COCO files that ``evaluate`` reads, unreadable
images, exit statuses, no overwriting, and a two-process torchrun run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from test_predict import tiny_model_dir, write_images

from mask2former.cli import main
from mask2former.data.synthetic import generate_synthetic_dataset
from mask2former.predict import bundled_examples


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """Four held-out synthetic scenes (a seed the demo model was not trained on)."""
    return generate_synthetic_dataset(tmp_path_factory.mktemp("shapes"), num_images=4, seed=77, min_size=96,
                                      max_size=128)


def test_demo_segments_the_bundled_examples_with_the_bundled_model(tmp_path, capsys):
    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    for example in bundled_examples():
        overlay = tmp_path / "demo" / f"{example.stem}.png"
        assert f"wrote {overlay}" in out
        with Image.open(example) as photo, Image.open(overlay) as picture:
            assert picture.height == photo.height and picture.width > 2 * photo.width  # side by side
        segments = json.loads((tmp_path / "demo" / f"{example.stem}.json").read_text())["segments"]
        assert segments and all(s["score"] > 0.5 for s in segments)
        assert {"sky", "grass", "water"} & {s["label"] for s in segments}
    before = {p.name: p.read_bytes() for p in (tmp_path / "demo").iterdir()}
    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--device", "cpu"]) == 2  # like predict: no overwrite
    assert "--overwrite" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in (tmp_path / "demo").iterdir()} == before
    assert main(["demo", "--output-dir", str(tmp_path / "demo"), "--device", "cpu", "--overwrite"]) == 0


def test_panoptic_coco_output_round_trips_through_evaluate(shapes, tmp_path):
    pred = tmp_path / "pred"
    assert main(["predict", str(shapes.image_dir), "--output-dir", str(pred), "--format", "coco",
                 "--coco-categories", str(shapes.panoptic_json), "--batch-size", "2", "--no-progress"]) == 0
    assert main(["evaluate", "--task", "panoptic", "--annotations", str(shapes.panoptic_json), "--masks",
                 str(shapes.panoptic_dir), "--predictions", str(pred / "panoptic.json"), "--prediction-dir",
                 str(pred / "panoptic"), "--output", str(tmp_path / "pq.json")]) == 0
    assert json.loads((tmp_path / "pq.json").read_text())["PQ"] > 0.5  # the demo model finds the shapes


def test_instance_and_semantic_coco_outputs_round_trip_through_evaluate(shapes, tmp_path):
    pytest.importorskip("pycocotools")
    assert main(["predict", str(shapes.image_dir), "--task", "instance", "--output-dir", str(tmp_path / "inst"),
                 "--format", "coco", "--coco-categories", str(shapes.instances_json), "--no-progress"]) == 0
    assert main(["evaluate", "--task", "instance", "--annotations", str(shapes.instances_json), "--predictions",
                 str(tmp_path / "inst" / "instances_results.json"), "--output", str(tmp_path / "ap.json")]) == 0
    assert json.loads((tmp_path / "ap.json").read_text())["AP"] > 0.2

    assert main(["predict", str(shapes.image_dir), "--task", "semantic", "--output-dir", str(tmp_path / "sem"),
                 "--format", "coco", "--no-progress"]) == 0
    assert main(["evaluate", "--task", "semantic", "--masks", str(shapes.semantic_dir), "--prediction-dir",
                 str(tmp_path / "sem" / "semantic"), "--class-names", str(shapes.id2label_json), "--output",
                 str(tmp_path / "miou.json")]) == 0
    assert json.loads((tmp_path / "miou.json").read_text())["mIoU"] > 0.5


def test_unreadable_image_is_named_skipped_and_fails_the_run(tiny, tmp_path, capsys):
    write_images(tmp_path / "in", 2)
    (tmp_path / "in" / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    code = main(["predict", str(tmp_path / "in"), "--model", str(tiny), "--output-dir", str(tmp_path / "out"),
                 "--threshold", "0.1", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    assert "corrupt.jpg" in captured.err and "could not be read" in captured.err
    assert "2 of 3 images segmented" in captured.out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.json", "img0.png", "img1.json", "img1.png"]


def test_bad_inputs_and_existing_outputs_are_refused(tiny, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    common = ["--model", str(tiny), "--output-dir", str(tmp_path / "out"), "--no-progress"]
    assert main(["predict", str(tmp_path / "nope.jpg"), *common]) == 2
    assert main(["predict", str(tmp_path / "empty"), *common]) == 2
    assert main(["predict", str(tmp_path / "*.jpg"), *common]) == 2
    err = capsys.readouterr().err
    assert "nope.jpg: no such file or folder" in err and "holds no images" in err and "matches no image" in err

    write_images(tmp_path / "in", 1)
    assert main(["predict", str(tmp_path / "in"), *common]) == 0
    before = (tmp_path / "out" / "img0.png").stat().st_mtime_ns
    assert main(["predict", str(tmp_path / "in"), *common]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "out" / "img0.png").stat().st_mtime_ns == before
    assert main(["predict", str(tmp_path / "in"), *common, "--overwrite"]) == 0


@pytest.mark.slow
def test_two_process_torchrun_handles_every_image_exactly_once(tiny, tmp_path):
    paths = write_images(tmp_path / "in", 5)
    (tmp_path / "in" / "zz_corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "mask2former.cli", "predict", str(tmp_path / "in"), "--model", str(tiny), "--device", "cpu",
               "--output-dir", str(tmp_path / "out"), "--format", "coco", "--threshold", "0.1", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode != 0, run.stdout + run.stderr  # the corrupt image fails the run on every process
    assert "zz_corrupt.png" in run.stderr and "5 of 6 images segmented" in run.stdout
    data = json.loads((tmp_path / "out" / "panoptic.json").read_text())
    assert sorted(a["image_id"] for a in data["annotations"]) == [0, 1, 2, 3, 4]  # once each, none lost
    assert sorted(i["file_name"] for i in data["images"]) == sorted(p.name for p in paths)
    for path in paths:
        assert (tmp_path / "out" / f"{path.stem}.png").is_file()
        assert (tmp_path / "out" / "panoptic" / f"{path.stem}.png").is_file()
    assert np.unique([json.loads((tmp_path / "out" / f"{p.stem}.json").read_text())["image"] for p in paths]).size == 5
