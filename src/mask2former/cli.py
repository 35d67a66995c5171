"""Command line: ``mask2former demo | train | evaluate``. The only module that reads argv."""

from __future__ import annotations

import argparse
import json
import sys
from importlib import resources
from pathlib import Path

DEMO_LABELS = {0: "sky", 1: "grass", 2: "circle", 3: "square", 4: "triangle"}


def _demo_config():
    from mask2former import Mask2FormerConfig

    backbone = dict(embed_dim=32, depths=[2, 2, 2, 2], num_heads=[1, 2, 4, 8], window_size=7, drop_path_rate=0.0,
                    out_features=["stage1", "stage2", "stage3", "stage4"])
    return Mask2FormerConfig(backbone_config=backbone, feature_size=64, mask_feature_size=64, hidden_dim=64,
                             encoder_feedforward_dim=128, dim_feedforward=256, num_attention_heads=4,
                             encoder_layers=2, decoder_layers=4, num_queries=20, id2label=DEMO_LABELS)


def run_demo(output_dir: Path, seed: int = 0) -> list[Path]:
    """Segment the bundled example images with a small checkpoint created on the spot; return the overlay paths.

    The checkpoint has RANDOM weights (no trained demo model ships yet): the pictures show the pipeline working end
    to end (checkpoint written and read back, preprocessing, model, panoptic post-processing, overlay), not a
    meaningful segmentation.
    """
    import numpy as np
    import torch
    from PIL import Image

    from mask2former import Mask2FormerForUniversalSegmentation
    from mask2former.processing import Mask2FormerImageProcessor
    from mask2former.visualize import overlay_segments

    output_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = output_dir / "checkpoint"
    torch.manual_seed(seed)
    Mask2FormerForUniversalSegmentation(_demo_config()).save_pretrained(checkpoint)
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 256, "longest_edge": 512})
    processor.save_pretrained(checkpoint)

    model = Mask2FormerForUniversalSegmentation.from_pretrained(checkpoint)
    processor = Mask2FormerImageProcessor.from_pretrained(checkpoint)
    examples = sorted(p for p in resources.files("mask2former.assets.examples").iterdir() if p.name.endswith(".jpg"))
    written = []
    for example in examples:
        image = Image.open(example).convert("RGB")  # type: ignore[arg-type]
        inputs = processor(image, return_tensors="pt")
        with torch.no_grad():
            outputs = model(**inputs)
        result = processor.post_process_panoptic_segmentation(
            outputs, threshold=0.0, target_sizes=[(image.height, image.width)]
        )[0]
        segmentation = result["segmentation"].cpu().numpy().astype(np.int64)
        overlay = overlay_segments(image, segmentation, result["segments_info"])
        stem = Path(example.name).stem
        overlay.save(output_dir / f"{stem}_panoptic.png")
        segments = [
            {**info, "label": model.config.id2label[int(info["label_id"])],
             "area": int((segmentation == info["id"]).sum())}
            for info in result["segments_info"]
        ]
        (output_dir / f"{stem}_segments.json").write_text(json.dumps(segments, indent=2, default=float))
        written.append(output_dir / f"{stem}_panoptic.png")
    return written


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
        from mask2former.processing import Mask2FormerImageProcessor
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
    parser = argparse.ArgumentParser(prog="mask2former", description="Mask2Former universal image segmentation.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="segment the bundled example images end to end (random-weight model)")
    demo.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    demo.add_argument("--seed", type=int, default=0)

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
    args = parser.parse_args(argv)

    if args.command == "demo":
        written = run_demo(args.output_dir, seed=args.seed)
        print("NOTE: the demo model has random weights (a trained demo model is not bundled yet); the overlays show")
        print("the pipeline running end to end, not meaningful segments.")
        for path in written:
            print(f"wrote {path}")
        print(f"checkpoint and segment lists are in {args.output_dir}")
        return 0
    if args.command == "train":
        return run_train(args)
    return run_evaluate(args)


if __name__ == "__main__":
    sys.exit(main())
