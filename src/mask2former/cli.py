"""Command line: ``mask2former demo`` (more commands arrive with predict/train/evaluate). The only module that reads argv."""

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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mask2former", description="Mask2Former universal image segmentation.")
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="segment the bundled example images end to end (random-weight model)")
    demo.add_argument("--output-dir", type=Path, default=Path("outputs/demo"))
    demo.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    if args.command == "demo":
        written = run_demo(args.output_dir, seed=args.seed)
        print("NOTE: the demo model has random weights (a trained demo model is not bundled yet); the overlays show")
        print("the pipeline running end to end, not meaningful segments.")
        for path in written:
            print(f"wrote {path}")
        print(f"checkpoint and segment lists are in {args.output_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
