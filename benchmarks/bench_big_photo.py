"""A big photo through ``mask2former predict``'s steps: the model (processor + network + post-processing), then
drawing the overlay and saving its PNG; times and the drawing's peak memory.

The issue's target: drawing + saving take at most 25% of the model's time at the default processor size (800 / 1333)
of a Swin-T COCO panoptic model. The model has random weights of the official size (its time does not depend on the
weights) and runs at the default threshold; random weights find no segment there, so the model time is the network
and pre-processing with little post-processing (a real model's is longer: the ratio here is on the safe side). The
drawing gets a panoptic map of ``--segments`` irregular segments (some void) of the photo's size instead.

Three ways to draw and save are compared, round after round in one process (the machine is shared: each round's
ratio uses that round's model time, and medians are reported):

- ``default``: ``predict``'s defaults: overlay at most 2048 pixels along its longer side, painted in bands of rows,
  PNG zlib level 1;
- ``full size``: the same at the photo's size (``--overlay-size 0``);
- ``plain``: the photo's size, the whole-image reference painter, Pillow's default PNG level (how ``predict`` drew
  before).

Peak memory: each way once more in a child process, which samples its RSS every 5 ms while drawing and saving.

    python benchmarks/bench_big_photo.py                      # 6000x4000, Swin-T, 3 rounds
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

WAYS = {"default": dict(max_side=2048, plain=False), "full size": dict(max_side=0, plain=False),
        "plain": dict(max_side=0, plain=True)}


def synthetic_photo(path: Path, width: int, height: int, seed: int = 0) -> None:
    """A JPEG with smooth regions and texture (what a camera gives, compressed like one)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height:8, 0:width:8].astype(np.float32)  # a coarse grid, upsampled below
    channels = [np.sin(x / (150 + 40 * c) + c) * np.cos(y / (110 + 30 * c)) * 90 + 128 for c in range(3)]
    small = np.stack(channels, axis=2).clip(0, 255).astype(np.uint8)
    photo = Image.fromarray(small).resize((width, height), Image.BILINEAR)
    noise = rng.integers(-12, 13, (height, width, 1), dtype=np.int16)
    pixels = (np.asarray(photo, dtype=np.int16) + noise).clip(0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path, quality=90)


def segment_map(height: int, width: int, count: int, seed: int = 0) -> np.ndarray:
    """(H, W) int64 ids 1..count: each pixel of a coarse grid takes its nearest of ``count`` random seeds (blocks of
    8 pixels, so borders are ragged); about a tenth of the seeds leave void (0)."""
    rng = np.random.default_rng(seed)
    h, w = -(-height // 8), -(-width // 8)
    seeds = rng.uniform(0, 1, (count, 2)) * (h, w)  # (S, 2)
    y, x = np.mgrid[0:h, 0:w]
    distance = (y[..., None] - seeds[:, 0]) ** 2 + (x[..., None] - seeds[:, 1]) ** 2  # (h, w, S)
    nearest = distance.argmin(-1) + 1  # (h, w)
    nearest[np.isin(nearest, rng.choice(np.arange(1, count + 1), max(1, count // 10), replace=False))] = 0
    return np.repeat(np.repeat(nearest, 8, axis=0), 8, axis=1)[:height, :width].astype(np.int64)


def draw_and_save(image: Image.Image, prediction, path: Path, max_side: int, plain: bool) -> tuple[float, float]:
    """(draw seconds, save seconds) of one overlay the way ``predict_to_folder`` makes it."""
    from mask2former.predict import draw_prediction, save_overlay

    start = time.perf_counter()
    picture = draw_prediction(image, prediction, max_side=max_side, plain=plain)
    middle = time.perf_counter()
    save_overlay(picture, path, plain=plain)
    return middle - start, time.perf_counter() - middle


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def memory_child(work: Path, way: str, segments: int) -> None:
    """Child process: the peak RSS above the starting RSS while one overlay is drawn and saved; prints JSON."""
    from mask2former.predict import Prediction
    from mask2former.preprocess.read import read_image

    image = read_image(work / "photo.jpg")
    prediction = Prediction("panoptic", np.load(work / "segmentation.npy"), _segments(segments))
    start, peak, done = _rss_mib(), [0.0], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    draw_and_save(image, prediction, work / f"memory_{way.replace(' ', '_')}.png", **WAYS[way])
    done.set()
    sampler.join()
    print(json.dumps({"peak_mib": max(peak[0], _rss_mib()) - start}))


def _segments(count: int) -> list[dict]:
    return [{"id": i, "label_id": i % 7, "label": f"class {i % 7}", "score": 0.9} for i in range(1, count + 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--model-size", default="swin-tiny")
    parser.add_argument("--segments", type=int, default=40, help="segments in the drawn map")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--memory-child", nargs=2, metavar=("WORK", "WAY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        memory_child(Path(args.memory_child[0]), args.memory_child[1], args.segments)
        return

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from common import config_kwargs

    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    from mask2former.predict import Prediction, Predictor
    from mask2former.preprocess import Mask2FormerImageProcessor
    from mask2former.preprocess.read import read_image

    work = Path(tempfile.mkdtemp(prefix="big_photo_"))
    synthetic_photo(work / "photo.jpg", args.width, args.height)
    image = read_image(work / "photo.jpg")
    np.save(work / "segmentation.npy", segment_map(args.height, args.width, args.segments))
    prediction = Prediction("panoptic", np.load(work / "segmentation.npy"), _segments(args.segments))
    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config_kwargs(args.model_size))).eval()
    predictor = Predictor(model, Mask2FormerImageProcessor(), "panoptic")
    predictor([image.resize((320, 240))])  # warm-up
    print(f"{args.width}x{args.height} JPEG, {args.model_size} at the default size, {args.segments} segments drawn; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")

    rows: dict[str, list[tuple[float, float, float]]] = {way: [] for way in WAYS}  # (draw, save, ratio)
    models = []
    for round_ in range(args.rounds):
        load = os.getloadavg()[0]
        start = time.perf_counter()
        predictor([image])
        models.append(time.perf_counter() - start)
        for way, options in WAYS.items():
            draw, save = draw_and_save(image, prediction, work / "overlay.png", **options)
            rows[way].append((draw, save, (draw + save) / models[-1]))
        print(f"round {round_ + 1}: model {models[-1]:.2f} s, load {load:.1f}; "
              + "; ".join(f"{way} {sum(rows[way][-1][:2]):.2f} s" for way in WAYS), flush=True)

    print(f"\nmodel (median of {args.rounds}): {statistics.median(models):.2f} s")
    print("| drawing | draw | save | PNG | draw + save / model (median of per-round ratios) | peak RSS while drawing |")
    print("|---|---|---|---|---|---|")
    for way in WAYS:
        command = [sys.executable, __file__, "--memory-child", str(work), way, "--segments", str(args.segments)]
        peak = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)["peak_mib"]
        png = (work / f"memory_{way.replace(' ', '_')}.png").stat().st_size / 2**20
        draw, save, ratio = (statistics.median(column) for column in zip(*rows[way]))
        print(f"| {way} | {draw:.2f} s | {save:.2f} s | {png:.1f} MiB | {ratio:.0%} | +{peak:.0f} MiB |")


if __name__ == "__main__":
    main()
