"""``mask2former convert``: an original Mask2Former checkpoint (detectron2 ``.pkl`` or ``.pth``) to a checkpoint
directory in our (and transformers') layout. Registered by ``cli.main``."""

from __future__ import annotations

import argparse
import pickle
import sys
from pathlib import Path


def add_convert_parser(commands: argparse._SubParsersAction, parents: list[argparse.ArgumentParser]) -> None:
    convert = commands.add_parser(
        "convert", help="convert an original Mask2Former checkpoint (model_final_*.pkl) to a checkpoint directory",
        parents=parents)
    convert.add_argument("source", metavar="SRC", help="the original checkpoint: a .pkl from the model zoo or a .pth")
    convert.add_argument("--output-dir", type=Path, required=True, help="where config.json, model.safetensors and "
                                                                        "preprocessor_config.json are written")
    convert.add_argument("--config", metavar="PRESET_OR_JSON",
                         help="a preset name (e.g. coco-panoptic-r50; see docs/original_checkpoints.md) or a "
                              "config.json; default: the preset of the zoo file's name, else read off the weights")
    convert.add_argument("--overwrite", action="store_true", help="replace those files if they exist")


def run_convert(args: argparse.Namespace) -> int:
    """0 when written; 2 when the file cannot be read safely, does not fit, or the outputs exist."""
    from mask2former.io.checkpoint import CheckpointMismatchError
    from mask2former.io.convert import convert_original_checkpoint, summary_lines

    try:
        summary = convert_original_checkpoint(args.source, args.output_dir, config=args.config,
                                              overwrite=args.overwrite)
    # an unsafe or unreadable file, a config that does not fit, outputs that exist
    except (OSError, ValueError, pickle.UnpicklingError, CheckpointMismatchError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for line in summary_lines(summary):
        print(line)
    return 0
