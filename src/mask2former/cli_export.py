"""``mask2former export``: a checkpoint to an ONNX directory (``model.onnx``, ``config.json``,
``preprocessor_config.json``), checked after writing. Registered by ``cli.main``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_export_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    export = commands.add_parser(
        "export", help="export a model to ONNX (standard operators; dynamic batch, height and width; needs pip "
                       "install 'mask2former[onnx]')", parents=parents)
    export.add_argument("--model", required=True, metavar="SRC", help="checkpoint directory or hub id")
    export.add_argument("--output-dir", type=Path, required=True, metavar="DIR",
                        help="where model.onnx, config.json and preprocessor_config.json are written")
    export.add_argument("--opset", type=int, default=None, help="ONNX opset (at least 16; default 18)")
    export.add_argument("--dtype", choices=["fp32", "fp16"], default="fp32", help="weights and activations")
    export.add_argument("--no-check", action="store_true",
                        help="skip the check after writing (ONNX checker, onnxruntime against PyTorch)")
    export.add_argument("--overwrite", action="store_true", help="replace DIR if it exists")


def run_export(args: argparse.Namespace) -> int:
    """0 when written (and checked); 2 for bad options, a model that is not there, or an export that failed."""
    from mask2former.export.onnx import DEFAULT_OPSET, export_directory
    from mask2former.extras import MissingExtraError

    try:
        directory, check, seconds = export_directory(
            args.model, args.output_dir, opset=args.opset or DEFAULT_OPSET, dtype=args.dtype,
            overwrite=args.overwrite, check=not args.no_check)
    except MissingExtraError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as error:  # a model that is not there, an output that exists, a bad opset
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - torch.export / torch.onnx failures: say what failed, nothing written
        print(f"error: the export failed, nothing was written to {args.output_dir}: {type(error).__name__}: "
              f"{str(error).strip().splitlines()[0] if str(error).strip() else ''}", file=sys.stderr)
        return 2
    size_mb = (directory / "model.onnx").stat().st_size / 1e6
    print(f"wrote {directory}/model.onnx ({size_mb:.1f} MB, opset {args.opset or DEFAULT_OPSET}, {args.dtype}) in "
          f"{seconds:.1f} s, with config.json and preprocessor_config.json")
    if check is not None:
        print(f"checked: ONNX checker passed; onnxruntime vs PyTorch on {check.shape}: largest difference "
              f"{check.class_max_diff:.2e} (class logits), {check.mask_max_diff:.2e} (mask logits; "
              f"{100 * check.mask_share_within_1e4:.3f}% within 1e-4)")
        print(f"operators ({len(check.operators)}): {', '.join(check.operators)}")
    return 0
