"""The fast pieces against their plain versions: block interpolation against F.interpolate, block bounds against
the exact values, COCO RLE against pycocotools."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mask2former.processing import rle
from mask2former.processing.interpolation import BLOCK, axis_blocks, axis_operator, block_bounds, evaluate_blocks
from mask2former.processing.output_blocks import _first_max

# (mask h, w), padded size, valid size, target size
CASES = [
    ((20, 34), (80, 136), (77, 130), (50, 61)),  # crop, then shrink
    ((20, 34), (80, 136), (80, 136), (80, 136)),  # nothing to crop or resize
    ((20, 34), (80, 136), (61, 99), (300, 400)),  # crop, then enlarge
    ((7, 5), (28, 20), (25, 20), (3, 2)),  # tiny target
    ((3, 2), (12, 8), (12, 8), (333, 250)),  # enlarged far beyond one mask pixel per block
]


def chain(logits, padded, valid, target):
    """The definition: upsample to the padded size, crop the valid region, resize to the target size."""
    up = F.interpolate(logits[None], size=padded, mode="bilinear", align_corners=False)[0, :, : valid[0], : valid[1]]
    return F.interpolate(up[None], size=target, mode="bilinear", align_corners=False)[0]


def blocks_to_image(values, rows, cols):
    """(nb, n, B, B) block values -> (n, T_h, T_w)."""
    n = values.shape[1]
    grid = values.reshape(rows.count, cols.count, n, BLOCK, BLOCK).permute(2, 0, 3, 1, 4)
    return grid.reshape(n, rows.count * BLOCK, cols.count * BLOCK)[:, : rows.size, : cols.size]


@pytest.mark.parametrize("low, padded, valid, target", CASES)
def test_blocks_reproduce_the_interpolation_chain(low, padded, valid, target):
    logits = torch.randn(3, *low, generator=torch.Generator().manual_seed(0)) * 10
    expected = chain(logits, padded, valid, target)
    rows = axis_blocks(axis_operator(low[0], padded[0], valid[0], target[0]))
    cols = axis_blocks(axis_operator(low[1], padded[1], valid[1], target[1]))
    every_block = torch.arange(rows.count * cols.count)

    all_queries = blocks_to_image(evaluate_blocks(logits, rows, cols, every_block), rows, cols)
    assert (all_queries - expected).abs().max() < 1e-4

    queries = every_block % 3  # one query per block, as instance post-processing asks
    one_each = evaluate_blocks(logits, rows, cols, every_block, queries)
    assert torch.allclose(one_each, evaluate_blocks(logits, rows, cols, every_block)[every_block, queries], atol=1e-4)

    low_bound, high_bound = block_bounds(logits, rows, cols)  # (n, nb)
    as_blocks = F.pad(expected, (0, cols.count * BLOCK - target[1], 0, rows.count * BLOCK - target[0]), value=0.0)
    as_blocks = as_blocks.reshape(3, rows.count, BLOCK, cols.count, BLOCK).permute(0, 1, 3, 2, 4)
    exists = torch.ones(target)
    exists = F.pad(exists, (0, cols.count * BLOCK - target[1], 0, rows.count * BLOCK - target[0]))
    exists = exists.reshape(rows.count, BLOCK, cols.count, BLOCK).permute(0, 2, 1, 3).bool()
    for q in range(3):
        inside = as_blocks[q][exists].reshape(-1)
        block_of = torch.arange(rows.count * cols.count).reshape(rows.count, cols.count)[:, :, None, None]
        block_of = block_of.expand_as(exists)[exists]
        assert (inside >= low_bound[q, block_of]).all() and (inside <= high_bound[q, block_of]).all()


@pytest.mark.parametrize("low, padded, valid, target", CASES)
def test_block_bounds_are_the_extremes_of_the_logits_each_block_reads(low, padded, valid, target):
    """The fast bounds (aligned groups, then the rows left over) against a plain min/max per block window."""
    logits = torch.randn(5, *low, generator=torch.Generator().manual_seed(1)) * 10
    rows = axis_blocks(axis_operator(low[0], padded[0], valid[0], target[0]))
    cols = axis_blocks(axis_operator(low[1], padded[1], valid[1], target[1]))
    low_bound, high_bound = block_bounds(logits, rows, cols, slack=0.0)
    for by in range(rows.count):
        for bx in range(cols.count):
            window = logits[:, rows.low_first[by] : rows.low_last[by] + 1, cols.low_first[bx] : cols.low_last[bx] + 1]
            block = by * cols.count + bx
            assert torch.equal(low_bound[:, block], window.amin((1, 2)))
            assert torch.equal(high_bound[:, block], window.amax((1, 2)))


def test_first_max_gives_the_code_of_the_first_slot_reaching_the_maximum():
    values = torch.tensor([[[1.0, 5.0, 2.0], [3.0, 5.0, 2.0], [3.0, 4.0, 7.0]]])  # (1, 3 slots, 3 positions)
    codes = torch.tensor([[30.0], [20.0], [10.0]])[None]  # the first slot has the largest code
    best, code = _first_max(values, codes)
    assert best.tolist() == [[3.0, 5.0, 7.0]] and code.tolist() == [[20.0, 30.0, 10.0]]


def test_rle_matches_pycocotools():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    for trial in range(60):
        height, width = rng.integers(1, 40, size=2)
        mask = rng.random((height, width)) < rng.random()
        if trial % 10 == 0:
            mask[:] = trial % 20 == 0
        expected = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
        ours = rle.encode(mask)
        assert ours["counts"] == expected["counts"].decode("ascii") and ours["size"] == [height, width]
        assert np.array_equal(rle.decode(ours), mask)
        assert np.array_equal(mask_utils.decode(ours).astype(bool), mask)
    large = np.zeros((1000, 1200), dtype=bool)
    large[400:, 700:] = True  # runs longer than 2**16
    assert rle.encode(large)["counts"] == mask_utils.encode(np.asfortranarray(large.astype(np.uint8)))["counts"].decode()


def test_rle_of_a_box_equals_rle_of_the_full_mask():
    rng = np.random.default_rng(1)
    box = rng.random((7, 9)) < 0.5
    full = np.zeros((20, 30), dtype=bool)
    full[5:12, 13:22] = box
    assert rle.encode_box(box, 5, 13, 20, 30) == rle.encode(full)
