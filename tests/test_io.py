"""Checkpoint files, hub resolution (real huggingface_hub code against a local cache), and bad-input errors."""

from __future__ import annotations

import shutil

import pytest
import torch
from helpers import randomize_, tiny_config_kwargs

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
from mask2former.io.checkpoint import CheckpointMismatchError
from mask2former.hub import CheckpointNotFoundError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny"
    model = randomize_(Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**tiny_config_kwargs()))).eval()
    model.save_pretrained(path)
    return model, path


def _fake_hub_cache(cache, repo_id, source):
    """Lay ``source`` out as huggingface_hub's cache does after a download (refs/main -> snapshots/<commit>)."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    shutil.copytree(source, repo / "snapshots" / commit)


def test_hub_id_resolves_through_huggingface_hub_cache(saved, tmp_path):
    pytest.importorskip("huggingface_hub")
    model, path = saved
    _fake_hub_cache(tmp_path / "cache", "someone/mask2former-tiny", path)
    loaded = Mask2FormerForUniversalSegmentation.from_pretrained(
        "someone/mask2former-tiny", cache_dir=tmp_path / "cache", local_files_only=True
    )
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_offline_hub_id_says_how_to_use_a_local_directory(tmp_path, monkeypatch):
    pytest.importorskip("huggingface_hub")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(CheckpointNotFoundError, match="local-dir"):
        Mask2FormerForUniversalSegmentation.from_pretrained(
            "facebook/mask2former-swin-tiny-coco-panoptic", cache_dir=tmp_path / "empty"
        )


def test_missing_directory_and_missing_weights(tmp_path):
    with pytest.raises(CheckpointNotFoundError, match="nope/deeper/still: no such folder"):
        Mask2FormerForUniversalSegmentation.from_pretrained(str(tmp_path / "nope" / "deeper" / "still"))
    Mask2FormerConfig(**tiny_config_kwargs()).save_pretrained(tmp_path / "config_only")
    with pytest.raises(CheckpointNotFoundError, match="holds no weights"):
        Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "config_only")


def test_corrupt_weights_file_is_named(saved, tmp_path):
    _, path = saved
    shutil.copytree(path, tmp_path / "bad")
    (tmp_path / "bad" / "model.safetensors").write_bytes(b"this is not a safetensors file")
    with pytest.raises(CheckpointMismatchError, match="model.safetensors"):
        Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "bad")


def test_mismatched_checkpoint_lists_tensors_by_name(saved):
    _, path = saved
    with pytest.raises(CheckpointMismatchError, match=r"queries_features.weight \(5, 32\) vs \(9, 32\)"):
        Mask2FormerForUniversalSegmentation.from_pretrained(path, num_queries=9)


def test_new_label_set_replaces_the_class_head(saved):
    model, path = saved
    tuned = Mask2FormerForUniversalSegmentation.from_pretrained(path, num_labels=7, ignore_mismatched_sizes=True)
    assert tuned.class_predictor.out_features == 8
    assert {name for name, *_ in tuned.load_report.mismatched} == {
        "class_predictor.weight", "class_predictor.bias", "criterion.empty_weight"}
    assert torch.equal(tuned.model.transformer_module.queries_features.weight,
                       model.model.transformer_module.queries_features.weight)


@pytest.mark.parametrize(
    ("pixel_values", "message"),
    [
        (torch.randn(3, 32, 32), r"shape \(B, 3, H, W\)"),
        (torch.randn(1, 32, 32, 3), r"shape \(B, 3, H, W\)"),
        (torch.zeros(1, 3, 32, 32, dtype=torch.uint8), "floating point"),
    ],
)
def test_bad_pixel_values_are_explained(saved, pixel_values, message):
    model, _ = saved
    with pytest.raises(ValueError, match=message):
        model(pixel_values)


def test_labels_are_checked_and_give_a_loss(saved):
    model, _ = saved
    pixel_values = torch.randn(2, 3, 64, 64)
    masks = [torch.zeros(2, 64, 64, dtype=torch.bool), torch.zeros(0, 64, 64, dtype=torch.bool)]
    masks[0][0, :20] = True
    masks[0][1, 30:] = True
    with pytest.raises(ValueError, match="outside"):
        model(pixel_values, mask_labels=masks, class_labels=[torch.tensor([0, 3]), torch.tensor([], dtype=torch.long)])
    with pytest.warns(UserWarning, match="no loss"):  # as in transformers: outputs without a loss
        assert model(pixel_values, mask_labels=masks).loss is None
    out = model(pixel_values, mask_labels=masks, class_labels=[torch.tensor([0, 2]), torch.zeros(0, dtype=torch.long)])
    assert torch.isfinite(out.loss) and "loss_dice" in out.loss_dict and "loss_cross_entropy_0" in out.loss_dict
    as_tuple = model(pixel_values, mask_labels=masks, class_labels=[torch.tensor([0, 2]), torch.zeros(0).long()],
                     return_dict=False)
    assert as_tuple[0].dim() == 0 and as_tuple[1].shape == out.class_queries_logits.shape


def test_unreachable_hub_is_asked_nothing_and_a_missing_path_is_no_such_folder(tmp_path, monkeypatch):
    huggingface_hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub import constants
    from huggingface_hub.utils import LocalEntryNotFoundError

    calls = []

    def download(**kwargs):
        calls.append(kwargs)
        raise LocalEntryNotFoundError("not in the cache")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")  # nothing listens: refused at once
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    with pytest.raises(CheckpointNotFoundError, match="cannot be reached"):
        Mask2FormerForUniversalSegmentation.from_pretrained("facebook/not-cached", cache_dir=tmp_path)
    assert calls and all(call["local_files_only"] for call in calls)  # the cache only: no network retries

    (tmp_path / "outputs").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointNotFoundError, match="outputs/mine: no such folder"):
        Mask2FormerForUniversalSegmentation.from_pretrained("outputs/mine")
    assert len(calls) == 1  # a path whose first folder exists is not sent to the hub
