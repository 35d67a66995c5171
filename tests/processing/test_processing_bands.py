"""Exactness of resizing one image in bands: Pillow's order of passes, and the row bands whose box resizes give
exactly the rows of one call. Checked against Pillow itself, and against transformers where a wrong order showed."""

from __future__ import annotations

import random

import numpy as np
import PIL.Image
import pytest
import torch

from mask2former.processing import Mask2FormerImageProcessor, pass_order
from mask2former.processing.resize import banded_resize
from mask2former.processing.row_bands import exact_row_bands, pillow_bilinear_taps
from mask2former.processing.threads import run_shared

BILINEAR = PIL.Image.Resampling.BILINEAR


def test_the_installed_pillow_follows_a_known_order_of_passes():
    rule = pass_order.installed_rule()
    assert rule is not None, "the probes fit no known rule: banded resizing would be off"
    sizes = random.Random(0)
    for _ in range(60):
        in_w, in_h, out_w, out_h = (sizes.randint(8, 120) for _ in range(4))
        seen = pass_order.observed_order(in_w, in_h, out_w, out_h, seed=1)
        if in_w != out_w and in_h != out_h and seen is not None:
            assert seen == rule(in_w, in_h, out_w, out_h), (in_w, in_h, out_w, out_h)


def test_an_unknown_order_of_passes_turns_banding_off(monkeypatch):
    """Probes that fit no rule (a future Pillow): no bands, and the batch is that of one Pillow call."""
    monkeypatch.setattr(pass_order, "observed_order", lambda *probe: None)
    pass_order.installed_rule.cache_clear()
    try:
        assert pass_order.horizontal_first(48, 48, 29, 8) is None
        image = PIL.Image.fromarray(np.random.default_rng(0).integers(0, 256, (90, 60, 3), dtype=np.uint8))
        assert banded_resize(image, 30, 200, BILINEAR, 4, lambda *piece: None) is None
        assert banded_resize(image, 90, 200, BILINEAR, 4, lambda *piece: None) is not None, "one pass: any Pillow"
    finally:
        pass_order.installed_rule.cache_clear()


def _tiled(image: np.ndarray | PIL.Image.Image, size: tuple[int, int], resample: int, parts: int) -> tuple[np.ndarray, int]:
    """The banded resize of ``image`` to (height, width) put together, and its number of rounds."""
    out = np.full((*size, 3), -1, dtype=np.int32)

    def sink(top, left, planes):
        rows, columns = planes[0].shape
        out[top:top + rows, left:left + columns] = np.stack(planes, axis=2)

    first, second = banded_resize(image, *size, resample, parts, sink)
    run_shared(first, 2)
    run_shared(second, 2)
    return out, 1 if not second else 2


@pytest.mark.parametrize("seed", range(4))
def test_row_bands_are_exact_on_random_sizes(seed):
    """Wherever exact_row_bands proposes bands, the one-round banded resize equals Pillow's one call (both orders of
    passes); elsewhere the two-round one does."""
    rng, sizes = np.random.default_rng(seed), random.Random(seed)
    rounds = set()
    for _ in range(60):
        in_h, in_w, out_h, out_w = (sizes.randint(2, 300) for _ in range(4))
        if (in_h, in_w) == (out_h, out_w):
            continue
        pixels = rng.integers(0, 256, (in_h, in_w, 3), dtype=np.uint8)
        image = PIL.Image.fromarray(pixels)
        given = pixels if sizes.random() < 0.5 else image  # arrays are converted band by band
        tiled, count = _tiled(given, (out_h, out_w), BILINEAR, sizes.choice([2, 4, 6]))
        assert np.array_equal(tiled, np.asarray(image.resize((out_w, out_h), BILINEAR))), (in_h, in_w, out_h, out_w)
        rounds.add(count)
    assert rounds == {1, 2}


def test_row_bands_of_common_photo_sizes():
    """480 -> 800 rows (640x480 photos) splits at integer source rows; 427 -> 800 (640x427) at quarter rows, which a
    C float holds exactly; 3 -> 800 has no edge a float holds, so no bands."""
    bands = exact_row_bands(480, 800, 4)
    assert [band[:2] for band in bands] == [(0, 200), (200, 400), (400, 600), (600, 800)]
    assert [band[4:] for band in bands] == [(0, 120), (120, 240), (240, 360), (360, 480)]
    assert all(first <= y0 and y1 <= last for _, _, first, last, y0, y1 in bands), "the box lies in the read rows"
    assert [band[4] for band in exact_row_bands(427, 800, 4)] == [0.0, 106.75, 213.5, 320.25]
    assert exact_row_bands(3, 800 * 3 + 1, 4) is None


def test_bilinear_taps_follow_pillow(monkeypatch):
    """The model's fixed-point weights reproduce Pillow's resize of an impulse column, row by row."""
    for in_size, out_size in [(6, 9), (9, 4), (7, 7 * 3 + 1)]:
        taps = pillow_bilinear_taps(in_size, 0, in_size, out_size)
        assert taps.clear
        for row in range(in_size):
            impulse = np.zeros((in_size, 1), dtype=np.uint8)
            impulse[row] = 255
            resized = np.asarray(PIL.Image.fromarray(impulse).resize((1, out_size), BILINEAR))[:, 0].astype(np.int64)
            weight = np.where(taps.rows == row, taps.weights, 0).sum(1)
            assert np.array_equal(resized, np.clip((weight * 255 + (1 << 21)) >> 22, 0, 255)), (in_size, out_size)


def test_rounding_close_to_a_boundary_rules_the_bands_out(monkeypatch):
    """With a margin so wide that every weight is "close" to its rounding boundary, no band is accepted."""
    from mask2former.processing import row_bands

    assert exact_row_bands(480, 800, 4) is not None
    monkeypatch.setattr(row_bands, "_MARGIN", 0.49)
    exact_row_bands.cache_clear()
    try:
        assert not pillow_bilinear_taps(480, 0, 480, 800).clear
        assert exact_row_bands(480, 800, 4) is None
    finally:
        exact_row_bands.cache_clear()


@pytest.mark.parametrize("resample", [PIL.Image.Resampling.BILINEAR, PIL.Image.Resampling.BICUBIC])
def test_a_tall_image_resized_vertically_first_matches_transformers_on_two_threads(resample, monkeypatch):
    """2000x600 -> 800x1000: Pillow 13 shrinks the height first. Bands that assumed the horizontal pass first were a
    level off (0.0175 after normalising) before the order was detected. Bilinear takes one round of exact row bands,
    bicubic two rounds (vertical in column bands, then horizontal in row bands)."""
    from mask2former.processing import transforms

    hf_module = pytest.importorskip("transformers.models.mask2former.image_processing_pil_mask2former")
    rounds = []
    monkeypatch.setattr(transforms, "banded_resize",
                        lambda *args: rounds.append(banded := banded_resize(*args)) or banded)
    image = np.random.default_rng(0).integers(0, 256, (2000, 600, 3), dtype=np.uint8)
    size = {"height": 800, "width": 1000}
    torch.set_num_threads(2)  # restored by the one_thread fixture
    ours = Mask2FormerImageProcessor(size=size, resample=resample)(image, return_tensors="pt")["pixel_values"]
    theirs = hf_module.Mask2FormerImageProcessorPil(size=size, resample=resample)(image, return_tensors="pt")
    assert (ours - theirs["pixel_values"]).abs().max().item() < 1e-4
    assert len(rounds) == 1 and bool(rounds[0][1]) == (resample == PIL.Image.Resampling.BICUBIC)
