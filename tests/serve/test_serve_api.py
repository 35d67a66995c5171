"""``mask2former serve`` against ``mask2former predict``: the same segments JSON and the same overlay for real images,
raw and multipart uploads, every task, thresholds from the query; the descriptive endpoints and the page."""

from __future__ import annotations

import base64
import io
import json
import sys

import numpy as np
import pytest
from PIL import Image

from mask2former.cli import main
from mask2former.predict import bundled_examples


@pytest.fixture(scope="module")
def examples():
    return bundled_examples()


def predict_json(tmp_path, images, *options: str) -> dict[str, dict]:
    """predict's NAME.json per image (by file name), run through the CLI."""
    out = tmp_path / "predict"
    assert main(["predict", *map(str, images), "--output-dir", str(out), "--device", "cpu", "--no-progress",
                 "--overwrite", *options]) == 0
    return {image.name: json.loads((out / f"{image.stem}.json").read_text()) for image in images}


@pytest.mark.parametrize("task", ["panoptic", "instance", "semantic"])
def test_segment_json_is_predicts(server, examples, tmp_path, task):
    expected = predict_json(tmp_path, examples, "--task", task)
    for k, image in enumerate(examples):
        data = image.read_bytes()
        multipart = k % 2 == 0
        reply = server.post_image(f"/v1/segment?task={task}", data, filename=image.name if multipart else None)
        assert reply.status == 200, reply.body
        assert reply.headers["content-type"] == "application/json"
        assert int(reply.headers["x-batch-size"]) >= 1
        got = reply.json()
        assert got["image"] == (image.name if multipart else None)
        want = expected[image.name]
        assert got["height"] == want["height"] and got["width"] == want["width"] and got["task"] == task
        assert got["segments"] == want["segments"]
        assert got["segments"], "the demo model finds segments in its examples"


def test_thresholds_from_the_query_are_predicts(server, examples, tmp_path):
    image = examples[0]
    expected = predict_json(tmp_path, [image], "--threshold", "0.92", "--mask-threshold", "0.4",
                            "--overlap-threshold", "0.6")[image.name]
    reply = server.post_image("/v1/segment?threshold=0.92&mask_threshold=0.4&overlap_threshold=0.6",
                              image.read_bytes())
    assert reply.status == 200, reply.body
    assert reply.json()["segments"] == expected["segments"]
    default = server.post_image("/v1/segment", image.read_bytes()).json()["segments"]
    assert len(expected["segments"]) < len(default)  # the threshold did something


def test_overlay_is_predicts_picture(server, examples, tmp_path):
    image = examples[1]
    predict_json(tmp_path, [image])
    with Image.open(tmp_path / "predict" / f"{image.stem}.png") as picture:
        expected = np.asarray(picture.convert("RGB"))
    reply = server.post_image("/v1/overlay", image.read_bytes(), filename=image.name)
    assert reply.status == 200 and reply.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(reply.body)).convert("RGB")), expected)

    document = server.post_image("/v1/segment?overlay=true", image.read_bytes()).json()
    prefix = "data:image/png;base64,"
    assert document["overlay"].startswith(prefix)
    inline = Image.open(io.BytesIO(base64.b64decode(document["overlay"][len(prefix):]))).convert("RGB")
    assert np.array_equal(np.asarray(inline), expected)

    wide = server.post_image("/v1/overlay?side_by_side=true&alpha=0.3", image.read_bytes())
    with Image.open(io.BytesIO(wide.body)) as picture, Image.open(image) as photo:
        assert picture.height == photo.height and picture.width > 2 * photo.width


def test_model_health_stats_and_page(server):
    model = server.call("GET", "/v1/model").json()
    assert model["model"] == "bundled demo model"
    assert set(model["labels"].values()) == {"circle", "square", "triangle", "sky", "grass", "water"}
    assert model["num_labels"] == 6 and model["num_queries"] == 16 and 1e6 < model["parameters"] < 3e6
    assert model["device"] == "cpu" and model["dtype"] == "float32"
    assert model["image_size"] == {"shortest_edge": 128, "longest_edge": 512}
    assert model["defaults"] == {"task": "panoptic", "threshold": 0.5, "mask_threshold": 0.5,
                                 "overlap_threshold": 0.8}
    assert model["limits"]["max_upload_bytes"] == 20_000_000 and model["batching"]["max_batch"] == 8
    assert server.call("GET", "/healthz").json() == {"status": "ok"}
    stats = server.call("GET", "/v1/stats").json()
    assert {"jobs", "batches", "batch_sizes", "waiting"} <= set(stats)

    page = server.call("GET", "/")
    assert page.status == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    html = page.body.decode()
    assert 'id="file"' in html and 'id="segments"' in html and "/v1/segment" in html
    assert "http://" not in html and "https://" not in html  # nothing is loaded from elsewhere


def test_missing_extra_names_it(monkeypatch, capsys):
    for name in [name for name in sys.modules if name.startswith("mask2former.serve")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # as if it were not installed
    assert main(["serve"]) == 2
    assert "pip install 'mask2former[serve]'" in capsys.readouterr().err
