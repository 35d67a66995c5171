"""`mask2former train` and `mask2former evaluate` end to end on a small synthetic dataset."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from mask2former.cli import main
from mask2former.data.synthetic import generate_synthetic_dataset
from mask2former.version import VERSION_KEY, __version__

MODEL = dict(
    backbone_config=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=7,
                         drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"]),
    feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64, dim_feedforward=64,
    num_attention_heads=4, encoder_layers=1, decoder_layers=2, num_queries=6, train_num_points=256,
)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    generate_synthetic_dataset(root, num_images=4, seed=3, min_size=64, max_size=80)
    return root


def test_train_then_evaluate_with_the_model(data, tmp_path, capsys):
    spec = {"format": "coco_panoptic", "images": str(data / "images"), "annotations": str(data / "panoptic.json"),
            "masks": str(data / "panoptic")}
    run = {"train_data": spec, "model": MODEL, "crop_size": 64, "batch_size": 2, "checkpoint_every": 2,
           "log_every": 1, "progress": False}
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(run))
    assert main(["train", "--config", str(tmp_path / "run.yaml"), "--output-dir", str(tmp_path / "out"),
                 "--max-steps", "2", "--set", "lr=0.0003"]) == 0
    model_dir = tmp_path / "out" / "model"
    assert (model_dir / "model.safetensors").is_file() and (model_dir / "preprocessor_config.json").is_file()
    saved = json.loads((model_dir / "config.json").read_text())
    assert sorted(saved["id2label"].values()) == sorted(["circle", "square", "triangle", "sky", "grass", "water"])
    assert saved[VERSION_KEY] == __version__
    header = json.loads((tmp_path / "out" / "log.jsonl").read_text().splitlines()[0])
    assert header["event"] == "start" and header["step"] == 0 and header[VERSION_KEY] == __version__
    assert json.loads((tmp_path / "out" / "train_config.json").read_text())["lr"] == 0.0003

    out = tmp_path / "metrics.json"
    assert main(["evaluate", "--task", "panoptic", "--model", str(model_dir), "--data-format", "coco_panoptic",
                 "--images", spec["images"], "--annotations", spec["annotations"], "--masks", spec["masks"],
                 "--output", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert {"PQ", "SQ", "RQ", "PQ_th", "PQ_st"} <= set(metrics) and metrics["num_images"] == 4
    assert "PQ" in capsys.readouterr().out


def test_evaluate_predictions_on_disk(data, tmp_path):
    # ground truth scored as predictions: every protocol must give a perfect score
    shutil.copytree(data / "panoptic", tmp_path / "pred_png")
    gt = json.loads((data / "panoptic.json").read_text())
    (tmp_path / "pred.json").write_text(json.dumps({"annotations": gt["annotations"]}))
    assert main(["evaluate", "--task", "panoptic", "--annotations", str(data / "panoptic.json"),
                 "--masks", str(data / "panoptic"), "--predictions", str(tmp_path / "pred.json"),
                 "--prediction-dir", str(tmp_path / "pred_png"), "--output", str(tmp_path / "pq.json")]) == 0
    assert json.loads((tmp_path / "pq.json").read_text())["PQ"] == pytest.approx(1.0)

    pytest.importorskip("pycocotools")
    instances = json.loads((data / "instances.json").read_text())
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "segmentation": a["segmentation"],
                "score": 1.0} for a in instances["annotations"] if not a.get("iscrowd")]
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["evaluate", "--task", "instance", "--annotations", str(data / "instances.json"),
                 "--predictions", str(tmp_path / "results.json"), "--output", str(tmp_path / "ap.json")]) == 0
    assert json.loads((tmp_path / "ap.json").read_text())["AP"] == pytest.approx(1.0)

    names = json.loads((data / "id2label.json").read_text())
    (tmp_path / "names.json").write_text(json.dumps(names))
    assert main(["evaluate", "--task", "semantic", "--masks", str(data / "semantic"),
                 "--prediction-dir", str(data / "semantic"), "--class-names", str(tmp_path / "names.json"),
                 "--output", str(tmp_path / "miou.json")]) == 0
    assert json.loads((tmp_path / "miou.json").read_text())["mIoU"] == pytest.approx(1.0)
