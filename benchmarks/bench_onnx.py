"""ONNX export of a Swin-T Mask2Former: export time, file size, parity with PyTorch, ONNX Runtime CPU against ours.

    python benchmarks/bench_onnx.py                      # Swin-T (133 labels, 100 queries), random weights
    python benchmarks/bench_onnx.py --repeat 5 --size 800x1088

1. ``mask2former.export.export_directory`` of the model: seconds and the size of ``model.onnx``; the operators.
2. Parity: ONNX Runtime against our PyTorch (fast paths, inference mode) at batch 1, 2 and 3 on ``--parity-sizes``
   (none a multiple of 32, none the traced size): the largest class-logit difference, the largest mask-logit
   difference and the share of mask logits within 1e-4.
3. Speed at ``--size`` (batch 1): ONNX Runtime's CPU provider and our PyTorch forward, run in turn in this process
   (``--repeat`` rounds); the median times and the median per-round ratio ort / ours.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import config_kwargs, interleaved_times, load_line, ratio_summary, write_result  # noqa: E402


def parse_size(text: str) -> tuple[int, int]:
    height, width = text.lower().split("x")
    return int(height), int(width)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-size", default="swin-tiny", choices=["swin-tiny", "swin-small", "swin-base",
                                                                      "swin-large"])
    parser.add_argument("--size", default="800x1088", help="HxW of the speed comparison")
    parser.add_argument("--parity-sizes", default="301x437,389x517,517x389")
    parser.add_argument("--batches", default="1,2,3")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--output", type=Path, help="also append the results to this file")
    args = parser.parse_args()

    import onnxruntime

    from mask2former import Mask2FormerConfig, Mask2FormerForUniversalSegmentation
    from mask2former.export import OnnxRuntimeModel, export_directory
    from mask2former.export.onnx import onnx_operators

    torch.manual_seed(0)
    model = Mask2FormerForUniversalSegmentation(Mask2FormerConfig(**config_kwargs(args.model_size))).eval()
    lines = [f"## ONNX export, {args.model_size} (random weights), CPU: torch {torch.__version__} "
             f"({torch.get_num_threads()} threads), onnxruntime {onnxruntime.__version__}; {load_line()}"]
    with tempfile.TemporaryDirectory() as tmp:
        directory, _, seconds = export_directory(model, Path(tmp) / "onnx", check=False)
        size_mb = (directory / "model.onnx").stat().st_size / 1e6
        operators = onnx_operators(directory / "model.onnx")
        lines.append(f"export: {seconds:.1f} s; model.onnx {size_mb:.1f} MB")
        lines.append(f"operators ({len(operators)}): {', '.join(operators)}")
        runtime = OnnxRuntimeModel.from_pretrained(directory)

        lines.append("| batch | H x W | class logits max diff | mask logits max diff | mask logits within 1e-4 |")
        lines.append("|---|---|---|---|---|")
        for batch in (int(b) for b in args.batches.split(",")):
            for height, width in (parse_size(s) for s in args.parity_sizes.split(",")):
                pixel_values = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(batch))
                with torch.inference_mode():
                    expected = model(pixel_values)
                got = runtime(pixel_values)
                mask = (got.masks_queries_logits - expected.masks_queries_logits).abs()
                classes = (got.class_queries_logits - expected.class_queries_logits).abs()
                lines.append(f"| {batch} | {height} x {width} | {classes.max():.2e} | {mask.max():.2e} | "
                             f"{100 * (mask <= 1e-4).float().mean():.4f}% |")
                print(lines[-1], flush=True)

        height, width = parse_size(args.size)
        pixel_values = torch.randn(1, 3, height, width, generator=torch.Generator().manual_seed(0))

        def ours() -> None:
            with torch.inference_mode():
                model(pixel_values)

        times = interleaved_times({"ort": lambda: runtime(pixel_values), "ours": ours}, repeat=args.repeat)
        ort_s, ours_s, ratio = ratio_summary(times["ort"], times["ours"])
        lines.append(f"speed at 1x3x{height}x{width}: onnxruntime CPU {ort_s:.2f} s, ours (PyTorch) {ours_s:.2f} s; "
                     f"ort / ours = {ratio:.2f} (median of {args.repeat} rounds; {load_line()})")
    write_result(args.output, "\n".join(lines))


if __name__ == "__main__":
    main()
