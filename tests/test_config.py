"""Mask2FormerConfig reads and writes transformers' config.json schema and rejects what we cannot build."""

from __future__ import annotations

import json
import logging
import warnings

import pytest
from helpers import tiny_config_kwargs, transformers_config

from mask2former import Mask2FormerConfig, SwinConfig
from mask2former.config import ConfigError
from mask2former.version import VERSION_KEY, __version__

transformers = pytest.importorskip("transformers")

FIELDS = [
    "feature_size", "mask_feature_size", "hidden_dim", "encoder_feedforward_dim", "activation_function",
    "encoder_layers", "decoder_layers", "num_attention_heads", "dropout", "dim_feedforward", "pre_norm",
    "enforce_input_projection", "common_stride", "ignore_value", "num_queries", "no_object_weight", "class_weight",
    "mask_weight", "dice_weight", "train_num_points", "oversample_ratio", "importance_sample_ratio", "init_std",
    "init_xavier_std", "use_auxiliary_loss", "feature_strides", "output_auxiliary_logits", "num_labels",
]
SWIN_FIELDS = ["embed_dim", "depths", "num_heads", "window_size", "drop_path_rate", "mlp_ratio", "qkv_bias",
               "hidden_act", "layer_norm_eps", "patch_size", "num_channels", "out_features", "out_indices"]


def _same(a, b) -> bool:
    return list(a) == list(b) if isinstance(a, (list, tuple)) else a == b


def test_defaults_equal_transformers_defaults():
    ours, ref = Mask2FormerConfig(), transformers.Mask2FormerConfig()
    for name in FIELDS:
        assert _same(getattr(ours, name), getattr(ref, name)), name
    for name in SWIN_FIELDS:
        assert _same(getattr(ours.backbone_config, name), getattr(ref.backbone_config, name)), name
    assert ours.id2label == ref.id2label and ours.label2id == ref.label2id


def test_reads_transformers_config_json_and_keeps_unknown_keys(tmp_path):
    ref = transformers_config(**tiny_config_kwargs(num_labels=4, pre_norm=True))
    ref.id2label = {0: "cat", 1: "dog", 2: "sky", 3: "road"}
    ref.label2id = {v: k for k, v in ref.id2label.items()}
    ref.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    data["enforce_input_proj"] = False  # an unknown key that hub configs carry
    (tmp_path / "config.json").write_text(json.dumps(data))

    ours = Mask2FormerConfig.from_pretrained(tmp_path)
    assert ours.num_labels == 4 and ours.id2label[2] == "sky" and ours.label2id["road"] == 3
    for name in FIELDS:
        assert _same(getattr(ours, name), getattr(ref, name)), name
    for name in SWIN_FIELDS:
        assert _same(getattr(ours.backbone_config, name), getattr(ref.backbone_config, name)), name
    written = ours.to_dict()
    assert written["enforce_input_proj"] is False
    assert written["backbone_config"]["model_type"] == "swin"
    for key, value in data.items():
        if key not in ("transformers_version", "dtype"):
            assert written[key] == value, key


def test_transformers_reads_our_config(tmp_path):
    ours = Mask2FormerConfig(**tiny_config_kwargs(num_labels=7, decoder_layers=6))
    ours.save_pretrained(tmp_path)
    ref = transformers.Mask2FormerConfig.from_pretrained(tmp_path)
    for name in FIELDS:
        assert _same(getattr(ours, name), getattr(ref, name)), name
    assert ref.backbone_config.model_type == "swin"
    assert list(ref.backbone_config.depths) == ours.backbone_config.depths



def test_saved_config_records_the_version_and_transformers_accepts_it(tmp_path):
    ours = Mask2FormerConfig(**tiny_config_kwargs(num_labels=3))
    ours.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "config.json").read_text())
    assert data[VERSION_KEY] == __version__
    # a file another release wrote: the field is read as derived (not kept as an unknown key), rewritten on save
    data[VERSION_KEY] = "0.0.1"
    (tmp_path / "config.json").write_text(json.dumps(data))
    again = Mask2FormerConfig.from_pretrained(tmp_path)
    assert VERSION_KEY not in again.extra and again == ours and again.to_dict()[VERSION_KEY] == __version__

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("transformers")  # transformers' loggers do not propagate to the root logger
    logger.addHandler(handler)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ref = transformers.Mask2FormerConfig.from_pretrained(tmp_path)
    finally:
        logger.removeHandler(handler)
    assert not records, [record.getMessage() for record in records]
    assert ref.num_labels == 3 and getattr(ref, VERSION_KEY) == "0.0.1"

def test_from_backbone_config_and_labels():
    backbone = SwinConfig(embed_dim=128, depths=[2, 2, 18, 2], num_heads=[4, 8, 16, 32], window_size=12,
                          out_features=["stage1", "stage2", "stage3", "stage4"])
    config = Mask2FormerConfig.from_backbone_config(backbone, num_queries=200, id2label={0: "a", 1: "b", 2: "c"})
    assert config.backbone_config.window_size == 12 and config.num_queries == 200 and config.num_labels == 3
    assert config.backbone_config.hidden_size == 1024
    config.num_labels = 5
    assert config.id2label[4] == "LABEL_4" and config.label2id["LABEL_0"] == 0
    round_tripped = Mask2FormerConfig.from_dict(json.loads(config.to_json_string()))
    assert round_tripped == config


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(backbone_config={"model_type": "convnext"}), "'convnext' is not supported; .*swin, resnet, timm_backbone"),
        (dict(backbone_config={"model_type": "resnet"}), r"4 feature maps .*\['stage4'\]"),
        (dict(backbone_config={"model_type": "resnet", "layer_type": "wide"}), "layer_type='wide'"),
        (dict(backbone_config=object()), "backbone_config must be .*got object"),
        (dict(hidden_dim=30), "hidden_dim=30"),
        (dict(feature_size=48), "multiple of 32"),
        (dict(activation_function="mish"), "activation_function"),
        (dict(use_timm_backbone=True), "use_timm_backbone"),
        (dict(backbone="microsoft/swin-tiny-patch4-window7-224"), "backbone_config"),
        (dict(backbone_config={"model_type": "swin", "use_absolute_embeddings": True}), "use_absolute_embeddings"),
        (dict(backbone_config={"model_type": "swin", "out_features": ["stage9"]}), "stage9"),
        (dict(decoder_layers=0), "decoder_layers"),
    ],
)
def test_unsupported_values_give_clear_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Mask2FormerConfig(**kwargs).validate()


def test_wrong_model_type_file(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "detr"}))
    with pytest.raises(ConfigError, match="detr"):
        Mask2FormerConfig.from_pretrained(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Mask2FormerConfig.from_pretrained(tmp_path)
