"""Pictures of segmentations: masks blended over the photo with a fixed colour per class. Pillow and numpy only."""

from __future__ import annotations

import colorsys

import numpy as np
from PIL import Image


def class_color(label_id: int) -> tuple[int, int, int]:
    """A fixed, well-spread RGB colour for a class id (golden-ratio hue steps, so neighbours differ)."""
    hue = (label_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.75, 0.95)
    return int(r * 255), int(g * 255), int(b * 255)


def overlay_segments(image: Image.Image | np.ndarray, segmentation: np.ndarray, segments_info: list[dict],
                     alpha: float = 0.55) -> Image.Image:
    """Blend each segment of ``segmentation`` (H, W) ids over ``image`` in its class colour; segment edges darkened.

    ``segments_info`` items need ``id`` and ``label_id``; pixels whose id is not listed are left as they are.
    """
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image, dtype=np.float32)  # (H, W, 3)
    if rgb.shape[:2] != segmentation.shape:
        raise ValueError(f"segmentation {segmentation.shape} and image {rgb.shape[:2]} sizes differ.")
    colors = np.zeros((int(segmentation.max(initial=0)) + 2, 3), dtype=np.float32)  # (ids, 3)
    painted = np.zeros(len(colors), dtype=bool)
    for info in segments_info:
        if 0 <= info["id"] < len(colors):
            colors[info["id"]] = class_color(int(info["label_id"]))
            painted[info["id"]] = True
    ids = np.clip(segmentation, 0, len(colors) - 1).astype(np.int64)  # (H, W); negative ids mean "no segment"
    mask = painted[ids] & (segmentation >= 0)  # (H, W)
    out = rgb.copy()
    out[mask] = (1 - alpha) * rgb[mask] + alpha * colors[ids[mask]]
    edges = np.zeros_like(mask)
    edges[:-1] |= segmentation[:-1] != segmentation[1:]
    edges[:, :-1] |= segmentation[:, :-1] != segmentation[:, 1:]
    out[edges] *= 0.35
    return Image.fromarray(out.clip(0, 255).astype(np.uint8))
