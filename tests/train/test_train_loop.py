"""Training loop: exact resume, no overwriting, schedules, class-head replacement, torchrun with two processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
from mask2former.data.synthetic import generate_synthetic_dataset
from mask2former.train import loop
from mask2former.train.config import DataSpec, TrainConfig, load_train_config
from mask2former.train.optim import lr_factor, parameter_groups

TINY_MODEL = dict(
    backbone_config=dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 2, 2, 4], window_size=7,
                         drop_path_rate=0.1, out_features=["stage1", "stage2", "stage3", "stage4"]),
    feature_size=32, mask_feature_size=32, hidden_dim=32, encoder_feedforward_dim=64, dim_feedforward=64,
    num_attention_heads=4, encoder_layers=1, decoder_layers=3, num_queries=8, train_num_points=256,
)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(root, num_images=6, seed=1, min_size=64, max_size=96)
    return DataSpec(format="coco_panoptic", images=str(root / "images"), annotations=str(root / "panoptic.json"),
                    masks=str(root / "panoptic"))


def _config(data: DataSpec, output_dir: Path, **overrides) -> TrainConfig:
    settings = dict(output_dir=str(output_dir), train_data=data, model=TINY_MODEL, crop_size=64, batch_size=2,
                    max_steps=4, checkpoint_every=2, log_every=1, progress=False, lr=1e-3, warmup_steps=1,
                    color_jitter=True)
    settings.update(overrides)
    return TrainConfig(**settings)


class _Crash(Exception):
    pass


def test_killed_run_resumes_to_the_same_weights(synthetic, tmp_path, monkeypatch):
    uninterrupted = loop.train(_config(synthetic, tmp_path / "a"))

    calls = {"n": 0}
    real = loop._to_device

    def crash_on_fourth_step(batch, device):  # after step 3 was logged, one step past the checkpoint
        calls["n"] += 1
        if calls["n"] == 4:
            raise _Crash()
        return real(batch, device)

    monkeypatch.setattr(loop, "_to_device", crash_on_fourth_step)
    with pytest.raises(_Crash):
        loop.train(_config(synthetic, tmp_path / "b"))
    monkeypatch.setattr(loop, "_to_device", real)
    assert (tmp_path / "b" / "checkpoints" / "latest").read_text().strip() == "step_00000002"
    resumed = loop.train(_config(synthetic, tmp_path / "b"), resume=True)

    assert resumed.step == uninterrupted.step == 4
    assert resumed.losses == pytest.approx(uninterrupted.losses[2:], rel=1e-6)
    a = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "a" / "model").state_dict()
    b = Mask2FormerForUniversalSegmentation.from_pretrained(tmp_path / "b" / "model").state_dict()
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-6
    records = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    starts = [record for record in records if record.get("event") == "start"]  # one line per start, with the version
    assert [record["step"] for record in starts] == [0, 2] and all("mask2former_version" in r for r in starts)
    assert [record["step"] for record in records if "loss" in record] == [1, 2, 3, 4]  # each step once
    with pytest.raises(FileNotFoundError, match="holds no training run to resume"):
        loop.train(_config(synthetic, tmp_path / "never"), resume=True)
    assert not (tmp_path / "never").exists()


def _copy_dataset(spec: DataSpec, root: Path) -> DataSpec:
    import shutil

    for name in ("images", "panoptic"):
        shutil.copytree(Path(spec.images).parent / name, root / name)
    shutil.copy(spec.annotations, root / "panoptic.json")
    return DataSpec(format="coco_panoptic", images=str(root / "images"), annotations=str(root / "panoptic.json"),
                    masks=str(root / "panoptic"))


def test_missing_files_fail_before_the_first_step_all_named(synthetic, tmp_path):
    data = _copy_dataset(synthetic, tmp_path / "data")
    images = sorted(Path(data.images).iterdir())
    images[0].unlink()
    (Path(data.masks) / (images[3].stem + ".png")).unlink()
    with pytest.raises(loop.TrainingDataError, match="2 file") as caught:
        loop.train(_config(data, tmp_path / "run"))
    assert str(images[0]) in str(caught.value) and images[3].stem + ".png" in str(caught.value)
    assert "no training step" in str(caught.value) and not (tmp_path / "run").exists()


def test_unreadable_files_are_skipped_by_name_and_too_many_stop_the_run(synthetic, tmp_path):
    data = _copy_dataset(synthetic, tmp_path / "data")
    broken = sorted(Path(data.images).iterdir())[2]
    broken.write_bytes(broken.read_bytes()[:40])  # a file cut short: exists, does not decode
    result = loop.train(_config(data, tmp_path / "tolerant", max_steps=3, max_unreadable_fraction=0.5))
    assert result.step == 3 and (tmp_path / "tolerant" / "model" / "model.safetensors").is_file()
    records = [json.loads(line) for line in (tmp_path / "tolerant" / "log.jsonl").read_text().splitlines()]
    assert any(r.get("event") == "skipped" and r["file"] == str(broken) for r in records)
    assert list(result.skipped) == [str(broken)]
    with pytest.raises(loop.TrainingDataError, match=f"1 of 6 training samples could not be read.*{broken.name}"):
        loop.train(_config(data, tmp_path / "strict", max_steps=3))  # default: more than 1% unreadable stops


def test_a_broken_validation_image_does_not_lose_the_trained_model(synthetic, tmp_path):
    val = _copy_dataset(synthetic, tmp_path / "val")
    broken = sorted(Path(val.images).iterdir())[0]
    broken.write_bytes(b"not an image at all")
    with pytest.raises(RuntimeError, match="evaluation at step 2 failed.*saved in") as caught:
        loop.train(_config(synthetic, tmp_path / "run", max_steps=2, val_data=val))
    assert broken.name in str(caught.value)
    assert (tmp_path / "run" / "model" / "model.safetensors").is_file()


def test_existing_run_is_not_overwritten(synthetic, tmp_path):
    loop.train(_config(synthetic, tmp_path / "run", max_steps=2))
    before = (tmp_path / "run" / "model" / "model.safetensors").read_bytes()
    with pytest.raises(FileExistsError, match="--resume"):
        loop.train(_config(synthetic, tmp_path / "run", max_steps=2))
    assert (tmp_path / "run" / "model" / "model.safetensors").read_bytes() == before


def test_starting_from_a_checkpoint_replaces_the_class_head(synthetic, tmp_path):
    base = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**TINY_MODEL, num_labels=3))
    base.save_pretrained(tmp_path / "base")
    config = _config(synthetic, tmp_path / "ft", init_checkpoint=str(tmp_path / "base"), model={})
    model = loop.build_model(config, {0: "circle", 1: "square", 2: "triangle", 3: "sky", 4: "grass", 5: "water"})
    assert model.class_predictor.out_features == 7 and model.config.id2label[3] == "sky"
    assert torch.equal(model.model.transformer_module.queries_features.weight,
                       base.model.transformer_module.queries_features.weight)
    same_size = loop.build_model(config, {0: "a", 1: "b", 2: "c"})  # same count, other names: a fresh head
    assert not torch.equal(same_size.class_predictor.weight, base.class_predictor.weight)


def test_schedules_and_parameter_groups():
    config = TrainConfig(max_steps=100, warmup_steps=10, schedule="step", step_milestones=[0.5, 0.9], lr=1e-4)
    assert lr_factor(0, config) == pytest.approx(0.1) and lr_factor(9, config) == 1.0
    assert lr_factor(49, config) == 1.0 and lr_factor(50, config) == pytest.approx(0.1)
    assert lr_factor(95, config) == pytest.approx(0.01)
    poly = TrainConfig(max_steps=100, schedule="poly", poly_power=0.9)
    assert lr_factor(0, poly) == 1.0 and lr_factor(50, poly) == pytest.approx(0.5**0.9)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**TINY_MODEL))
    groups = {g["name"]: g for g in parameter_groups(model, config)}
    assert groups["backbone"]["lr"] == pytest.approx(1e-5) and groups["heads"]["lr"] == pytest.approx(1e-4)
    assert groups["heads_no_decay"]["weight_decay"] == 0.0 and groups["heads"]["weight_decay"] == 0.05
    counted = sum(p.numel() for g in groups.values() for p in g["params"])
    assert counted == sum(p.numel() for p in model.parameters())


def test_yaml_file_and_overrides(tmp_path):
    (tmp_path / "run.yaml").write_text(
        "max_steps: 7\nlr: 0.0002\ntrain_data:\n  format: semantic\n  images: imgs\n  masks: labels\n"
        "  class_names: [a, b]\n")
    config = load_train_config(tmp_path / "run.yaml", ["lr=3e-4", "train_data.reduce_labels=true", "amp=bf16"])
    assert config.max_steps == 7 and config.lr == 3e-4 and config.amp == "bf16"
    assert config.train_data.reduce_labels is True and config.train_data.semantic_class_names() == ["a", "b"]
    with pytest.raises(ValueError, match="unknown training settings"):
        load_train_config(None, ["learning_rate=1"])
    with pytest.raises(ValueError, match="needs annotations"):
        load_train_config(None, ["train_data={\"format\": \"coco_instance\", \"images\": \"x\"}"])


# what torchrun or gloo print when a local TCP connection or the rendezvous store fails, not our code
TRANSPORT_ERRORS = ("Connection closed by peer", "Connection reset by peer", "DistNetworkError",
                    "RendezvousConnectionError", "RendezvousTimeoutError", "Address already in use")


def _run_torchrun(command: list[str], env: dict[str, str]) -> None:
    """Run a torchrun command; one retry only when a local transport error stopped it; show its output on failure."""
    for attempt in (1, 2):
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
        if done.returncode == 0:
            return
        output = done.stdout + done.stderr
        transport = [marker for marker in TRANSPORT_ERRORS if marker in output]
        if attempt == 1 and transport:
            print(f"torchrun failed on a local transport error ({', '.join(transport)}); running it again")
            continue
        pytest.fail(f"torchrun exited with {done.returncode}:\n--- stdout (end) ---\n{done.stdout[-4000:]}\n"
                    f"--- stderr (end) ---\n{done.stderr[-8000:]}", pytrace=False)


@pytest.mark.slow
def test_two_gloo_processes_follow_the_single_process_loss_curve(synthetic, tmp_path):
    """torchrun with 2 processes x batch 1 sees the same samples as 1 process x batch 2; the losses agree closely.

    They are not bit-identical: each process draws its own random sampling points, and the class loss is averaged
    per process before DDP averages the gradients.
    """
    common = _config(synthetic, tmp_path, max_steps=4, checkpoint_every=4).to_dict()
    common["model"] = dict(TINY_MODEL, train_num_points=4096, backbone_config=dict(
        TINY_MODEL["backbone_config"], drop_path_rate=0.0))
    runs = {}
    for name, processes, batch in (("single", 1, 2), ("ddp", 2, 1)):
        settings = dict(common, output_dir=str(tmp_path / name), batch_size=batch)
        (tmp_path / f"{name}.json").write_text(json.dumps(settings))
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
                   "-m", "mask2former.cli", "train", "--config", str(tmp_path / f"{name}.json")]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        _run_torchrun(command, env)
        records = [json.loads(line) for line in (tmp_path / name / "log.jsonl").read_text().splitlines()]
        runs[name] = [r["loss"] for r in records if "loss" in r]
    assert len(runs["single"]) == len(runs["ddp"]) == 4
    print("loss per step, 1 process x batch 2:", runs["single"], "2 processes x batch 1:", runs["ddp"])
    assert runs["ddp"] == pytest.approx(runs["single"], rel=0.05)
