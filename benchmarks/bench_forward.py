"""Forward-pass time of ours vs transformers on identical weights and inputs; checks the outputs agree first.

    python benchmarks/bench_forward.py                       # Swin-T 800x1088 and 384x384, Swin-L 384x384, fp32
    python benchmarks/bench_forward.py --dtype bfloat16      # autocast (ours and transformers alike)
    python benchmarks/bench_forward.py --device cuda --cuda-graphs

Both models run in turn inside one process, ``--repeat`` rounds, so load from other programs slows both alike; printed
are the median times and the median of the per-round ratios. ``--cuda-graphs`` replays ours from a captured CUDA
graph (fixed input size); transformers runs eagerly.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import interleaved_times, load_line, machine_line, ratio_summary, same_weights_pair  # noqa: E402

DEFAULT_SIZES = ["swin-tiny:800x1088", "swin-tiny:384x384", "swin-large:384x384"]


def graphed_forward(model: torch.nn.Module, pixel_values: torch.Tensor, autocast) -> Callable[[], object]:
    """Capture ``model(pixel_values)`` in a CUDA graph; the returned function replays it (same input tensor)."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode(), autocast:
        for _ in range(3):  # warm up kernels and the allocator outside the capture
            model(pixel_values)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode(), autocast:
        static_output = model(pixel_values)

    def replay():
        graph.replay()
        return static_output

    return replay


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="model:HxW entries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--cuda-graphs", action="store_true", help="ours replays a captured CUDA graph (CUDA only)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(machine_line())
    print(f"device {args.device}, {args.dtype}{' (autocast)' if dtype != torch.float32 else ''}, {load_line()}")
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

        def run_ref():
            with torch.inference_mode(), autocast:
                return ref(pixel_values)

        if args.cuda_graphs and args.device.startswith("cuda"):
            run_ours = graphed_forward(ours, pixel_values, autocast)
        else:
            def run_ours():
                with torch.inference_mode(), autocast:
                    return ours(pixel_values)

        times = interleaved_times({"ours": run_ours, "ref": run_ref}, repeat=args.repeat)
        t_ours, t_ref, ratio = ratio_summary(times["ours"], times["ref"])
        print(f"{size:12} {hw:>10} {t_ours:8.3f} {t_ref:8.3f} {ratio:6.2f} {d_mask:14.1e} {d_cls:12.1e}", flush=True)
        del ours, ref
    print(f"after: {load_line()}")


if __name__ == "__main__":
    main()
