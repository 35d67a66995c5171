"""The visualiser: colours fixed per class and shaded per instance, outlines, captions, legend, side by side."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from mask2former.visualize import class_color, draw_segmentation, draw_semantic, instance_color, text_size



def _text(picture: Image.Image) -> np.ndarray:
    """(H, W) bool: near-white pixels, i.e. caption text (anti-aliased, so not only pure white)."""
    return (np.asarray(picture) >= 215).all(-1)


def _scene(height: int = 120, width: int = 160) -> tuple[Image.Image, np.ndarray, list[dict]]:
    """A grey photo with three segments: two of class 4 (left and right boxes), one of class 7 (bottom band)."""
    image = Image.new("RGB", (width, height), (128, 128, 128))
    ids = np.zeros((height, width), dtype=np.int64)
    ids[10:60, 10:70] = 5
    ids[10:60, 90:150] = 9
    ids[80:, :] = 2
    segments = [{"id": 5, "label_id": 4, "score": 0.97, "label": "box"},
                {"id": 9, "label_id": 4, "score": 0.61, "label": "box"},
                {"id": 2, "label_id": 7, "score": 0.88, "label": "band"}]
    return image, ids, segments


def test_class_colours_are_a_fixed_function_of_the_label_id():
    colours = [class_color(i) for i in range(40)]
    assert len(set(colours)) == 40
    assert all(0 <= c <= 255 for colour in colours for c in colour)
    # the same in a fresh interpreter (nothing depends on state or hashing)
    code = "from mask2former.visualize import class_color; print([class_color(i) for i in range(40)])"
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert fresh.strip() == str(colours)


def test_instances_of_a_class_get_distinct_shades_and_shade_zero_is_the_class_colour():
    assert instance_color(3, 0) == class_color(3)
    shades = [instance_color(3, k) for k in range(12)]
    assert len(set(shades)) == 12
    hsv_hue = [Image.new("RGB", (1, 1), s).convert("HSV").getpixel((0, 0))[0] for s in shades[:5]]
    assert max(hsv_hue) - min(hsv_hue) <= 3  # the first five shades keep the class hue


def test_fill_uses_class_colour_and_instance_shades():
    image, ids, segments = _scene()
    drawn = np.asarray(draw_segmentation(image, ids, segments, captions=False, outline=False, alpha=1.0))
    assert tuple(drawn[30, 30]) == instance_color(4, 0) == class_color(4)
    assert tuple(drawn[30, 120]) == instance_color(4, 1) != class_color(4)
    assert tuple(drawn[100, 80]) == class_color(7)
    assert tuple(drawn[70, 80]) == (128, 128, 128)  # id 0 is not a listed segment: untouched
    # the same class has the same colour in another picture, whatever the other segments are
    again = np.asarray(draw_segmentation(image, ids, segments[:1], captions=False, outline=False, alpha=1.0))
    assert tuple(again[30, 30]) == class_color(4)


def test_outlines_mark_segment_borders():
    image, ids, segments = _scene()
    plain = np.asarray(draw_segmentation(image, ids, segments, captions=False, outline=False))
    outlined = np.asarray(draw_segmentation(image, ids, segments, captions=False, outline=True))
    changed = (plain != outlined).any(-1)
    assert changed[10, 10:70].all() and changed[59, 10:70].all()  # the box's top and bottom rows
    assert not changed[30:40, 30:50].any()  # not the interior
    assert tuple(outlined[10, 40]) == class_color(4)


def test_captions_are_drawn_inside_their_segments_and_scale_with_the_image():
    image, ids, segments = _scene()
    white = _text(draw_segmentation(image, ids, segments))
    assert white[10:60, 10:70].sum() > 10 and white[10:60, 90:150].sum() > 10 and white[80:].sum() > 10
    assert not _text(draw_segmentation(image, ids, segments, captions=False)).any()

    big_image, big_ids = image.resize((640, 480)), np.kron(ids, np.ones((4, 4), dtype=np.int64))
    big = _text(draw_segmentation(big_image, big_ids, segments[:1]))
    rows = np.flatnonzero(big.any(1))
    small_rows = np.flatnonzero(white[10:60, 10:70].any(1))
    assert np.ptp(rows) > np.ptp(small_rows)  # taller text on the larger picture
    assert text_size(480, 640) > text_size(120, 160) >= 10


def test_tiny_segments_get_no_caption():
    image, ids, segments = _scene()
    ids = np.zeros_like(ids)
    ids[50:52, 50:52] = 5
    assert not _text(draw_segmentation(image, ids, segments[:1])).any()


def test_semantic_legend_lists_the_classes_present():
    image = Image.new("RGB", (120, 90), (128, 128, 128))
    labels = np.full((90, 120), 255, dtype=np.int64)
    labels[:40] = 2
    labels[40:] = 11
    drawn = draw_semantic(image, labels, id2label={2: "sky", 11: "grass"})
    assert drawn.height == 90 and drawn.width > 120
    legend = np.asarray(drawn)[:, 120:]
    for label in (2, 11):
        assert (legend == np.array(class_color(label))).all(-1).sum() > 20  # a swatch
    assert (legend < 100).all(-1).sum() > 20  # dark legend text
    no_legend = draw_semantic(image, labels, legend=False)
    assert no_legend.size == (120, 90)


def test_side_by_side_puts_the_photo_on_the_left():
    image, ids, segments = _scene()
    drawn = draw_segmentation(image, ids, segments, side_by_side=True)
    assert drawn.height == 120 and drawn.width > 2 * 160
    assert (np.asarray(drawn)[:, :160] == np.asarray(image)).all()


def test_numpy_photo_and_size_mismatch():
    image, ids, segments = _scene()
    drawn = draw_segmentation(np.asarray(image), ids, segments)
    assert drawn.size == image.size
    with pytest.raises(ValueError, match="sizes differ"):
        draw_segmentation(image, ids[:-1], segments)


@pytest.mark.parametrize("thickness, rows", [(0, 5), (1, 7), (3, 4), (2, 256)])
def test_painting_in_bands_gives_the_reference_pixels(thickness, rows):
    from mask2former.visualize import _paint_in_bands, _paint_reference

    rng = np.random.default_rng(thickness)
    segmentation = np.repeat(np.repeat(rng.integers(0, 9, (9, 12)), 5, axis=0), 6, axis=1)[:41, :67]  # blocks
    segmentation[::7, ::5] = 40  # an id no segment has: left as the photo
    rgb = rng.integers(0, 256, (41, 67, 3), dtype=np.uint8)
    ids = np.array([3, 1, 7, 2, 8, 5], dtype=np.int64)
    colors = np.vstack([rng.uniform(0, 255, (len(ids), 3)), np.zeros((1, 3))]).astype(np.float32)
    reference, reference_areas = _paint_reference(rgb, segmentation, ids, colors, 0.6, 0.85, thickness)
    banded, areas = _paint_in_bands(rgb, segmentation, ids, colors, 0.6, 0.85, thickness, rows=rows)
    assert np.array_equal(banded, reference) and np.array_equal(areas, reference_areas)


def test_default_and_plain_drawings_are_identical():
    rng = np.random.default_rng(3)
    image = Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8))
    segmentation = np.repeat(np.repeat(rng.integers(0, 6, (6, 7)), 50, axis=0), 60, axis=1)  # (300, 420)
    segments = [{"id": i, "label_id": i % 3, "score": 0.9} for i in range(1, 6)]
    for options in ({}, {"side_by_side": True, "legend": True}):
        fast = draw_segmentation(image, segmentation, segments, **options)
        plain = draw_segmentation(image, segmentation, segments, plain=True, **options)
        assert np.array_equal(np.asarray(fast), np.asarray(plain))


@pytest.mark.parametrize("thickness", [1, 2, 5, 40])
def test_boundary_by_counts_equals_the_reference(thickness):
    from mask2former.visualize import _boundary, _boundary_by_counts

    rng = np.random.default_rng(thickness)
    for shape in ((37, 53), (1, 9), (9, 1), (2, 2)):
        segmentation = rng.integers(-1, 4, shape)  # thin stripes and single pixels: A B A patterns everywhere
        segmentation[: shape[0] // 2] = np.repeat(rng.integers(0, 3, (1, shape[1])), shape[0] // 2, axis=0)
        assert np.array_equal(_boundary_by_counts(segmentation, thickness), _boundary(segmentation, thickness))
