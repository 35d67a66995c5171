"""Config API against transformers: the same calls on both libraries give the same values and files."""

from __future__ import annotations

import json

import pytest
from helpers import tiny_config_kwargs, transformers_config

import mask2former

transformers = pytest.importorskip("transformers")

LIBRARIES = {"ours": mask2former, "transformers": transformers}


@pytest.mark.parametrize("library", LIBRARIES)
def test_aliases_of_hidden_dim_and_decoder_layers(library):
    config = LIBRARIES[library].Mask2FormerConfig(hidden_size=64, num_hidden_layers=3)
    assert (config.hidden_dim, config.decoder_layers) == (64, 3)
    assert (config.hidden_size, config.num_hidden_layers) == (64, 3)
    config.hidden_size = 128
    config.num_hidden_layers = 6
    assert (config.hidden_dim, config.decoder_layers) == (128, 6)
    assert "hidden_size" not in config.to_dict() and config.to_dict()["hidden_dim"] == 128


@pytest.mark.parametrize("library", LIBRARIES)
def test_backbone_config_fields_are_assignable(library, tmp_path):
    config = LIBRARIES[library].Mask2FormerConfig()
    backbone = config.backbone_config
    backbone.hidden_size = 16
    backbone.num_attention_heads = [1, 1, 2, 2]
    assert backbone.hidden_size == 16 and backbone.num_heads == [1, 1, 2, 2]
    config.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())["backbone_config"]
    assert saved["hidden_size"] == 16 and saved["num_heads"] == [1, 1, 2, 2]
    again = LIBRARIES[library].SwinConfig.from_pretrained(tmp_path)
    assert again.hidden_size == 16 and again.num_heads == [1, 1, 2, 2] and again.depths == [2, 2, 18, 2]


def test_assigned_backbone_hidden_size_changes_no_weight(tmp_path):
    """transformers never reads SwinConfig.hidden_size to build layers; neither do we."""
    kwargs = tiny_config_kwargs()
    config = mask2former.Mask2FormerConfig(**kwargs)
    config.backbone_config.hidden_size = 7
    model = mask2former.Mask2FormerForUniversalSegmentation(config)
    model.save_pretrained(tmp_path)
    loaded = transformers.Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path, output_loading_info=True)
    assert loaded[1]["missing_keys"] == set() and loaded[1]["unexpected_keys"] == set()


@pytest.mark.parametrize("backbone", ["swin", "resnet"])
def test_backbone_config_from_pretrained_reads_both_libraries_files(tmp_path, backbone):
    theirs_class = {"swin": transformers.SwinConfig, "resnet": transformers.ResNetConfig}[backbone]
    ours_class = {"swin": mask2former.SwinConfig, "resnet": mask2former.ResNetConfig}[backbone]
    theirs_class(depths=[1, 2, 1, 1], out_features=["stage2", "stage4"]).save_pretrained(tmp_path / "theirs")
    ours = ours_class.from_pretrained(tmp_path / "theirs")
    assert ours.depths == [1, 2, 1, 1] and ours.out_features == ["stage2", "stage4"]
    ours.save_pretrained(tmp_path / "ours")
    theirs = theirs_class.from_pretrained(tmp_path / "ours")
    assert theirs.depths == [1, 2, 1, 1] and theirs.out_features == ["stage2", "stage4"]
    with pytest.raises(ValueError, match="not a"):
        ({"swin": mask2former.ResNetConfig, "resnet": mask2former.SwinConfig}[backbone]).from_pretrained(
            tmp_path / "theirs")


def test_from_pretrained_keywords_and_subfolder(tmp_path):
    kwargs = tiny_config_kwargs()
    transformers_config(**kwargs).save_pretrained(tmp_path / "sub")
    for library in LIBRARIES.values():
        config, unused = library.Mask2FormerConfig.from_pretrained(
            tmp_path, subfolder="sub", num_hidden_layers=7, num_queries=9, not_a_field=1, return_unused_kwargs=True)
        assert (config.decoder_layers, config.num_queries, unused) == (7, 9, {"not_a_field": 1})
        assert "not_a_field" not in config.to_dict()
    with pytest.warns(UserWarning, match="not_a_field"):
        mask2former.Mask2FormerConfig.from_pretrained(tmp_path / "sub", not_a_field=1)


def test_unknown_constructor_keywords_are_attributes_in_both(tmp_path):
    for library in LIBRARIES.values():
        config = library.Mask2FormerConfig(my_setting=3)
        assert config.my_setting == 3 and config.to_dict()["my_setting"] == 3


@pytest.mark.parametrize("backbone", ["swin", "resnet"])
def test_config_round_trips_through_both_libraries(tmp_path, backbone):
    kwargs = tiny_config_kwargs(num_labels=4, id2label={0: "a", 1: "b", 2: "c", 3: "d"}, ignore_value=7,
                                decoder_layers=5)
    if backbone == "resnet":
        kwargs["backbone_config"] = dict(model_type="resnet", embedding_size=16, hidden_sizes=[32, 64, 128, 256],
                                         depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"])
    ours = mask2former.Mask2FormerConfig(**kwargs)
    ours.save_pretrained(tmp_path / "ours")
    theirs = transformers.Mask2FormerConfig.from_pretrained(tmp_path / "ours")
    transformers_config(**kwargs).save_pretrained(tmp_path / "theirs")
    again = mask2former.Mask2FormerConfig.from_pretrained(tmp_path / "theirs")
    fields = ("hidden_dim", "decoder_layers", "num_queries", "ignore_value", "feature_size", "num_labels", "id2label",
              "hidden_size", "num_hidden_layers")
    for field in fields:
        assert getattr(theirs, field) == getattr(ours, field) == getattr(again, field), field
    backbone_fields = ("depths", "out_features", "out_indices", "num_channels")
    for field in backbone_fields:
        assert (getattr(theirs.backbone_config, field) == getattr(ours.backbone_config, field)
                == getattr(again.backbone_config, field)), field
    again.save_pretrained(tmp_path / "again")
    assert mask2former.Mask2FormerConfig.from_pretrained(tmp_path / "again") == again
