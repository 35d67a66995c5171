"""Forward-pass time of ours vs transformers on identical weights and inputs; checks the outputs agree first.

    python benchmarks/bench_forward.py --sizes swin-tiny:800x1088 swin-tiny:384x384 swin-large:384x384 --threads 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine_line, same_weights_pair, time_call  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=["swin-tiny:384x384", "swin-tiny:800x1088"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(machine_line())
    print(f"{'model':12} {'input':>10} {'ours s':>8} {'hf s':>8} {'ratio':>6} {'max |d| masks':>14} {'max |d| cls':>12}")
    for spec in args.sizes:
        size, hw = spec.split(":")
        height, width = (int(v) for v in hw.split("x"))
        ours, ref = same_weights_pair(size)
        ours.to(args.device)
        ref.to(args.device)
        pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0)).to(args.device)
        autocast = torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32)
        with torch.inference_mode(), autocast:
            a, b = ours(pixel_values), ref(pixel_values)
            d_mask = (a.masks_queries_logits.float() - b.masks_queries_logits.float()).abs().max().item()
            d_cls = (a.class_queries_logits.float() - b.class_queries_logits.float()).abs().max().item()
            t_ours = time_call(lambda: ours(pixel_values), repeat=args.repeat)
            t_ref = time_call(lambda: ref(pixel_values), repeat=args.repeat)
        print(f"{size:12} {hw:>10} {t_ours:8.3f} {t_ref:8.3f} {t_ours / t_ref:6.2f} {d_mask:14.1e} {d_cls:12.1e}")


if __name__ == "__main__":
    main()
