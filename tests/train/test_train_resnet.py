"""A ResNet-backbone Mask2Former trains (the loss falls on synthetic data) and ``mask2former predict`` runs with it."""

from __future__ import annotations

import json
import statistics

import pytest

from mask2former.cli import main
from mask2former.data.synthetic import generate_synthetic_dataset
from mask2former.train import loop
from mask2former.train.config import DataSpec, TrainConfig

RESNET_MODEL = dict(
    backbone_config=dict(model_type="resnet", embedding_size=16, hidden_sizes=[32, 64, 128, 256], depths=[1, 1, 1, 1],
                         out_features=["stage1", "stage2", "stage3", "stage4"]),  # frozen BatchNorm: the default
    feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64, dim_feedforward=64,
    num_attention_heads=4, encoder_layers=1, decoder_layers=3, num_queries=8, train_num_points=512,
)


@pytest.mark.slow
def test_resnet_model_trains_and_predicts(tmp_path, capsys):
    generate_synthetic_dataset(tmp_path / "data", num_images=8, seed=3, min_size=64, max_size=80)
    data = DataSpec(format="coco_panoptic", images=str(tmp_path / "data" / "images"),
                    annotations=str(tmp_path / "data" / "panoptic.json"), masks=str(tmp_path / "data" / "panoptic"))
    config = TrainConfig(output_dir=str(tmp_path / "run"), train_data=data, model=RESNET_MODEL, crop_size=64,
                         augmentation="none", batch_size=2, lr=2e-3, backbone_lr_multiplier=1.0, schedule="constant",
                         max_steps=40, checkpoint_every=1000, log_every=1, progress=False)
    result = loop.train(config)
    start, end = statistics.mean(result.losses[:5]), statistics.mean(result.losses[-5:])
    print(f"ResNet loss {start:.2f} -> {end:.2f} over {config.max_steps} steps")
    assert end < 0.8 * start  # measured: 30.90 -> 21.30 (0.69)

    saved = json.loads((result.model_dir / "config.json").read_text())
    assert saved["backbone_config"]["model_type"] == "resnet" and saved["backbone_config"]["freeze_batch_norm"]
    images = sorted((tmp_path / "data" / "images").iterdir())[:2]
    code = main(["predict", *map(str, images), "--model", str(result.model_dir), "--output-dir",
                 str(tmp_path / "pred"), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    segments = json.loads(next((tmp_path / "pred").glob("*.json")).read_text())
    assert isinstance(segments, (list, dict))
    assert len(list((tmp_path / "pred").glob("*.png"))) == 2
