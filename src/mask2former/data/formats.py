"""File formats shared by datasets and metrics: COCO panoptic PNGs, label PNGs, images, categories, RLE."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

PathLike = str | Path


@dataclass(frozen=True)
class Category:
    """One class of a dataset.

    ``label_id`` is the contiguous index the model predicts (0..K-1); ``category_id`` is the id the dataset files use
    (COCO ids are not contiguous).
    """

    label_id: int
    category_id: int
    name: str
    isthing: bool


def categories_from_coco(entries: list[dict[str, Any]], default_isthing: bool = True) -> list[Category]:
    """Contiguous categories from a COCO ``categories`` list, ordered by dataset id."""
    ordered = sorted(entries, key=lambda entry: int(entry["id"]))
    return [
        Category(
            label_id=index,
            category_id=int(entry["id"]),
            name=str(entry.get("name", entry["id"])),
            isthing=bool(entry.get("isthing", default_isthing)),
        )
        for index, entry in enumerate(ordered)
    ]


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Segment ids of a COCO panoptic PNG.

    Args:
        rgb: (H, W, 3) uint8 colours.

    Returns:
        (H, W) int32 ids ``R + 256 G + 256^2 B``.
    """
    rgb = rgb.astype(np.int32)  # (H, W, 3)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_id`: (H, W) ids in [0, 256^3) to (H, W, 3) uint8 colours."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256**3):
        raise ValueError("panoptic segment ids must lie in [0, 256**3)")
    return np.stack([ids % 256, ids // 256 % 256, ids // (256 * 256)], axis=-1).astype(np.uint8)  # (H, W, 3)


def read_panoptic_png(path: PathLike) -> np.ndarray:
    """(H, W) int32 segment ids of a COCO panoptic PNG; raises ``FileNotFoundError`` naming a missing file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"panoptic PNG not found: {path}")
    try:
        with Image.open(path) as image:
            return rgb_to_id(np.asarray(image.convert("RGB")))
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot read it as a panoptic PNG ({error}).") from None


def write_panoptic_png(path: PathLike, ids: np.ndarray) -> None:
    """Write (H, W) segment ids as a COCO panoptic PNG."""
    Image.fromarray(id_to_rgb(ids)).save(path)


def read_label_png(path: PathLike) -> np.ndarray:
    """(H, W) int64 labels of a single-channel label PNG (mode L, P or I)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label PNG not found: {path}")
    try:
        with Image.open(path) as image:
            mode = image.mode
            labels = np.asarray(image).astype(np.int64) if mode in ("L", "P", "I", "I;16") else None
    except (OSError, SyntaxError, ValueError) as error:
        raise ValueError(f"{path}: cannot read it as a label PNG ({error}).") from None
    if labels is None:
        raise ValueError(f"label PNG must have one channel, got mode {mode}: {path}")
    return labels


def write_label_png(path: PathLike, labels: np.ndarray) -> None:
    """Write (H, W) labels in [0, 255] as an 8-bit PNG."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError("label values must lie in [0, 255] for an 8-bit PNG")
    Image.fromarray(labels.astype(np.uint8), mode="L").save(path)


def read_rgb_image(path: PathLike) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels as :func:`mask2former.preprocess.read.read_image` reads them (EXIF orientation
    applied, every mode to 8-bit RGB); raises ``FileNotFoundError`` naming a missing file."""
    from mask2former.preprocess.read import read_image

    return np.asarray(read_image(path))


def read_json(path: PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"JSON file not found: {path}")
    try:
        with open(path, encoding="utf-8") as file:
            return json.load(file)
    except (ValueError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None


def mask_to_uncompressed_rle(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a (H, W) bool mask: run lengths in column-major order, starting with zeros."""
    height, width = mask.shape
    flat = np.asarray(mask, dtype=bool).T.reshape(-1)  # (W*H,) column-major
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1  # positions where a run starts
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0] + counts  # runs must start with a (possibly empty) run of zeros
    return {"size": [int(height), int(width)], "counts": [int(c) for c in counts]}


def mask_bbox(mask: np.ndarray) -> list[int]:
    """COCO ``[x, y, width, height]`` of the smallest box holding a (H, W) bool mask; zeros when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return [0, 0, 0, 0]
    return [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1)]
