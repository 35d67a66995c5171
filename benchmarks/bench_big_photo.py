"""A big photo through ``mask2former predict``'s steps: read, model (processor + network + post-processing), drawing
the overlay, saving the PNG and the JSON; each step's time and the drawing's peak memory.

The issue's target: drawing + saving take at most 25% of the model's time at the default processor size (800 / 1333)
of a Swin-T COCO panoptic model. The model has random weights of the official size (its time does not depend on the
weights) and runs at the default threshold; random weights find no segment there, so the model time is the network
and pre-processing with little post-processing (a real model's is longer: the ratio here is on the safe side). The
drawing gets a panoptic map of ``--segments`` irregular segments (some void) of the photo's size instead.

    python benchmarks/bench_big_photo.py                       # 6000x4000, Swin-T, 3 drawing rounds
    python benchmarks/bench_big_photo.py --plain   # also the plain drawing: whole-image painter, Pillow's PNG level

The drawing runs in a child process so that its peak RSS (``ru_maxrss`` after the inputs are loaded) is its own.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image


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


def draw_child(args: argparse.Namespace) -> None:
    """Child process: load the photo and prediction, then time drawing and saving; print JSON."""
    from mask2former.predict import Prediction, draw_prediction

    try:
        from mask2former.predict import save_overlay
    except ImportError:  # before the fast drawing: Pillow's default PNG compression
        def save_overlay(picture, path, plain=False):
            picture.save(path)
    from mask2former.preprocess.read import read_image

    work = Path(args.work)
    image = read_image(work / "photo.jpg")
    segmentation = np.load(work / "segmentation.npy")
    segments = [{"id": i, "label_id": i % 7, "label": f"class {i % 7}", "score": 0.9}
                for i in range(1, args.segments + 1)]
    prediction = Prediction("panoptic", segmentation, segments)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    draws, saves = [], []
    for _ in range(args.rounds):
        start = time.perf_counter()
        options = {"plain": True} if args.plain else {}
        picture = draw_prediction(image, prediction, side_by_side=args.side_by_side, **options)
        middle = time.perf_counter()
        save_overlay(picture, work / "overlay.png", plain=args.plain)
        end = time.perf_counter()
        draws.append(middle - start)
        saves.append(end - middle)
        del picture
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"draw": statistics.median(draws), "save": statistics.median(saves),
                      "peak_mib": (peak - base_rss) / 1024, "png_mib": (work / "overlay.png").stat().st_size / 2**20,
                      "digest": int(np.asarray(Image.open(work / "overlay.png"), dtype=np.int64).sum())}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--model-size", default="swin-tiny")
    parser.add_argument("--segments", type=int, default=40, help="segments in the drawn map")
    parser.add_argument("--rounds", type=int, default=3, help="drawing rounds (median)")
    parser.add_argument("--side-by-side", action="store_true")
    parser.add_argument("--plain", action="store_true", help="also time the plain reference drawing")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        args.work = args.child
        draw_child(args)
        return

    import torch

    sys.path.insert(0, str(Path(__file__).parent))
    from common import config_kwargs

    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    from mask2former.predict import Predictor
    from mask2former.preprocess import Mask2FormerImageProcessor
    from mask2former.preprocess.read import read_image

    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, load {os.getloadavg()[0]:.1f}")
    work = Path(tempfile.mkdtemp(prefix="big_photo_"))
    synthetic_photo(work / "photo.jpg", args.width, args.height)
    start = time.perf_counter()
    image = read_image(work / "photo.jpg")
    read_s = time.perf_counter() - start

    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config_kwargs(args.model_size))).eval()
    predictor = Predictor(model, Mask2FormerImageProcessor(), "panoptic")
    predictor([image.resize((320, 240))])  # warm-up
    start = time.perf_counter()
    predictor([image])
    model_s = time.perf_counter() - start
    np.save(work / "segmentation.npy", segment_map(args.height, args.width, args.segments))
    print(f"{args.width}x{args.height} JPEG, {args.model_size} at the default size: read {read_s:.2f} s, model "
          f"{model_s:.2f} s; drawing {args.segments} segments")

    for plain in ([True, False] if args.plain else [False]):
        command = [sys.executable, __file__, "--child", str(work), "--rounds", str(args.rounds), "--segments",
                   str(args.segments)]
        command += (["--plain"] if plain else []) + (["--side-by-side"] if args.side_by_side else [])
        result = json.loads(subprocess.run(command, check=True, capture_output=True, text=True).stdout)
        total = result["draw"] + result["save"]
        print(f"{'plain' if plain else 'default'} drawing: draw {result['draw']:.2f} s, save {result['save']:.2f} s "
              f"(PNG {result['png_mib']:.1f} MiB), draw + save = {total / model_s:.0%} of the model's time; "
              f"drawing peak +{result['peak_mib']:.0f} MiB RSS; pixel sum {result['digest']}")


if __name__ == "__main__":
    main()
