"""Augmentations applied jointly to a sample's image and masks (numpy and PIL only).

Every transform is called as ``transform(sample, rng)`` with a ``numpy.random.Generator`` and returns a new sample
(see :mod:`mask2former.data.sample`). Geometry is shared: the image is resampled bilinearly by PIL and every mask by
nearest neighbour with the same pixel-centre convention, so a mask stays on the pixels it covered. Masks left empty
by a crop are dropped together with their label and crowd flag.

Recipes of the original training:

- COCO (panoptic / instance): ``Compose([RandomHorizontalFlip(), LargeScaleJitter(1024, 0.1, 2.0)])``.
- ADE20K (semantic): ``Compose([ResizeShortestEdge([256, 307, ..., 1024], 2048), RandomCrop(512, 1.0),
  ColorJitter(), RandomHorizontalFlip()])`` (shortest edges ``int(512 * x / 10)`` for x in 5..20; the original uses
  ``single_category_max_area=1.0`` for ADE20K).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image

from .sample import Sample, Transform

#: keys holding (H, W) bool maps that follow the geometry like the masks do
_PIXEL_MAP_KEYS = ("pixel_mask",)


def _pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    height, width = size
    return int(height), int(width)


def nearest_source_indices(out_len: int, in_len: int, start: int = 0, count: int | None = None) -> np.ndarray:
    """Source index of output pixels ``start .. start + count`` when resizing ``in_len`` pixels to ``out_len``.

    Output pixel ``i`` has its centre at ``i + 0.5``, which falls at ``(i + 0.5) * in_len / out_len`` in the source;
    the source pixel holding that point is taken (PIL's convention, so masks align with the bilinear image).
    """
    count = out_len - start if count is None else count
    centres = (np.arange(start, start + count) + 0.5) * (in_len / out_len)  # (count,)
    return np.minimum(centres.astype(np.int64), in_len - 1)


def resize_crop_pad(
    sample: Sample,
    resized: tuple[int, int],
    box: tuple[int, int, int, int],
    pad_to: tuple[int, int] | None = None,
    pad_value: int = 0,
) -> Sample:
    """Resize a sample to ``resized`` (H', W'), keep ``box`` = (top, left, height, width) of it, pad bottom/right.

    Only the kept box is ever computed at the new size. Padding fills the image with ``pad_value``, masks with False,
    and sets ``pixel_mask`` (True on real pixels).
    """
    image = sample["image"]
    height, width = image.shape[:2]
    new_h, new_w = resized
    top, left, box_h, box_w = box
    scale_y, scale_x = new_h / height, new_w / width
    if (new_h, new_w) == (height, width):
        out_image = image[top : top + box_h, left : left + box_w]
    else:
        # PIL resamples only the source region behind the box, with the scale of the full resize
        source_box = (left / scale_x, top / scale_y, (left + box_w) / scale_x, (top + box_h) / scale_y)
        out_image = np.asarray(Image.fromarray(image).resize((box_w, box_h), Image.BILINEAR, box=source_box))
    rows = nearest_source_indices(new_h, height, top, box_h)  # (box_h,)
    cols = nearest_source_indices(new_w, width, left, box_w)  # (box_w,)
    out = dict(sample)
    out["image"] = out_image
    masks = sample["masks"][:, rows[:, None], cols[None, :]]  # (N, box_h, box_w)
    for key in _PIXEL_MAP_KEYS:
        if key in sample:
            out[key] = sample[key][rows[:, None], cols[None, :]]
    if pad_to is not None:
        pad_h, pad_w = pad_to[0] - box_h, pad_to[1] - box_w
        if pad_h < 0 or pad_w < 0:
            raise ValueError(f"cannot pad a {box_h}x{box_w} crop to {pad_to}")
        out["image"] = np.pad(out_image, ((0, pad_h), (0, pad_w), (0, 0)), constant_values=pad_value)
        masks = np.pad(masks, ((0, 0), (0, pad_h), (0, pad_w)))
        valid = out.get("pixel_mask", np.ones((box_h, box_w), dtype=bool))
        out["pixel_mask"] = np.pad(valid, ((0, pad_h), (0, pad_w)))
    keep = masks.any(axis=(1, 2))  # (N,)
    out["masks"] = masks[keep]
    out["class_labels"] = sample["class_labels"][keep]
    out["iscrowd"] = sample["iscrowd"][keep]
    return out


def _scaled_size(height: int, width: int, scale: float) -> tuple[int, int]:
    return max(1, int(round(height * scale))), max(1, int(round(width * scale)))


class Compose:
    """Apply transforms in order with the same generator."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


class RandomHorizontalFlip:
    """Mirror image, masks and pixel mask left-right with probability ``p``."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        out = dict(sample)
        out["image"] = np.ascontiguousarray(sample["image"][:, ::-1])
        out["masks"] = np.ascontiguousarray(sample["masks"][:, :, ::-1])
        for key in _PIXEL_MAP_KEYS:
            if key in sample:
                out[key] = np.ascontiguousarray(sample[key][:, ::-1])
        return out


class LargeScaleJitter:
    """Large-scale jitter (COCO recipe): resize to a random fraction of a fixed size, random crop, pad to that size.

    The image is scaled to fit inside ``scale * output_size`` with its aspect ratio kept, ``scale`` drawn uniformly
    from [min_scale, max_scale]; a random ``output_size`` window is cut where it is larger; the result is padded at
    the bottom/right to exactly ``output_size`` (image ``pad_value``, 128 as in the original recipe; masks False;
    ``pixel_mask`` False).
    """

    def __init__(
        self,
        output_size: int | Sequence[int] = 1024,
        min_scale: float = 0.1,
        max_scale: float = 2.0,
        pad_value: int = 128,
    ):
        self.output_size = _pair(output_size)
        self.min_scale = min_scale
        self.max_scale = max_scale
        self.pad_value = pad_value

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[:2]
        out_h, out_w = self.output_size
        scale = rng.uniform(self.min_scale, self.max_scale)
        factor = min(out_h * scale / height, out_w * scale / width)
        new_h, new_w = _scaled_size(height, width, factor)
        box_h, box_w = min(new_h, out_h), min(new_w, out_w)
        top = int(rng.integers(0, new_h - box_h + 1))
        left = int(rng.integers(0, new_w - box_w + 1))
        return resize_crop_pad(sample, (new_h, new_w), (top, left, box_h, box_w), (out_h, out_w), self.pad_value)


class ResizeShortestEdge:
    """Resize so the shorter side equals a length drawn from ``min_sizes``, the longer side at most ``max_size``."""

    def __init__(self, min_sizes: int | Sequence[int], max_size: int = 2048):
        self.min_sizes = [min_sizes] if isinstance(min_sizes, int) else list(min_sizes)
        self.max_size = max_size

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[:2]
        short = self.min_sizes[int(rng.integers(len(self.min_sizes)))]
        factor = short / min(height, width)
        if max(height, width) * factor > self.max_size:
            factor = self.max_size / max(height, width)
        new_h, new_w = _scaled_size(height, width, factor)
        return resize_crop_pad(sample, (new_h, new_w), (0, 0, new_h, new_w))


class RandomCrop:
    """Random window of ``size`` (smaller where the image is smaller), no resizing.

    With ``single_category_max_area < 1``, up to ten windows are drawn until no class covers more than that fraction
    of the labelled pixels in it (the semantic recipe); crowd masks count like the others.
    """

    def __init__(self, size: int | Sequence[int], single_category_max_area: float = 1.0, max_tries: int = 10):
        self.size = _pair(size)
        self.single_category_max_area = single_category_max_area
        self.max_tries = max_tries

    def _acceptable(self, sample: Sample, top: int, left: int, box_h: int, box_w: int) -> bool:
        window = sample["masks"][:, top : top + box_h, left : left + box_w]  # (N, h, w)
        areas = window.sum(axis=(1, 2))  # (N,)
        labels = sample["class_labels"]
        per_class = np.bincount(labels, weights=areas, minlength=int(labels.max()) + 1) if labels.size else areas
        per_class = per_class[per_class > 0]
        return len(per_class) > 1 and per_class.max() < self.single_category_max_area * per_class.sum()

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[:2]
        box_h, box_w = min(self.size[0], height), min(self.size[1], width)
        for _ in range(self.max_tries):
            top = int(rng.integers(0, height - box_h + 1))
            left = int(rng.integers(0, width - box_w + 1))
            if self.single_category_max_area >= 1.0 or self._acceptable(sample, top, left, box_h, box_w):
                break
        return resize_crop_pad(sample, (height, width), (top, left, box_h, box_w))


class ColorJitter:
    """Random brightness, contrast and saturation (image only), each factor drawn from [1 - x, 1 + x]."""

    def __init__(self, brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2):
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        image = sample["image"].astype(np.float32)  # (H, W, 3)
        image *= rng.uniform(1 - self.brightness, 1 + self.brightness)
        gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W) luma
        contrast = rng.uniform(1 - self.contrast, 1 + self.contrast)
        image = gray.mean() + contrast * (image - gray.mean())
        gray = image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        saturation = rng.uniform(1 - self.saturation, 1 + self.saturation)
        image = gray[..., None] + saturation * (image - gray[..., None])
        out = dict(sample)
        out["image"] = np.clip(np.rint(image), 0, 255).astype(np.uint8)
        return out
