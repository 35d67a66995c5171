"""The training loop: one process or many through torchrun (DDP), exact resume, logs and periodic evaluation.

``train(config)`` is what ``mask2former train`` runs. Under torchrun every process calls it; the process group is
created here from torchrun's environment (NCCL on GPUs, gloo on CPU). Step ``s`` always consumes global micro-batches
``[s·A, (s+1)·A)`` of the sample stream (A = grad_accumulation), so a resumed run continues exactly.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from mask2former.distributed import Processes, device_for, join, leave, mean_over_processes
from mask2former.train.config import TrainConfig
from mask2former.train.data import (
    EpochIndexed,
    ReadFailures,
    StepSampler,
    TrainingDataError,
    build_dataset,
    build_train_transform,
    check_files,
    collate,
)
from mask2former.train.optim import build_optimizer, build_scheduler
from mask2former.train.state import (
    latest_checkpoint,
    load_training_state,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from mask2former.version import version_record

__all__ = ["TrainResult", "TrainingDataError", "build_model", "run_processor", "train"]


@dataclass
class TrainResult:
    """What a run produced: the final step, the logged losses per step, the last metrics and the model directory."""

    step: int
    losses: list[float] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)
    model_dir: Path | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # training files that could not be read -> why


def build_model(config: TrainConfig, id2label: dict[int, str]):
    """A model for the dataset's labels: from ``init_checkpoint`` (class head replaced if labels differ) or fresh."""
    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    label2id = {name: i for i, name in id2label.items()}
    if config.init_checkpoint is None:
        return Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config.model, id2label=id2label))
    model_config = Mask2FormerConfig.from_pretrained(config.init_checkpoint)
    same_labels = model_config.id2label == id2label
    for key, value in config.model.items():
        setattr(model_config, key, value)
    model_config.id2label, model_config.label2id = dict(id2label), label2id
    model = Mask2FormerForUniversalSegmentation.from_pretrained(
        config.init_checkpoint, config=model_config, ignore_mismatched_sizes=True
    )
    if not same_labels:  # a new label set: a fresh class head even when the number of classes is unchanged
        fresh = Mask2FormerForUniversalSegmentation(model_config)
        model.class_predictor.load_state_dict(fresh.class_predictor.state_dict())
    return model.train()


def _log(path: Path | None, record: dict[str, Any]) -> None:
    if path is not None:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _drop_records_after(path: Path | None, step: int) -> None:
    """Rewrite a log without the records of steps after ``step`` (written before a kill; the resumed run redoes
    them)."""
    if path is None or not path.is_file():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines(keepends=True)
            if line.strip() and _record_step(line) <= step]
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text("".join(kept), encoding="utf-8")
    os.replace(temporary, path)


def _record_step(line: str) -> int:
    try:
        return int(json.loads(line).get("step", 0))
    except (ValueError, AttributeError, TypeError):  # a line cut short by the kill
        return 1 << 62


def train(config: TrainConfig, *, resume: bool = False) -> TrainResult:
    """Run (or resume) the training described by ``config``; returns when ``config.max_steps`` steps are done."""
    if config.train_data is None:
        raise ValueError("train_data is not set: give the training images and annotations (see docs/finetuning.md).")
    ctx = join(config.device)
    try:
        return _train(config, ctx, resume)
    finally:
        leave(ctx)


def _train(config: TrainConfig, ctx: Processes, resume: bool) -> TrainResult:
    output_dir = Path(config.output_dir)
    checkpoint = latest_checkpoint(output_dir)
    if checkpoint is not None and not resume:
        raise FileExistsError(
            f"{output_dir} already holds a training run ({checkpoint.name}); pass --resume to continue it, or choose "
            "another --output-dir. Nothing was overwritten."
        )
    if checkpoint is None and resume:
        raise FileNotFoundError(
            f"--resume: {output_dir} holds no training run to resume (no checkpoints/latest"
            f"{'' if output_dir.is_dir() else '; the folder does not exist'}); check --output-dir, or drop --resume "
            "to start a new run."
        )
    if checkpoint is None and (output_dir / "model").exists():
        raise FileExistsError(f"{output_dir} already holds a trained model ({output_dir / 'model'}); choose another "
                              "--output-dir. Nothing was overwritten.")
    device = device_for(config.device, ctx)
    torch.manual_seed(config.seed)  # the same initial weights in every process
    dataset = build_dataset(config.train_data, build_train_transform(config), seed=config.seed)
    check_files(dataset, "train_data")  # every problem at once, before the first step
    if config.val_data is not None:
        check_files(build_dataset(config.val_data), "val_data")
    model = build_model(config, dataset.id2label).to(device).train()
    if config.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    optimizer = build_optimizer(model, config)
    scheduler = build_scheduler(optimizer, config)
    torch.manual_seed(config.seed * 1009 + ctx.rank)  # point sampling and drop path differ per process

    step = 0
    if resume and checkpoint is not None:
        from mask2former.io.checkpoint import load_into_model, read_checkpoint_weights, to_native_layout

        weights, ignored = to_native_layout(read_checkpoint_weights(checkpoint),
                                            model.config.backbone_config.model_type)
        load_into_model(model, weights, ignored=ignored)
        state = load_training_state(checkpoint)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = int(state["step"])
        saved = state["rng_per_process"]
        if len(saved) != ctx.world_size:
            raise RuntimeError(f"{checkpoint} was written by {len(saved)} processes; resume it with as many "
                               f"(this run has {ctx.world_size}) so the sample stream continues exactly.")
        set_rng_state(saved[ctx.rank])

    module: nn.Module = model
    if ctx.world_size > 1:
        ids = [ctx.local_rank] if device.type == "cuda" else None
        module = nn.parallel.DistributedDataParallel(model, device_ids=ids)

    accumulation = config.grad_accumulation
    sampler = StepSampler(len(dataset), config.batch_size, seed=config.seed, rank=ctx.rank,
                          world_size=ctx.world_size, start=step * accumulation,
                          num_batches=(config.max_steps - step) * accumulation)
    # its own generator: creating the iterator must not draw from the global RNG restored above
    loader = torch.utils.data.DataLoader(EpochIndexed(dataset), batch_sampler=sampler, collate_fn=collate,
                                         num_workers=config.num_workers, persistent_workers=config.num_workers > 0,
                                         generator=torch.Generator().manual_seed(config.seed))
    batches = iter(loader)
    amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(config.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=config.amp == "fp16" and device.type == "cuda")
    log_path = output_dir / "log.jsonl" if ctx.main else None
    if ctx.main:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(config.to_dict(), indent=2))
    if ctx.main and resume:
        _drop_records_after(log_path, step)  # the steps after the checkpoint are run (and logged) again
    _log(log_path, {"event": "start", "step": step, **version_record(), "torch_version": torch.__version__})
    reads = ReadFailures(len(dataset), config.max_unreadable_fraction)
    progress = _progress(config, ctx, step)
    result = TrainResult(step=step)

    while step < config.max_steps:
        started = time.perf_counter()
        terms: dict[str, float] = {}
        total = torch.zeros((), device=device)
        for micro in range(accumulation):
            batch = next(batches)
            for name, reason in batch.pop("skipped"):
                _log(log_path, {"step": step + 1, "event": "skipped", "file": name, "reason": reason})
                print(f"skipped {name}: {reason}", file=sys.stderr, flush=True)
                reads.failed(name, reason)
            batch = _to_device(batch, device)
            sync = micro == accumulation - 1 or ctx.world_size == 1
            with (nullcontext() if sync else module.no_sync()), torch.autocast(
                device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None
            ):
                out = module(**batch)
                loss = out.loss / accumulation
            scaler.scale(loss).backward()
            total += loss.detach()
            for name in ("loss_cross_entropy", "loss_mask", "loss_dice"):
                terms[name] = terms.get(name, 0.0) + float(out.loss_dict[name].detach()) / accumulation
        scaler.unscale_(optimizer)
        grad_norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_grad_norm)
                     if config.clip_grad_norm > 0 else torch.zeros(()))
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        step += 1

        loss_value = mean_over_processes(total, ctx)
        result.losses.append(loss_value)
        if step % config.log_every == 0 or step == config.max_steps:
            record = {"step": step, "loss": loss_value, **terms, "grad_norm": float(grad_norm),
                      "lr": max(group["lr"] for group in optimizer.param_groups),
                      "seconds": time.perf_counter() - started}
            _log(log_path, record)
            if progress is None and ctx.main:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()),
                      flush=True)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(loss=f"{loss_value:.3f}")
        if step % config.checkpoint_every == 0 or step == config.max_steps:
            _checkpoint(output_dir, step, model, optimizer, scheduler, ctx, config.keep_checkpoints)
        if step == config.max_steps and ctx.main:  # before the final evaluation, which may fail on bad val data
            result.model_dir = output_dir / "model"
            model.save_pretrained(result.model_dir)
            run_processor(config).save_pretrained(result.model_dir)
        if config.val_data is not None and (
            (config.eval_every and step % config.eval_every == 0) or step == config.max_steps
        ):
            try:
                result.metrics = _evaluate(model, config, ctx, device)
            except Exception as error:
                if result.model_dir is not None:
                    saved = (f"the model of step {step} is saved in {result.model_dir}; fix val_data and run "
                             f"'mask2former evaluate --model {result.model_dir}'")
                else:
                    saved = f"the latest checkpoint is in {output_dir / 'checkpoints'}; fix val_data and --resume"
                raise RuntimeError(f"evaluation at step {step} failed: {error} ({saved})") from error
            _log(log_path, {"step": step, "metrics": result.metrics})
            model.train()
    if progress is not None:
        progress.close()
    result.step = step
    result.skipped = dict(reads.files)
    if ctx.main and result.model_dir is None:  # resumed after the last step: the loop had nothing to do
        result.model_dir = output_dir / "model"
        model.save_pretrained(result.model_dir)
        run_processor(config).save_pretrained(result.model_dir)
    if ctx.world_size > 1:
        # every process returns once the model is on disk, and none closes its connections while another still
        # waits on the last collective
        dist.barrier()
    return result


def _checkpoint(output_dir: Path, step: int, model: Any, optimizer: Any, scheduler: Any, ctx: Processes,
                keep: int) -> None:
    """Every process contributes its RNG state; the main process writes the checkpoint; all wait for it."""
    states = [rng_state()]
    if ctx.world_size > 1:
        states = [None] * ctx.world_size  # type: ignore[list-item]
        dist.all_gather_object(states, rng_state())
    if ctx.main:
        save_checkpoint(output_dir, step, model, optimizer, scheduler, states, keep=keep)
    if ctx.world_size > 1:
        dist.barrier()


def _evaluate(model: Any, config: TrainConfig, ctx: Processes, device: torch.device) -> dict[str, Any]:
    from mask2former.eval.evaluate import evaluate_model

    dataset = build_dataset(config.val_data)  # type: ignore[arg-type]
    metrics = evaluate_model(model, dataset, task=config.task, processor=run_processor(config), rank=ctx.rank,
                             world_size=ctx.world_size, device=device)
    if ctx.main:
        print(json.dumps({"evaluation": metrics}, default=float), flush=True)
    return metrics


def run_processor(config: TrainConfig):
    """The image processor that evaluation uses and that is saved with the model: shortest edge = crop size."""
    from mask2former.preprocess import Mask2FormerImageProcessor

    return Mask2FormerImageProcessor(size={"shortest_edge": config.crop_size, "longest_edge": 4 * config.crop_size})


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    out = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            out[key] = value.to(device, non_blocking=True)
        else:
            out[key] = [v.to(device, non_blocking=True) for v in value]
    return out


def _progress(config: TrainConfig, ctx: Processes, start: int):
    if not (config.progress and ctx.main and sys.stderr.isatty()):
        return None
    try:
        from tqdm import tqdm
    except ImportError:
        return None
    return tqdm(total=config.max_steps, initial=start, desc="train", dynamic_ncols=True)
