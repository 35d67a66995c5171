"""Zero-copy Pillow arrays, Pillow's block reuse, and huge-page-aligned CPU buffers."""

from __future__ import annotations

import gc

import numpy as np
import PIL.Image
import pytest
import torch

from mask2former.processing import pillow_memory
from mask2former.processing.buffers import empty
from mask2former.processing.pillow_memory import as_array

ARROW = hasattr(PIL.Image.new("L", (1, 1)).im, "__arrow_c_array__")


def _images() -> list[PIL.Image.Image]:
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    return [
        PIL.Image.fromarray(rgb[:, :, 0]),                                    # L
        PIL.Image.fromarray(rng.standard_normal((37, 53)).astype(np.float32)),  # F
        PIL.Image.fromarray(rng.integers(-5, 70000, (37, 53)).astype(np.int32)),  # I
        PIL.Image.fromarray(rgb),                                             # RGB
        PIL.Image.fromarray(rng.integers(0, 256, (37, 53, 4), dtype=np.uint8)),  # RGBA
        PIL.Image.fromarray(rgb).convert("P"),                                # not exported: copied
    ]


@pytest.mark.parametrize("index", range(6))
def test_as_array_equals_numpy_asarray(index: int) -> None:
    image = _images()[index]
    view = as_array(image)
    expected = np.asarray(image)
    assert view.shape == expected.shape and view.dtype == expected.dtype
    np.testing.assert_array_equal(view, expected)
    assert not view.flags.writeable


@pytest.mark.skipif(not ARROW, reason="this Pillow has no Arrow export; as_array copies (tested above)")
def test_as_array_shares_pillow_memory_and_outlives_the_image() -> None:
    image = PIL.Image.fromarray(np.arange(200 * 300, dtype=np.int64).reshape(200, 300).astype(np.uint8))
    expected = np.asarray(image).copy()
    view = as_array(image)
    assert view.base is not None and not isinstance(view.base, bytes)  # not a tobytes() copy
    assert as_array(image).__array_interface__["data"][0] == view.__array_interface__["data"][0]
    del image
    gc.collect()
    scratch = [PIL.Image.new("L", (300, 200), 7) for _ in range(8)]  # would reuse freed memory
    np.testing.assert_array_equal(view, expected)
    assert all(np.asarray(s).max() == 7 for s in scratch)


@pytest.mark.skipif(not ARROW, reason="this Pillow has no Arrow export")
def test_as_array_copies_an_image_spread_over_several_blocks() -> None:
    block = PIL.Image.core.get_block_size()
    side = int((block / 4) ** 0.5) + 16  # an RGB image (4 bytes per pixel) just over one block
    image = PIL.Image.new("RGB", (side, side), (1, 2, 3))
    view = as_array(image)
    assert view.shape == (side, side, 3)
    assert (view == np.array([1, 2, 3], dtype=np.uint8)).all()


def test_reuse_pillow_blocks_leaves_an_application_choice_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    core = PIL.Image.core
    if not hasattr(core, "set_blocks_max"):
        pytest.skip("this Pillow has no block cache settings")
    before = core.get_blocks_max()
    try:
        core.set_blocks_max(0)
        monkeypatch.setenv("PILLOW_BLOCKS_MAX", "0")
        monkeypatch.setattr(pillow_memory, "_configured", False)
        pillow_memory.reuse_pillow_blocks()
        assert core.get_blocks_max() == 0  # the environment says 0: kept

        monkeypatch.delenv("PILLOW_BLOCKS_MAX")
        monkeypatch.setattr(pillow_memory, "_configured", False)
        core.set_blocks_max(3)
        pillow_memory.reuse_pillow_blocks()
        assert core.get_blocks_max() == 3  # set by the application: kept

        monkeypatch.setattr(pillow_memory, "_configured", False)
        core.set_blocks_max(0)
        pillow_memory.reuse_pillow_blocks()
        assert core.get_blocks_max() == pillow_memory.PILLOW_BLOCKS
        core.set_blocks_max(0)
        pillow_memory.reuse_pillow_blocks()  # once per process
        assert core.get_blocks_max() == 0
    finally:
        core.set_blocks_max(before)


@pytest.mark.parametrize("dtype", [torch.float32, torch.int64, torch.uint8, torch.bfloat16])
def test_large_cpu_buffers_are_huge_page_aligned_and_independent(dtype: torch.dtype) -> None:
    shape = (2, 3, 700, 517)
    first, second = empty(shape, dtype), empty(shape, dtype)
    assert first.shape == shape and first.dtype == dtype and first.is_contiguous()
    if dtype != torch.bfloat16:  # bfloat16 comes from torch's allocator
        assert first.data_ptr() % (1 << 21) == 0
    first.fill_(1)
    second.fill_(2)
    assert (first == 1).all() and (second == 2).all()
    small = empty((3, 5), dtype)
    assert small.shape == (3, 5) and small.dtype == dtype
