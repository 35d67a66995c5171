"""A synthetic COCO-format dataset of shapes on textured backgrounds, for tests and a learnable demo.

Each scene has two or three stuff bands (sky, grass, water) separated by wavy curves, and a few thing objects
(circle, square, triangle) in class-typical colours with per-object variation, occluding each other and often cut by
the border. Some scenes hold a crowd (a cluster of small circles marked ``iscrowd``) and an unlabelled grey blotch
(void). Visible fragments of objects smaller than ``min_area`` pixels are void too. Everything is a function of the
seed: image ``i`` is drawn from ``numpy.random.default_rng((seed, i))``.

Written files (``ROOT`` is the output folder)::

    ROOT/images/000000.jpg       RGB images (or .png)
    ROOT/panoptic/000000.png     COCO panoptic PNGs, id = R + 256 G + 256^2 B, 0 = void
    ROOT/panoptic.json           COCO panoptic JSON (categories with isthing)
    ROOT/instances.json          COCO instance JSON of the thing segments (uncompressed RLE), optional
    ROOT/semantic/000000.png     label PNGs with contiguous ids (categories ordered by id), 255 = void, optional
    ROOT/id2label.json           contiguous id -> name for the label PNGs

Command line: ``python -m mask2former.data.synthetic ROOT --num-images N --seed S``.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from .formats import PathLike, mask_bbox, mask_to_uncompressed_rle, write_label_png, write_panoptic_png

# (id, name, isthing, base RGB); ids are deliberately not contiguous
CATEGORIES: tuple[tuple[int, str, bool, tuple[int, int, int]], ...] = (
    (1, "circle", True, (215, 45, 40)),
    (2, "square", True, (235, 200, 35)),
    (3, "triangle", True, (140, 55, 200)),
    (10, "sky", False, (135, 190, 240)),
    (11, "grass", False, (60, 145, 50)),
    (12, "water", False, (25, 85, 130)),
)
THING_IDS = tuple(c[0] for c in CATEGORIES if c[2])
STUFF_IDS = tuple(c[0] for c in CATEGORIES if not c[2])
_COLOURS = {c[0]: np.array(c[3], dtype=np.float32) for c in CATEGORIES}
_LABEL_OF = {category_id: label for label, category_id in enumerate(sorted(c[0] for c in CATEGORIES))}  # contiguous
_VOID = -1  # owner value of unlabelled pixels while painting


@dataclass(frozen=True)
class SyntheticDataset:
    """Paths written by :func:`generate_synthetic_dataset`."""

    root: Path
    image_dir: Path
    panoptic_json: Path
    panoptic_dir: Path
    instances_json: Path | None
    semantic_dir: Path | None
    id2label_json: Path


@dataclass
class _Segment:
    category_id: int | None  # None: void
    iscrowd: bool
    mask: np.ndarray  # (H, W) bool, before occlusion


def _shape_mask(kind: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """(H, W) bool mask of a circle, square or triangle of radius ``r`` rotated by ``angle``."""
    u = (xx - cx) * np.cos(angle) + (yy - cy) * np.sin(angle)  # (H, W) object frame
    v = -(xx - cx) * np.sin(angle) + (yy - cy) * np.cos(angle)
    if kind == "circle":
        return u**2 + v**2 <= r**2
    if kind == "square":
        half = 0.85 * r
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    # equilateral triangle with circumradius r: inside the three edges at distance r / 2 from the centre
    inside = np.ones(xx.shape, dtype=bool)
    for normal in (np.pi / 2, np.pi / 2 + 2 * np.pi / 3, np.pi / 2 + 4 * np.pi / 3):
        inside &= u * np.cos(normal) + v * np.sin(normal) <= r / 2
    return inside


def _stuff_texture(category_id: int, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float texture of a stuff class."""
    height, width = xx.shape
    base = _COLOURS[category_id] + rng.uniform(-15, 15, 3)
    noise = rng.normal(0, 6, (height, width, 1))
    if category_id == 10:  # sky: vertical gradient
        shade = (yy / height - 0.5)[..., None] * np.array([40, 30, 10])
    elif category_id == 11:  # grass: speckled blades
        shade = rng.normal(0, 18, (height, width, 1)) * np.array([0.6, 1.0, 0.4])
    else:  # water: horizontal ripples
        phase, freq = rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 0.6)
        shade = (12 * np.sin(freq * yy + 0.15 * np.sin(0.1 * xx) + phase))[..., None] * np.array([0.5, 1.0, 1.2])
    return base + shade + noise


def _thing_texture(category_id: int, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float texture of a thing: class colour with a per-object shift and a linear shading."""
    height, width = xx.shape
    base = _COLOURS[category_id] + rng.uniform(-25, 25, 3)
    direction = rng.uniform(0, 2 * np.pi)
    shading = 25 * ((xx * np.cos(direction) + yy * np.sin(direction)) / max(height, width) - 0.5)  # (H, W)
    return base + shading[..., None] + rng.normal(0, 4, (height, width, 1))


def _stuff_layout(height: int, width: int, xx: np.ndarray, rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """Two or three stuff classes as bands from top to bottom split by wavy curves: [(category id, mask)]."""
    count = int(rng.integers(2, len(STUFF_IDS) + 1))
    order = [STUFF_IDS[i] for i in rng.permutation(len(STUFF_IDS))[:count]]
    yy_rows = np.arange(height)[:, None] + 0.5  # (H, 1)
    band = np.zeros((height, width), dtype=np.int64)
    for base in np.sort(rng.uniform(0.25, 0.75, count - 1)) * height:
        amplitude = rng.uniform(0.02, 0.1) * height
        frequency, phase = rng.uniform(0.5, 2.5) * 2 * np.pi / width, rng.uniform(0, 2 * np.pi)
        slope = rng.uniform(-0.2, 0.2)
        curve = base + slope * (xx[0] - width / 2) + amplitude * np.sin(frequency * xx[0] + phase)  # (W,)
        band += yy_rows > curve[None, :]
    return [(category_id, band == index) for index, category_id in enumerate(order)]


def _scene(
    height: int, width: int, rng: np.random.Generator, max_objects: int, crowd_prob: float, void_prob: float
) -> tuple[np.ndarray, list[_Segment]]:
    """Paint one scene; returns the (H, W, 3) float image and its segments in painting order (later occlude earlier)."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64) + 0.5  # (H, W) pixel centres
    image = np.zeros((height, width, 3))
    segments: list[_Segment] = []
    for category_id, mask in _stuff_layout(height, width, xx, rng):
        image[mask] = _stuff_texture(category_id, xx, yy, rng)[mask]
        segments.append(_Segment(category_id, False, mask))
    side = min(height, width)
    if rng.random() < void_prob:  # an unlabelled grey blotch on the background
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        mask = _shape_mask("circle", xx, yy, cx, cy, rng.uniform(0.06, 0.15) * side, 0.0)
        mask &= rng.random((height, width)) < 0.9  # ragged edge
        image[mask] = rng.uniform(100, 160) + rng.normal(0, 10, (int(mask.sum()), 1))
        segments.append(_Segment(None, False, mask))
    things = []
    for _ in range(int(rng.integers(1, max_objects + 1))):
        category_id = THING_IDS[int(rng.integers(len(THING_IDS)))]
        things.append((category_id, False))
    if rng.random() < crowd_prob:
        things.insert(int(rng.integers(len(things) + 1)), (THING_IDS[0], True))
    for category_id, iscrowd in things:
        kind = dict(zip(THING_IDS, ("circle", "square", "triangle")))[category_id]
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        if iscrowd:  # a cluster of small circles forming one crowd region
            mask = np.zeros((height, width), dtype=bool)
            for _ in range(int(rng.integers(4, 8))):
                px, py = cx + rng.normal(0, 0.08 * side), cy + rng.normal(0, 0.08 * side)
                mask |= _shape_mask("circle", xx, yy, px, py, rng.uniform(0.025, 0.05) * side, 0.0)
        else:
            radius = rng.uniform(0.1, 0.28) * side
            mask = _shape_mask(kind, xx, yy, cx, cy, radius, rng.uniform(0, 2 * np.pi))
        image[mask] = _thing_texture(category_id, xx, yy, rng)[mask]
        segments.append(_Segment(category_id, iscrowd, mask))
    return image, segments


def _label_scene(
    segments: list[_Segment], height: int, width: int, rng: np.random.Generator, min_area: int
) -> tuple[np.ndarray, np.ndarray, list[dict[str, Any]], list[np.ndarray]]:
    """Visible segments of a painted scene: (H, W) panoptic ids, (H, W) semantic labels, segments_info, visible masks.

    Segment ids are distinct random values in [1, 256^3) so that all three PNG channels are used.
    """
    owner = np.full((height, width), _VOID, dtype=np.int64)  # index of the visible segment per pixel
    for number, segment in enumerate(segments):
        owner[segment.mask] = number
    ids = np.zeros((height, width), dtype=np.int32)
    semantic = np.full((height, width), 255, dtype=np.uint8)
    segment_ids = rng.choice(np.arange(1, 256**3), size=len(segments), replace=False)
    segments_info, visible_masks = [], []
    for number, segment in enumerate(segments):
        visible = owner == number
        area = int(visible.sum())
        if segment.category_id is None or area < min_area:
            continue  # void: the blotch and fragments too small to label
        ids[visible] = segment_ids[number]
        semantic[visible] = _LABEL_OF[segment.category_id]
        segments_info.append(
            {
                "id": int(segment_ids[number]),
                "category_id": segment.category_id,
                "iscrowd": int(segment.iscrowd),
                "area": area,
                "bbox": mask_bbox(visible),
            }
        )
        visible_masks.append(visible)
    return ids, semantic, segments_info, visible_masks


def generate_synthetic_dataset(
    root: PathLike,
    num_images: int,
    seed: int = 0,
    min_size: int = 128,
    max_size: int = 256,
    max_objects: int = 5,
    crowd_prob: float = 0.2,
    void_prob: float = 0.3,
    min_area: int = 24,
    image_format: str = "jpg",
    write_instances: bool = True,
    write_semantic: bool = True,
) -> SyntheticDataset:
    """Write ``num_images`` synthetic scenes as a COCO panoptic dataset (plus instance JSON and label PNGs) to ``root``.

    Image sides are drawn uniformly from [min_size, max_size]. The same seed gives the same files.
    """
    if image_format not in ("jpg", "png"):
        raise ValueError(f"image_format must be 'jpg' or 'png', got {image_format!r}")
    root = Path(root)
    image_dir, panoptic_dir = root / "images", root / "panoptic"
    semantic_dir = root / "semantic" if write_semantic else None
    for folder in (image_dir, panoptic_dir, semantic_dir):
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)
    images, panoptic_annotations, instance_annotations = [], [], []
    for index in range(num_images):
        rng = np.random.default_rng((seed, index))
        height, width = (int(v) for v in rng.integers(min_size, max_size + 1, 2))
        pixels, segments = _scene(height, width, rng, max_objects, crowd_prob, void_prob)
        ids, semantic, segments_info, visible_masks = _label_scene(segments, height, width, rng, min_area)
        stem = f"{index:06d}"
        images.append({"id": index, "file_name": f"{stem}.{image_format}", "height": height, "width": width})
        image = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8))
        image.save(image_dir / images[-1]["file_name"], **({"quality": 95} if image_format == "jpg" else {}))
        write_panoptic_png(panoptic_dir / f"{stem}.png", ids)
        if semantic_dir is not None:
            write_label_png(semantic_dir / f"{stem}.png", semantic)
        panoptic_annotations.append({"image_id": index, "file_name": f"{stem}.png", "segments_info": segments_info})
        for info, visible in zip(segments_info, visible_masks):
            if info["category_id"] in THING_IDS:
                rle = mask_to_uncompressed_rle(visible)
                annotation = {**info, "id": len(instance_annotations) + 1, "image_id": index, "segmentation": rle}
                instance_annotations.append(annotation)

    header = {"info": {"description": f"mask2former synthetic shapes, seed {seed}", "version": "1.0"}, "licenses": []}
    categories = [
        {"id": cid, "name": name, "isthing": int(isthing), "color": list(colour), "supercategory": "shape"}
        for cid, name, isthing, colour in CATEGORIES
    ]
    panoptic_json = root / "panoptic.json"
    _write_json(
        panoptic_json, {**header, "images": images, "annotations": panoptic_annotations, "categories": categories}
    )
    instances_json = None
    if write_instances:
        instances_json = root / "instances.json"
        things = [{k: v for k, v in c.items() if k != "isthing"} for c in categories if c["isthing"]]
        _write_json(
            instances_json, {**header, "images": images, "annotations": instance_annotations, "categories": things}
        )
    id2label_json = root / "id2label.json"
    _write_json(id2label_json, {str(_LABEL_OF[cid]): name for cid, name, _, _ in CATEGORIES})
    return SyntheticDataset(root, image_dir, panoptic_json, panoptic_dir, instances_json, semantic_dir, id2label_json)


def _write_json(path: Path, data: Any) -> None:
    with open(path, "w", encoding="utf-8") as file:
        json.dump(data, file)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic COCO panoptic / instance / semantic dataset.")
    parser.add_argument("root", type=Path, help="output folder")
    parser.add_argument("--num-images", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-size", type=int, default=128)
    parser.add_argument("--max-size", type=int, default=256)
    parser.add_argument("--max-objects", type=int, default=5)
    parser.add_argument("--image-format", choices=("jpg", "png"), default="jpg")
    parser.add_argument("--no-instances", action="store_true", help="skip instances.json")
    parser.add_argument("--no-semantic", action="store_true", help="skip the label PNGs")
    args = parser.parse_args(argv)
    paths = generate_synthetic_dataset(
        args.root,
        args.num_images,
        args.seed,
        min_size=args.min_size,
        max_size=args.max_size,
        max_objects=args.max_objects,
        image_format=args.image_format,
        write_instances=not args.no_instances,
        write_semantic=not args.no_semantic,
    )
    print(f"wrote {args.num_images} images to {paths.root}")


if __name__ == "__main__":
    main()
