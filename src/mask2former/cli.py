"""Command line: ``mask2former demo | predict | serve | train | evaluate | convert | export``. The only module that reads argv."""

from __future__ import annotations

import argparse
import json
import sys
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
    parser.add_argument("--task", choices=["panoptic", "instance", "semantic"], default="panoptic")
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/predict"))
    parser.add_argument("--format", choices=["overlay", "coco"], default="overlay",
                        help="overlay: an overlay PNG and a segments JSON per image; coco: also the COCO files that "
                             "'mask2former evaluate' reads")
    parser.add_argument("--coco-categories", metavar="GT_JSON",
                        help="a COCO JSON whose category ids (matched by label name) and image ids (matched by file "
                             "name) the COCO outputs use")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    parser.add_argument("--size", type=int, help="the processor's shortest edge; default: the model's")
    parser.add_argument("--threshold", type=float, default=0.5, help="minimum segment score")
    parser.add_argument("--mask-threshold", type=float, default=0.5, help="mask probability threshold")
    parser.add_argument("--overlap-threshold", type=float, default=0.8,
                        help="drop segments that keep less than this share of their mask after overlaps")
    parser.add_argument("--side-by-side", action="store_true", help="put the photo left of the overlay")
    parser.add_argument("--alpha", type=float, default=0.6, help="opacity of the colour fill")
    parser.add_argument("--overwrite", action="store_true", help="replace existing output files")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run_predict(args: argparse.Namespace, *, overwrite: bool | None = None) -> int:
    """``mask2former predict``: 0 when every image was segmented, 1 when some could not be read, 2 for bad inputs
    or outputs that exist. Under torchrun every process runs this on its share of the images."""
    from mask2former import distributed
    from mask2former.predict import Predictor, bundled_examples
    from mask2former.predict_folder import CocoTarget, InputError, collect_images, predict_to_folder

    if args.batch_size < 1:
        print("error: --batch-size must be at least 1.", file=sys.stderr)
        return 2
    try:
        paths = collect_images(args.inputs) if args.inputs else bundled_examples()
    except InputError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
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
        try:
            predictor = Predictor.from_pretrained(
                args.model, args.task, device=device, dtype=args.dtype, size=args.size, threshold=args.threshold,
                mask_threshold=args.mask_threshold, overlap_mask_area_threshold=args.overlap_threshold)
            target = CocoTarget.from_coco_json(args.coco_categories, predictor.id2label) \
                if args.coco_categories is not None else None
        except (OSError, ValueError) as error:  # a model that is not there, a COCO file that is not one
            print(f"error: {error}", file=sys.stderr)
            return 2
        prefix = f"[rank {ctx.rank}] " if ctx.world_size > 1 else ""
        try:
            summary = predict_to_folder(
                predictor, paths, args.output_dir, batch_size=args.batch_size, coco=args.format == "coco",
                coco_target=target, overwrite=args.overwrite if overwrite is None else overwrite,
                side_by_side=args.side_by_side, alpha=args.alpha,
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


def _add_serve_command(commands: Any) -> None:
    serve = commands.add_parser("serve", help="an HTTP API and a web page for segmenting images (needs pip install "
                                              "'mask2former[serve]'; see docs/serve.md)",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    serve.add_argument("--model", help="model directory or hub id; default: the bundled demo model")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on (0: a free one)")
    serve.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    serve.add_argument("--dtype", choices=["fp32", "fp16", "bf16"], default="fp32")
    serve.add_argument("--size", type=int, help="the processor's shortest edge; default: the model's")
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
    parser.add_argument("--data-format", choices=["coco_panoptic", "coco_instance", "semantic"])
    parser.add_argument("--images", help="image folder")
    parser.add_argument("--annotations", help="COCO JSON (panoptic or instance)")
    parser.add_argument("--masks", help="panoptic PNG folder, or semantic label PNG folder")
    parser.add_argument("--reduce-labels", action="store_true", help="semantic: 0 -> ignore, others -1 (ADE20K)")
    parser.add_argument("--class-names", help="semantic: JSON file with the class names (list or {id: name})")


def run_train(args: argparse.Namespace) -> int:
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
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from mask2former.eval import format_metrics, save_metrics

    if args.model is not None:
        import torch

        from mask2former import Mask2FormerForUniversalSegmentation
        from mask2former.eval.evaluate import evaluate_model
        from mask2former.preprocess import Mask2FormerImageProcessor
        from mask2former.train.data import build_dataset

        if args.data_format is None or args.images is None:
            raise SystemExit("evaluate --model needs --data-format and --images (and the annotation paths).")
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


def main(argv: list[str] | None = None) -> int:
    from mask2former.version import __version__

    parser = argparse.ArgumentParser(prog="mask2former", description="Mask2Former universal image segmentation.")
    parser.add_argument("--version", action="version", version=f"mask2former {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="segment the bundled example images with the bundled demo model")
    demo.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    demo.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    predict = commands.add_parser("predict", help="segment images: overlay PNGs, segment JSONs, COCO files",
                                  formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    _add_predict_arguments(predict)
    _add_serve_command(commands)

    train = commands.add_parser("train", help="train or fine-tune (single process, or every process under torchrun)")
    train.add_argument("--config", type=Path, help="YAML file of training settings (see docs/training.md)")
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override a setting, e.g. --set lr=2e-4 --set train_data.images=data/train")
    train.add_argument("--output-dir")
    train.add_argument("--max-steps", type=int)
    train.add_argument("--init-checkpoint", help="checkpoint directory or hub id to start from")
    train.add_argument("--device", choices=["auto", "cpu", "cuda"])
    train.add_argument("--resume", action="store_true", help="continue the run in --output-dir where it stopped")

    evaluate = commands.add_parser("evaluate", help="PQ / mask AP / mIoU of a model on a dataset, or of predictions "
                                                    "already on disk")
    evaluate.add_argument("--task", choices=["panoptic", "instance", "semantic"], required=True)
    evaluate.add_argument("--model", help="checkpoint directory or hub id (omit to score --predictions on disk)")
    _add_data_arguments(evaluate)
    evaluate.add_argument("--predictions", help="panoptic: predictions JSON; instance: COCO results JSON")
    evaluate.add_argument("--prediction-dir", help="panoptic: prediction PNG folder; semantic: predicted label PNGs")
    evaluate.add_argument("--batch-size", type=int, default=1)
    evaluate.add_argument("--device")
    evaluate.add_argument("--output", type=Path, help="write the metrics as JSON here")
    add_convert_parser(commands)
    add_export_parser(commands)
    args = parser.parse_args(argv)

    if args.command == "demo":
        print("NOTE: the demo model is a small Mask2Former this project trained from scratch on synthetic shapes "
              "(recipes/demo_model.yaml):\nit knows circles, squares, triangles, sky, grass and water, not real "
              "photos. For those use an official checkpoint:\n  mask2former predict IMAGES --model "
              "facebook/mask2former-swin-tiny-coco-panoptic --output-dir DIR   (see docs/predict.md)")
        demo_args = predict.parse_args(["--output-dir", str(args.output_dir), "--device", args.device,
                                        "--side-by-side"])
        return run_predict(demo_args, overwrite=True)
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
