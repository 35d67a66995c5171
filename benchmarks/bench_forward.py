"""Forward-pass time of ours vs transformers on identical weights and inputs; checks the outputs agree first.

    python benchmarks/bench_forward.py                       # Swin-T 800x1088 and 384x384, Swin-L 384x384, fp32
    python benchmarks/bench_forward.py --dtype bfloat16      # autocast (ours and transformers alike)
    python benchmarks/bench_forward.py --device cuda --cuda-graphs

Both models run in turn inside one process, ``--repeat`` rounds, so load from other programs slows both alike; printed
are the median times and the median of the per-round ratios. ``--cuda-graphs`` replays ours from a captured CUDA
graph (fixed input size); transformers runs eagerly.

Agreement is checked on ``--agreement-inputs`` random inputs (default 3) and the largest difference is printed with
each input's: at large sizes a ~1e-6 rounding difference upstream can flip one bit of a masked-attention mask (a
mask logit within rounding of 0), which moves that query's later outputs by ~1e-4 on some inputs and not others.
For each input past 1e-4, the difference of transformers to itself when the image shares a batch with another is
printed below the row: the same kind of flip, from batching alone. ``--trace-inputs 1 6`` prints those inputs'
differences stage by stage (backbone, pixel decoder, each decoder prediction), showing where the outputs part.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import (  # noqa: E402
    allocator_setting, interleaved_times, load_line, machine_line, ratio_summary, same_weights_pair,
)

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


def trace_line(ours: torch.nn.Module, ref: torch.nn.Module, height: int, width: int, seed: int, device: str) -> str:
    """Max |difference| of one input's backbone maps, pixel decoder maps, each decoder prediction's masks and the
    classes, with auxiliary outputs (which change which intermediate masks ours computes, hence which bits flip)."""
    pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed)).to(device)
    flags = dict(output_hidden_states=True, output_auxiliary_logits=True)
    with torch.inference_mode():
        a, b = ours(pixel_values, **flags), ref(pixel_values, **flags)

    def diff(u: torch.Tensor, v: torch.Tensor) -> float:
        return (u.float() - v.float()).abs().max().item()

    backbone = max(diff(u, v) for u, v in zip(a.encoder_hidden_states, b.encoder_hidden_states))
    pixel = max(diff(u, v) for u, v in zip(a.pixel_decoder_hidden_states, b.pixel_decoder_hidden_states))
    layers = [diff(u["masks_queries_logits"], v["masks_queries_logits"])
              for u, v in zip(a.auxiliary_logits, b.auxiliary_logits)]
    layers.append(diff(a.masks_queries_logits, b.masks_queries_logits))
    return (f"input {seed} traced: backbone {backbone:.1e}, pixel decoder {pixel:.1e}, masks per decoder prediction "
            f"{' '.join(f'{v:.1e}' for v in layers)}, classes {diff(a.class_queries_logits, b.class_queries_logits):.1e}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", nargs="+", default=DEFAULT_SIZES, help="model:HxW entries")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--cuda-graphs", action="store_true", help="ours replays a captured CUDA graph (CUDA only)")
    parser.add_argument("--agreement-inputs", type=int, default=3,
                        help="random inputs (seeds 0..N-1) on which the outputs are compared; the first is timed")
    parser.add_argument("--trace-inputs", type=int, nargs="*", default=[],
                        help="input seeds whose differences to print stage by stage (backbone, pixel decoder, each "
                             "decoder prediction), fp32 only")
    parser.add_argument("--steady-allocator", action="store_true",
                        help="first let glibc serve blocks up to 64 MB from its heap (common.steady_allocator)")
    args = parser.parse_args()
    allocator = allocator_setting(args.steady_allocator)
    torch.set_num_threads(args.threads)
    dtype = getattr(torch, args.dtype)
    print(machine_line())
    print(allocator)
    print(f"device {args.device}, {args.dtype}{' (autocast)' if dtype != torch.float32 else ''}, {load_line()}")
    print(f"{'model':12} {'input':>10} {'ours s':>8} {'hf s':>8} {'ratio':>6} {'max |d| masks':>14} {'max |d| cls':>12}"
          f"  max |d| masks per input")
    for spec in args.sizes:
        size, hw = spec.split(":")
        height, width = (int(v) for v in hw.split("x"))
        ours, ref = same_weights_pair(size)
        ours.to(args.device)
        ref.to(args.device)
        autocast = torch.autocast(args.device, dtype=dtype, enabled=dtype != torch.float32)
        d_masks, d_classes, notes = [], [], []
        for seed in reversed(range(max(1, args.agreement_inputs))):  # seed 0 last: the timed input
            pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(seed))
            pixel_values = pixel_values.to(args.device)
            with torch.inference_mode(), autocast:
                a, b = ours(pixel_values), ref(pixel_values)
            d_masks.insert(0, (a.masks_queries_logits.float() - b.masks_queries_logits.float()).abs().max().item())
            d_classes.insert(0, (a.class_queries_logits.float() - b.class_queries_logits.float()).abs().max().item())
            if d_masks[0] > 1e-4:  # how far transformers moves from itself when the image shares a batch
                with torch.inference_mode(), autocast:
                    c = ref(torch.cat([pixel_values, torch.randn_like(pixel_values)]))
                own = (c.masks_queries_logits[:1].float() - b.masks_queries_logits.float()).abs().max().item()
                notes.append(f"input {seed}: transformers batched with another image vs alone {own:.1e}")
            del a, b
        d_mask, d_cls = max(d_masks), max(d_classes)
        for seed in args.trace_inputs:
            print(f"{'':24}{trace_line(ours, ref, height, width, seed, args.device)}", flush=True)

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
        per_input = " ".join(f"{d:.1e}" for d in d_masks)
        print(f"{size:12} {hw:>10} {t_ours:8.3f} {t_ref:8.3f} {ratio:6.2f} {d_mask:14.1e} {d_cls:12.1e}  {per_input}",
              flush=True)
        for note in notes:
            print(f"{'':24}{note}", flush=True)
        del ours, ref
    print(f"after: {load_line()}")


if __name__ == "__main__":
    main()
