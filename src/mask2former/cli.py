"""Command line: ``mask2former demo | predict | serve | train | evaluate | convert | export``; the only module that
reads argv. Every failure is one ``error:`` line on stderr (``--debug`` adds the traceback); see :func:`main`."""

from __future__ import annotations

import argparse
import errno
import json
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

from mask2former.cli_convert import add_convert_parser, run_convert
from mask2former.cli_export import add_export_parser, run_export


def _add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="*", metavar="INPUT",
                        help="image files, folders (the images directly inside) or glob patterns ('data/**/*.jpg'); "
                             "none: the bundled example images")
    parser.add_argument("--model", help="model directory or hub id, or a directory written by 'mask2former export' "
                                        "(runs in onnxruntime); default: the bundled demo model")
    parser.add_argument("--task", choices=["panoptic", "instance", "semantic"], default="panoptic",
                        help="which segmentation to produce")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/predict"), help="where results are written")
    parser.add_argument("--format", choices=["overlay", "coco"], default="overlay",
                        help="overlay: an overlay PNG and a segments JSON per image; coco: also the COCO files that "
                             "'mask2former evaluate' reads")
    parser.add_argument("--coco-categories", metavar="GT_JSON",
                        help="a COCO JSON whose category ids (matched by label name) and image ids (matched by file "
                             "name) the COCO outputs use")
    parser.add_argument("--batch-size", type=_positive_int, default=1, help="images per model call")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                        help="auto: CUDA when there is one")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32", help="the model's run dtype")
    parser.add_argument("--size", type=_positive_int, help="the processor's shortest edge; default: the model's")
    parser.add_argument("--threshold", type=_fraction, default=0.5, help="minimum segment score")
    parser.add_argument("--mask-threshold", type=_fraction, default=0.5, help="mask probability threshold")
    parser.add_argument("--overlap-threshold", type=_fraction, default=0.8,
                        help="drop segments that keep less than this share of their mask after overlaps")
    parser.add_argument("--side-by-side", action="store_true", help="put the photo left of the overlay")
    parser.add_argument("--alpha", type=_fraction, default=0.6, help="opacity of the colour fill, 0 to 1")
    parser.add_argument("--overlay-size", type=_natural, default=2048, metavar="PIXELS",
                        help="longest side of the overlay PNG; bigger photos are drawn reduced (the segments JSON and "
                             "COCO files keep the photo's size); 0: the photo's size")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_predict(args: argparse.Namespace) -> int:
    """``mask2former predict``: 0 when every image was segmented, 1 when some could not be read, 2 for bad inputs
    or outputs that exist. Under torchrun every process runs this on its share of the images."""
    from mask2former import distributed
    from mask2former.predict import Predictor, bundled_examples
    from mask2former.predict_folder import CocoTarget, collect_images, predict_to_folder

    paths = collect_images(args.inputs) if args.inputs else bundled_examples()
    _check_writable(args.output_dir, "--output-dir")  # before the model runs, not after
    if args.coco_categories is not None and not Path(args.coco_categories).is_file():
        print(f"error: {args.coco_categories}: no such file (--coco-categories).", file=sys.stderr)
        return 2
    if args.device == "cuda" and not _cuda():
        print("error: --device cuda was asked for, but this machine has no CUDA device; use --device cpu.",
              file=sys.stderr)
        return 2
    ctx = distributed.join(args.device)
    try:
        device = args.device
        if ctx.world_size > 1 and args.device != "cpu" and _cuda():
            device = f"cuda:{ctx.local_rank}"
        predictor = Predictor.from_pretrained(
            args.model, args.task, device=device, dtype=args.dtype, size=args.size, threshold=args.threshold,
            mask_threshold=args.mask_threshold, overlap_mask_area_threshold=args.overlap_threshold)
        target = CocoTarget.from_coco_json(args.coco_categories, predictor.id2label) \
            if args.coco_categories is not None else None
        prefix = f"[rank {ctx.rank}] " if ctx.world_size > 1 else ""
        try:
            summary = predict_to_folder(
                predictor, paths, args.output_dir, batch_size=args.batch_size, coco=args.format == "coco",
                coco_target=target, overwrite=args.overwrite,
                side_by_side=args.side_by_side, alpha=args.alpha, overlay_max_side=args.overlay_size,
                progress=not args.no_progress and sys.stderr.isatty(),
                report=lambda message: print(prefix + message, file=sys.stderr, flush=True))
        except FileExistsError as error:
            if ctx.main:
                print(f"error: {error}", file=sys.stderr)
            return 2
    finally:
        distributed.leave(ctx)
    if ctx.main:
        _print_summary(summary)
    return 0 if summary.ok else 1


def _check_writable(folder: Path, flag: str) -> None:
    """Raise ``OSError`` when ``folder`` can neither be written nor created (a file in the way, no permission)."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(f"{flag} {folder}: {existing} is a file, not a folder; choose another {flag}.")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise PermissionError(f"{flag} {folder}: cannot write in {existing} ({error.strerror or error}); choose "
                              f"another {flag}.") from None


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _print_summary(summary: Any) -> None:
    written = summary.written if summary.num_written == len(summary.written) else []
    for path in written[:10]:
        print(f"wrote {path}")
    if len(written) > 10:
        print(f"... and {len(written) - 10} more")
    print(f"{summary.num_written} of {summary.num_inputs} images segmented; overlays (.png) and segments (.json) "
          f"are in {summary.output_dir}")
    for path in summary.coco_files:
        print(f"COCO output: {path}")
    for note in summary.notes:
        print(f"note: {note}")
    if summary.failures:
        print(f"{len(summary.failures)} image(s) could not be read and were skipped:", file=sys.stderr)
        for path, reason in summary.failures:
            print(f"  {path}: {reason}", file=sys.stderr)


# ------------------------------------------------------------------------------------------------------- serve


def _add_serve_command(commands: Any, parents: list[argparse.ArgumentParser]) -> None:
    serve = commands.add_parser("serve", help="an HTTP API and a web page for segmenting images (needs pip install "
                                              "'mask2former[serve]'; see docs/serve.md)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=parents)
    serve.add_argument("--model", help="model directory or hub id; default: the bundled demo model")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (0: a free one)")
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    serve.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    serve.add_argument("--size", type=_positive_int, help="the processor's shortest edge; default: the model's")
    serve.add_argument("--task", choices=["panoptic", "instance", "semantic"], default="panoptic",
                       help="the task of requests that do not name one")
    serve.add_argument("--max-batch", type=int, default=8, help="most images in one model call")
    serve.add_argument("--max-wait-ms", type=float, default=10.0,
                       help="how long the first request of a batch waits for others")
    serve.add_argument("--max-upload-mb", type=float, default=20.0, help="largest request body, in MB (10^6 bytes)")
    serve.add_argument("--max-pixels", type=int, default=50_000_000, help="largest image, in pixels (width x height)")
    serve.add_argument("--max-queue", type=int, default=64,
                       help="requests waiting for the model beyond which new ones get 503")


def run_serve(args: argparse.Namespace) -> int:
    """``mask2former serve``: serves until stopped (0); 2 when it cannot start (the extra is missing, a bad option,
    no such model, the port is taken)."""
    try:
        from mask2former.serve import ServeOptions, bind, serve
    except ImportError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from mask2former.predict import Predictor

    for flag, value, low in (("--max-batch", args.max_batch, 1), ("--max-wait-ms", args.max_wait_ms, 0),
                             ("--max-upload-mb", args.max_upload_mb, 1e-6), ("--max-pixels", args.max_pixels, 1),
                             ("--max-queue", args.max_queue, 1)):
        if not value >= low:
            print(f"error: {flag} must be at least {low:g} (got {value:g}).", file=sys.stderr)
            return 2
    try:
        sock = bind(args.host, args.port)  # before loading the model: a taken port fails at once
    except (OSError, OverflowError) as error:
        print(f"error: cannot listen on {args.host}:{args.port} ({error}); choose another --port or --host.",
              file=sys.stderr)
        return 2
    try:
        predictor = Predictor.from_pretrained(args.model, args.task, device=args.device, dtype=args.dtype,
                                              size=args.size)
    except (OSError, ValueError, RuntimeError) as error:
        sock.close()
        print(f"error: {error}", file=sys.stderr)
        return 2
    options = ServeOptions(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                           max_upload_bytes=int(args.max_upload_mb * 1_000_000), max_pixels=args.max_pixels,
                           max_queue=args.max_queue, model_name=args.model or "bundled demo model")
    serve(predictor, options, sock, announce=lambda message: print(message, flush=True))
    return 0


def _data_spec_from_args(args: argparse.Namespace):
    from mask2former.train.config import DataSpec

    return DataSpec(format=args.data_format, images=str(args.images), annotations=args.annotations,
                    masks=args.masks, reduce_labels=args.reduce_labels, class_names=args.class_names)


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-format", choices=["coco_panoptic", "coco_instance", "semantic"],
                        help="the dataset's layout (with --model)")
    parser.add_argument("--images", help="image folder")
    parser.add_argument("--annotations", help="COCO JSON (panoptic or instance)")
    parser.add_argument("--masks", help="panoptic PNG folder, or semantic label PNG folder")
    parser.add_argument("--reduce-labels", action="store_true", help="semantic: 0 -> ignore, others -1 (ADE20K)")
    parser.add_argument("--class-names", help="semantic: JSON file with the class names (list or {id: name})")


def run_train(args: argparse.Namespace) -> int:
    """``mask2former train``: 0 when done; 1 when done but some training files could not be read (named); 2 when it
    could not run or stopped."""
    from mask2former.train.config import load_train_config
    from mask2former.train.loop import train

    overrides = list(args.set or [])
    for flag, key in (("output_dir", "output_dir"), ("max_steps", "max_steps"), ("init_checkpoint", "init_checkpoint"),
                      ("device", "device")):
        if getattr(args, flag) is not None:
            overrides.append(f"{key}={json.dumps(getattr(args, flag))}")
    config = load_train_config(args.config, overrides)
    result = train(config, resume=args.resume)
    if result.model_dir is not None:
        print(f"trained {result.step} steps; model written to {result.model_dir}")
    if result.skipped:
        print(f"{len(result.skipped)} training file(s) could not be read and were skipped:", file=sys.stderr)
        for name, reason in result.skipped.items():
            print(f"  {name}: {reason}", file=sys.stderr)
    return 1 if result.skipped else 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mask2former.eval import format_metrics, save_metrics

    if args.output is not None:
        _check_writable(args.output.parent, "--output")

    needs = {"panoptic": ("annotations", "masks", "predictions", "prediction_dir"),
             "instance": ("annotations", "predictions"), "semantic": ("masks", "prediction_dir", "class_names")}
    missing = [name for name in needs[args.task] if getattr(args, name) is None]
    if args.model is None and missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in needs[args.task])
        raise ValueError(f"evaluate --task {args.task} of predictions on disk needs {flags} (missing: "
                         f"{', '.join('--' + name.replace('_', '-') for name in missing)}); or pass --model to "
                         "evaluate a model on a dataset.")
    if args.model is not None:
        import torch

        from mask2former import Mask2FormerForUniversalSegmentation
        from mask2former.eval.evaluate import evaluate_model
        from mask2former.preprocess import Mask2FormerImageProcessor
        from mask2former.train.data import build_dataset

        if args.data_format is None or args.images is None:
            raise ValueError("evaluate --model needs --data-format and --images (and the annotation paths).")
        device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = Mask2FormerForUniversalSegmentation.from_pretrained(args.model, device=device)
        processor = Mask2FormerImageProcessor.from_pretrained(args.model) \
            if (Path(args.model) / "preprocessor_config.json").is_file() else Mask2FormerImageProcessor()
        dataset = build_dataset(_data_spec_from_args(args))
        metrics = evaluate_model(model, dataset, task=args.task, processor=processor, batch_size=args.batch_size,
                                 device=device)
    elif args.task == "panoptic":
        from mask2former.eval import evaluate_panoptic_files

        metrics = evaluate_panoptic_files(args.annotations, args.predictions, args.masks, args.prediction_dir)
    elif args.task == "instance":
        from mask2former.eval import evaluate_instance_segmentation

        metrics = evaluate_instance_segmentation(args.annotations, args.predictions, per_class=True)
    else:
        from mask2former.eval import evaluate_semantic_folders
        from mask2former.train.config import DataSpec

        names = DataSpec("semantic", "", masks="", class_names=args.class_names).semantic_class_names()
        metrics = evaluate_semantic_folders(args.masks, args.prediction_dir, len(names),
                                            reduce_labels=args.reduce_labels, class_names=names)
    print(format_metrics(metrics, title=f"{args.task} evaluation"))
    if args.output is not None:
        save_metrics(metrics, args.output)
        print(f"metrics written to {args.output}")
    return 0


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``error: ... (see 'mask2former predict --help')``, exit status 2."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"error: {message} (see '{self.prog} --help').\n")


def _fraction(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, got {text}")
    return value


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if value != value:
        raise argparse.ArgumentTypeError("must be a number, got nan")
    return value


def _whole_number(text: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {text}")
    return value


def _natural(text: str) -> int:
    return _whole_number(text, 0)


def _positive_int(text: str) -> int:
    return _whole_number(text, 1)


def build_parser() -> argparse.ArgumentParser:
    """Every command and option of ``mask2former``; defaults are shown in each command's ``--help``."""
    from mask2former.version import __version__

    formatter = argparse.ArgumentDefaultsHelpFormatter
    debug = _Parser(add_help=False)
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                       help="on failure, print the full traceback after the error line")
    parser = _Parser(prog="mask2former", description="Mask2Former universal image segmentation.", parents=[debug],
                     formatter_class=formatter)
    parser.add_argument("--version", action="version", version=f"mask2former {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    demo = commands.add_parser("demo", help="segment the bundled example images with the bundled demo model",
                               parents=[debug], formatter_class=formatter)
    demo.add_argument("--output-dir", type=Path, default=Path("outputs/demo"), help="where results are written")
    demo.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto", help="auto: CUDA when there is one")
    demo.add_argument("--overwrite", action="store_true", help="replace the files of an earlier demo run")
    predict = commands.add_parser("predict", help="segment images: overlay PNGs, segment JSONs, COCO files",
                                  parents=[debug], formatter_class=formatter)
    _add_predict_arguments(predict)
    demo.set_defaults(predict_parser=predict)
    _add_serve_command(commands, [debug])

    train = commands.add_parser("train", help="train or fine-tune (single process, or every process under torchrun)",
                                parents=[debug], formatter_class=formatter)
    train.add_argument("--config", type=Path, help="YAML file of training settings (see docs/finetuning.md)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a setting, e.g. --set lr=2e-4 --set train_data.images=data/train")
    train.add_argument("--output-dir", help="where the run is written (default: the config's output_dir)")
    train.add_argument("--max-steps", type=_positive_int, help="steps to train (default: the config's max_steps)")
    train.add_argument("--init-checkpoint", help="checkpoint directory or hub id to start from")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default: the config's device (auto)")
    train.add_argument("--resume", action="store_true", help="continue the run in --output-dir where it stopped")

    evaluate = commands.add_parser("evaluate", help="PQ / mask AP / mIoU of a model on a dataset, or of predictions "
                                                    "already on disk", parents=[debug], formatter_class=formatter)
    evaluate.add_argument("--task", choices=["panoptic", "instance", "semantic"], required=True,
                          help="panoptic (PQ), instance (mask AP) or semantic (mIoU)")
    evaluate.add_argument("--model", help="checkpoint directory or hub id (omit to score --predictions on disk)")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--predictions", help="panoptic: predictions JSON; instance: COCO results JSON")
    evaluate.add_argument("--prediction-dir", help="panoptic: prediction PNG folder; semantic: predicted label PNGs")
    evaluate.add_argument("--batch-size", type=_positive_int, default=1, help="images per model call (--model)")
    evaluate.add_argument("--device", help="cpu or cuda (--model); default: CUDA when there is one")
    evaluate.add_argument("--output", type=Path, help="write the metrics as JSON here")
    add_convert_parser(commands, [debug])
    add_export_parser(commands, [debug])
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Exit status: 0 done; 1 done, but some inputs were skipped (named on stderr); 2 nothing or
    not everything done, with one ``error:`` line that names the culprit (``--debug`` adds the traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("error: interrupted.", file=sys.stderr)
        return 130
    except SystemExit as stop:  # a command that stops with a message
        if isinstance(stop.code, str):
            print(f"error: {stop.code}", file=sys.stderr)
            return 2
        raise
    except Exception as error:  # noqa: BLE001 - every failure becomes one line; --debug shows where it came from
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"error: {describe_error(error)}", file=sys.stderr)
        return 2


def describe_error(error: BaseException) -> str:
    """One line for an exception: our own messages as they are; an ``OSError`` from the operating system with its
    file; anything else with its type and the hint to rerun with ``--debug`` (it is a bug, or a case we missed)."""
    if isinstance(error, OSError) and error.filename is not None and str(error).startswith("[Errno"):
        what = {errno.ENOENT: "no such file or folder", errno.EACCES: "permission denied",
                errno.EROFS: "the file system is read-only", errno.ENOSPC: "no space left on the device",
                errno.EISDIR: "is a folder, not a file", errno.ENOTDIR: "a part of the path is not a folder",
                }.get(error.errno or 0, error.strerror or str(error))
        hint = " (choose a place you can write to)" if error.errno in (errno.EACCES, errno.EROFS, errno.ENOSPC) else ""
        return f"{error.filename}: {what}{hint}."
    ours = type(error).__module__.startswith("mask2former")  # raised with a message written for the user
    if ours or isinstance(error, (ValueError, OSError, ImportError)):
        return str(error).strip() or type(error).__name__
    return (f"{type(error).__name__}: {error} -- this is unexpected; rerun with --debug for the traceback and report "
            "it.")


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        print("NOTE: the demo model is a small Mask2Former this project trained from scratch on synthetic shapes "
              "(recipes/demo_model.yaml):\nit knows circles, squares, triangles, sky, grass and water, not real "
              "photos. For those use an official checkpoint:\n  mask2former predict IMAGES --model "
              "facebook/mask2former-swin-tiny-coco-panoptic --output-dir DIR   (see docs/predict.md)")
        demo_args = args.predict_parser.parse_args(["--output-dir", str(args.output_dir), "--device", args.device,
                                        "--side-by-side", *(["--overwrite"] if args.overwrite else [])])
        return run_predict(demo_args)
    if args.command == "predict":
        return run_predict(args)
    if args.command == "serve":
        return run_serve(args)
    if args.command == "train":
        return run_train(args)
    if args.command == "convert":
        return run_convert(args)
    if args.command == "export":
        return run_export(args)
    return run_evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
