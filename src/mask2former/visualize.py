"""Pictures of segmentations: masks blended over the photo, outlines, captions and legends. Pillow and numpy only.

Colours are a pure function of the label id (the same class has the same colour in every picture and every run);
instances of one class get shades of that colour, so neighbouring objects of the same class stay apart.

- :func:`draw_segmentation`: a segment-id map (panoptic or instance) with ``segments`` ``[{id, label_id, score}]``.
- :func:`draw_semantic`: a label map (one class id per pixel), with a legend by default.
- :func:`class_color`, :func:`instance_color`: the palette.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

_GOLDEN = 0.618033988749895
_SHADE_STEPS = (0, 1, -1, 2, -2)  # lightness offsets of successive instances, in units of _SHADE_DELTA
_SHADE_DELTA = 0.12
_TEXT = (255, 255, 255)
_PANEL = (255, 255, 255)
_PANEL_TEXT = (30, 30, 30)


def class_color(label_id: int) -> tuple[int, int, int]:
    """A fixed, well-spread RGB colour for a class id: golden-ratio hue steps (so neighbouring ids differ), with
    saturation and brightness varied by the id too (ids 8 or 21 apart have close hues but differ in those)."""
    hue = (label_id * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, (0.8, 0.6, 0.95)[label_id % 3], (0.95, 0.85)[label_id % 2])
    return int(r * 255), int(g * 255), int(b * 255)


def instance_color(label_id: int, instance_index: int) -> tuple[int, int, int]:
    """Shade ``instance_index`` of :func:`class_color`: shade 0 is the class colour, the next ones are alternately
    lighter and darker, and after five shades the hue moves a little, so every instance of a class differs."""
    if instance_index == 0:
        return class_color(label_id)
    r, g, b = (c / 255 for c in class_color(label_id))
    hue, lightness, saturation = colorsys.rgb_to_hls(r, g, b)
    step = _SHADE_STEPS[instance_index % len(_SHADE_STEPS)]
    turn = instance_index // len(_SHADE_STEPS)
    hue = (hue + 0.035 * turn * (-1) ** turn) % 1.0
    lightness = float(np.clip(lightness + _SHADE_DELTA * step, 0.22, 0.86))
    r, g, b = colorsys.hls_to_rgb(hue, lightness, saturation)
    return int(round(r * 255)), int(round(g * 255)), int(round(b * 255))


def text_size(height: int, width: int, scale: float = 1.0) -> int:
    """Caption font size in pixels for an image of this size: grows with the square root of its (geometric mean)
    side, so that text is legible on small pictures and not oversized on large ones (300 px: 13, 1000 px: 24)."""
    side = float(np.sqrt(height * width))
    return max(10, int(round(0.75 * np.sqrt(side) * scale)))


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)  # scalable in Pillow >= 10.1 with FreeType
    except TypeError:  # older Pillow: the fixed bitmap font
        return ImageFont.load_default()


def _boundary(segmentation: np.ndarray, thickness: int) -> np.ndarray:
    """(H, W) bool: pixels within ``thickness`` pixels (4-neighbour steps) of a pixel with another id."""
    edge = np.zeros(segmentation.shape, dtype=bool)
    for d in range(1, thickness + 1):
        vertical = segmentation[d:] != segmentation[:-d]  # (H - d, W)
        horizontal = segmentation[:, d:] != segmentation[:, :-d]  # (H, W - d)
        edge[d:] |= vertical
        edge[:-d] |= vertical
        edge[:, d:] |= horizontal
        edge[:, :-d] |= horizontal
    return edge


def _boundary_by_counts(segmentation: np.ndarray, thickness: int) -> np.ndarray:
    """:func:`_boundary` in a few passes whatever the thickness: along a column, a pixel is within ``thickness``
    steps of another id exactly when one of the ``thickness`` one-step changes on either side of it is a change (the
    first pixel that differs is reached through them); running counts of changes answer that for every pixel."""
    edge = np.zeros(segmentation.shape, dtype=bool)
    for axis in (0, 1):
        length = segmentation.shape[axis]
        if length < 2:
            continue
        change = np.diff(segmentation, axis=axis) != 0  # (H - 1, W) or (H, W - 1): pair k is k vs k + 1
        shape = list(change.shape)
        shape[axis] = 1
        counts = np.concatenate([np.zeros(shape, np.int32), np.cumsum(change, axis=axis, dtype=np.int32)], axis)
        position = np.arange(length)
        high = np.take(counts, np.minimum(position + thickness, length - 1), axis=axis)  # changes in pairs < y + t
        low = np.take(counts, np.maximum(position - thickness, 0), axis=axis)  # changes in pairs < y - t
        edge |= high > low
    return edge


def _reduction(shape: tuple[int, ...]) -> int:
    """The step of the reduced copy that :func:`_interior_point` searches: at most ~96 pixels along each side."""
    return max(1, int(np.ceil(max(shape) / 96)))


def _interior_point(segmentation: np.ndarray, segment_id: int, reduced: np.ndarray | None = None) -> tuple[int, int]:
    """(y, x) of a pixel deep inside the segment ``segment_id`` of an (H, W) id map: repeated erosion of a reduced
    copy, then the survivor nearest to the survivors' centre (the centroid of a ring or a crescent lies outside it).

    ``reduced``: ``segmentation[f // 2 :: f, f // 2 :: f]`` with ``f = _reduction(shape)``, when the caller has it."""
    factor = _reduction(segmentation.shape)
    if reduced is None:
        reduced = segmentation[factor // 2 :: factor, factor // 2 :: factor]
    small = reduced == segment_id  # (h, w)
    if not small.any():  # a segment thinner than the step: search it at full resolution
        small, factor = segmentation == segment_id, 1
    current = small
    while True:
        padded = np.pad(current, 1)  # outside the image counts as outside the mask
        eroded = current & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
        if not eroded.any():
            break
        current = eroded
    ys, xs = np.nonzero(current)
    nearest = int(np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2))
    y, x = ys[nearest] * factor + factor // 2, xs[nearest] * factor + factor // 2
    return min(int(y), segmentation.shape[0] - 1), min(int(x), segmentation.shape[1] - 1)


def _overlaps(box: tuple[int, int, int, int], placed: list[tuple[int, int, int, int]]) -> bool:
    return any(box[0] < p[2] and p[0] < box[2] and box[1] < p[3] and p[1] < box[3] for p in placed)


def _caption_text(segment: Mapping[str, Any], id2label: Mapping[int, str] | None) -> str:
    label_id = int(segment["label_id"])
    name = segment.get("label") or (id2label or {}).get(label_id, str(label_id))
    score = segment.get("score")
    return f"{name} {float(score):.0%}" if score is not None else str(name)


def _draw_captions(canvas: Image.Image, segmentation: np.ndarray, segments: Sequence[Mapping[str, Any]],
                   colors: np.ndarray, areas: np.ndarray, id2label: Mapping[int, str] | None, size: int,
                   min_area: float) -> None:
    """One caption per segment large enough, at an interior point, on a dark box of the segment's colour; larger
    segments are placed first and a caption that would cover an earlier one moves up or down, or is left out."""
    draw = ImageDraw.Draw(canvas)
    font = _font(size)
    pad = max(1, size // 5)
    height, width = segmentation.shape
    placed: list[tuple[int, int, int, int]] = []
    factor = _reduction(segmentation.shape)
    reduced = segmentation[factor // 2 :: factor, factor // 2 :: factor]  # (h, w) a view: one pixel per factor^2
    for k in np.argsort(-areas, kind="stable"):
        if areas[k] < min_area:
            continue
        text = _caption_text(segments[k], id2label)
        y, x = _interior_point(segmentation, segments[k]["id"], reduced)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        box_w, box_h = right - left + 2 * pad, bottom - top + 2 * pad
        x0 = int(np.clip(x - box_w // 2, 0, max(0, width - box_w)))
        for shift in (0, 1, -1, 2, -2):
            y0 = int(np.clip(y - box_h // 2 + shift * (box_h + 1), 0, max(0, height - box_h)))
            box = (x0, y0, x0 + box_w, y0 + box_h)
            if not _overlaps(box, placed):
                break
        else:
            continue
        placed.append(box)
        fill = tuple(int(c) for c in colors[k] * 0.45)
        draw.rounded_rectangle((box[0], box[1], box[2] - 1, box[3] - 1), radius=pad, fill=fill)
        draw.text((x0 + pad - left, y0 + pad - top), text, font=font, fill=_TEXT)


def _legend(entries: Sequence[tuple[tuple[int, int, int], str]], height: int, size: int) -> Image.Image:
    """A white panel listing (colour swatch, text) rows, in as many columns as ``height`` requires."""
    font = _font(size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    pad, row_h = max(2, size // 2), int(size * 1.5)
    text_w = max((measure.textbbox((0, 0), text, font=font)[2] for _, text in entries), default=0)
    column_w = pad + size + pad + text_w + pad
    rows = max(1, (height - 2 * pad) // row_h)
    columns = max(1, -(-len(entries) // rows))
    panel = Image.new("RGB", (columns * column_w + pad, max(height, 2 * pad + min(rows, len(entries)) * row_h)),
                      _PANEL)
    draw = ImageDraw.Draw(panel)
    for i, (color, text) in enumerate(entries):
        x, y = pad + (i // rows) * column_w, pad + (i % rows) * row_h
        top = y + (row_h - size) // 2
        draw.rectangle((x, top, x + size - 1, top + size - 1), fill=color, outline=_PANEL_TEXT)
        left, text_top, _, text_bottom = measure.textbbox((0, 0), text, font=font)
        text_y = top + (size - (text_bottom - text_top)) // 2 - text_top  # text centred on the swatch
        draw.text((x + size + pad - left, text_y), text, font=font, fill=_PANEL_TEXT)
    return panel


def _side_by_side(parts: Sequence[Image.Image], gap: int) -> Image.Image:
    height = max(part.height for part in parts)
    canvas = Image.new("RGB", (sum(part.width for part in parts) + gap * (len(parts) - 1), height), _PANEL)
    x = 0
    for part in parts:
        canvas.paste(part, (x, 0))
        x += part.width + gap
    return canvas


def _segment_index(segmentation: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """(H, W) int64: the position in ``ids`` of each pixel's segment id, ``len(ids)`` where it is in none."""
    if not len(ids):
        return np.zeros(segmentation.shape, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    position = np.searchsorted(ids[order], segmentation).clip(0, len(ids) - 1)  # (H, W)
    index = order[position]  # (H, W)
    return np.where(ids[index] == segmentation, index, len(ids))


def _blend(rgb: np.ndarray, index: np.ndarray, edge: np.ndarray, colors: np.ndarray, alpha: float,
           desaturate: float) -> np.ndarray:
    """(H, W, 3) uint8: segment colours blended over the muted photo where ``index`` names a segment, solid colour
    on ``edge``, the photo elsewhere. rgb (H, W, 3) uint8; index (H, W) with ``len(colors) - 1`` for no segment."""
    rgb = rgb.astype(np.float32)  # (H, W, 3)
    painted = (index < len(colors) - 1)[..., None]  # (H, W, 1)
    fill = colors[index]  # (H, W, 3) each pixel's segment colour
    gray = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)  # (H, W) luminance
    base = (1 - desaturate) * rgb + desaturate * gray[..., None]  # (H, W, 3) photo with its colours muted
    out = np.where(painted, (1 - alpha) * base + alpha * fill, rgb)  # (H, W, 3)
    out = np.where(edge[..., None], fill, out)
    return out.clip(0, 255).astype(np.uint8)


def _paint_reference(rgb: np.ndarray, segmentation: np.ndarray, ids: np.ndarray, colors: np.ndarray, alpha: float,
                     desaturate: float, thickness: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole image at once: (H, W, 3) uint8 pixels and (S,) segment areas. The readable reference of
    :func:`_paint_in_bands`; it holds several (H, W, 3) float copies (about 1 GB for 6000x4000)."""
    index = _segment_index(segmentation, ids)  # (H, W) segment index, S = none
    areas = np.bincount(index.reshape(-1), minlength=len(ids) + 1)[: len(ids)]  # (S,)
    painted = index < len(ids)
    edge = _boundary(np.where(painted, index, -1), thickness) & painted if thickness else np.zeros_like(painted)
    return _blend(rgb, index, edge, colors, alpha, desaturate), areas


def _paint_in_bands(rgb: np.ndarray, segmentation: np.ndarray, ids: np.ndarray, colors: np.ndarray, alpha: float,
                    desaturate: float, thickness: int, rows: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """What :func:`_paint_reference` computes, ``rows`` rows at a time (plus ``thickness`` rows either side for the
    outlines), so that the float copies are of one band, with outlines by :func:`_boundary_by_counts`: the same
    pixels, with memory bounded by the band and time independent of the outline's thickness."""
    height = segmentation.shape[0]
    out = np.empty(rgb.shape, dtype=np.uint8)  # (H, W, 3)
    areas = np.zeros(len(ids), dtype=np.int64)
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        low, high = max(0, top - thickness), min(height, bottom + thickness)  # the band and its halo
        index = _segment_index(segmentation[low:high], ids)  # (h + halo, W)
        painted = index < len(ids)
        inner = slice(top - low, top - low + bottom - top)
        if thickness:
            edge = (_boundary_by_counts(np.where(painted, index, -1), thickness) & painted)[inner]
        else:
            edge = np.zeros_like(painted[inner])
        out[top:bottom] = _blend(rgb[top:bottom], index[inner], edge, colors, alpha, desaturate)
        areas += np.bincount(index[inner].reshape(-1), minlength=len(ids) + 1)[: len(ids)]
    return out, areas


def draw_segmentation(
    image: Image.Image | np.ndarray,
    segmentation: np.ndarray,
    segments: Sequence[Mapping[str, Any]],
    *,
    id2label: Mapping[int, str] | None = None,
    alpha: float = 0.6,
    desaturate: float = 0.85,
    outline: bool = True,
    captions: bool = True,
    legend: bool = False,
    side_by_side: bool = False,
    text_scale: float = 1.0,
    min_caption_area: float = 0.002,
    plain: bool = False,
) -> Image.Image:
    """Draw segments over a photo.

    Args:
        image: the photo, PIL or (H, W, 3) uint8.
        segmentation: (H, W) integer segment ids; pixels whose id is not in ``segments`` are left as they are.
        segments: ``{"id", "label_id"}`` per segment, optionally ``"score"`` (caption "label 97%") and ``"label"``
            (else the name comes from ``id2label``, else the id). The k-th segment of a class in this list gets
            shade k of the class colour.
        alpha: opacity of the colour fill. desaturate: how much of the photo's own colour is removed under the fill
            (0: none, 1: grey), so that class colours read the same on any background.
        outline: draw each segment's border in its colour.
        captions: label each segment of at least ``min_caption_area`` of the image (a fraction).
        legend: add a panel listing the classes present with their share of the image.
        side_by_side: put the untouched photo left of the drawing.
        text_scale: multiplies the caption and legend text size (:func:`text_size`).
        plain: paint with the whole-image reference (:func:`_paint_reference`) instead of in bands of rows
            (:func:`_paint_in_bands`, the default: the same pixels, a fraction of the memory and time on big photos).

    Returns:
        An RGB image: (H, W) alone, wider with ``side_by_side`` and/or ``legend``.
    """
    photo = image if isinstance(image, Image.Image) and image.mode == "RGB" else (
        image.convert("RGB") if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, np.uint8)))
    segmentation = np.asarray(segmentation)
    if (photo.height, photo.width) != segmentation.shape:
        raise ValueError(f"segmentation {segmentation.shape} and image {(photo.height, photo.width)} sizes differ.")
    height, width = segmentation.shape
    shade_of: dict[int, int] = {}
    colors = np.zeros((len(segments) + 1, 3), dtype=np.float32)  # (S + 1, 3); the last row: not a segment
    for k, segment in enumerate(segments):
        label_id = int(segment["label_id"])
        colors[k] = instance_color(label_id, shade_of.get(label_id, 0))
        shade_of[label_id] = shade_of.get(label_id, 0) + 1
    ids = np.array([int(s["id"]) for s in segments], dtype=np.int64)  # (S,)
    thickness = max(1, int(round(min(height, width) / 250))) if outline else 0
    paint = _paint_reference if plain else _paint_in_bands
    pixels, areas = paint(np.asarray(photo), segmentation, ids, colors, alpha, desaturate, thickness)
    canvas = Image.fromarray(pixels)
    size = text_size(height, width, text_scale)
    if captions and len(segments):
        _draw_captions(canvas, segmentation, segments, colors, areas, id2label, size,
                       min_caption_area * height * width)

    parts = [photo, canvas] if side_by_side else [canvas]
    if legend:
        share: dict[int, int] = {}
        for segment, area in zip(segments, areas):
            share[int(segment["label_id"])] = share.get(int(segment["label_id"]), 0) + int(area)
        entries = []
        for label_id in sorted(share, key=lambda label: -share[label]):
            name = next((s.get("label") for s in segments if int(s["label_id"]) == label_id and s.get("label")),
                        None) or (id2label or {}).get(label_id, str(label_id))
            entries.append((class_color(label_id), f"{name} {share[label_id] / (height * width):.0%}"))
        parts.append(_legend(entries, height, size))
    return parts[0] if len(parts) == 1 else _side_by_side(parts, gap=max(2, size // 3))


def draw_semantic(
    image: Image.Image | np.ndarray,
    labels: np.ndarray,
    *,
    id2label: Mapping[int, str] | None = None,
    ignore_index: int | None = 255,
    alpha: float = 0.6,
    desaturate: float = 0.85,
    outline: bool = True,
    captions: bool = False,
    legend: bool = True,
    side_by_side: bool = False,
    text_scale: float = 1.0,
    plain: bool = False,
) -> Image.Image:
    """Draw an (H, W) map of class ids over a photo: one colour per class, a legend of the classes present (with
    their share of the image) on the right, optionally captions; pixels equal to ``ignore_index`` are left as they
    are. Other arguments as in :func:`draw_segmentation`."""
    labels = np.asarray(labels).astype(np.int64)  # (H, W)
    present = [int(v) for v in np.unique(labels) if v >= 0 and v != ignore_index]
    segments = [{"id": label_id + 1, "label_id": label_id} for label_id in present]
    segmentation = np.where((labels >= 0) & (labels != (ignore_index if ignore_index is not None else -1)),
                            labels + 1, 0)  # (H, W) segment id = label + 1, 0 = nothing
    return draw_segmentation(image, segmentation, segments, id2label=id2label, alpha=alpha, desaturate=desaturate,
                             outline=outline,
                             captions=captions, legend=legend, side_by_side=side_by_side, text_scale=text_scale,
                             plain=plain)

