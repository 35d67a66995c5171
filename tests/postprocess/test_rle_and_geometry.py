"""COCO RLE against pycocotools, and the mask geometry (upsample, crop, resize) against its definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mask2former.postprocess import rle
from mask2former.postprocess.geometry import ImageGeometry, mask_logits

# (mask h, w), padded size, valid size, target size
CASES = [
    ((20, 34), (80, 136), (77, 130), (50, 61)),  # crop, then shrink
    ((20, 34), (80, 136), (80, 136), (80, 136)),  # nothing to crop or resize
    ((20, 34), (80, 136), (61, 99), (300, 400)),  # crop, then enlarge
    ((7, 5), (28, 20), (25, 20), (3, 2)),  # tiny target
]


@pytest.mark.parametrize("low, padded, valid, target", CASES)
@pytest.mark.parametrize("chunk_values", [1 << 24, 1])  # all queries at once, one query at a time
def test_mask_logits_follow_the_chain(low, padded, valid, target, chunk_values):
    logits = torch.randn(5, *low, generator=torch.Generator().manual_seed(0))
    up = F.interpolate(logits[None], size=padded, mode="bilinear", align_corners=False)[:, :, : valid[0], : valid[1]]
    expected = F.interpolate(up, size=target, mode="bilinear", align_corners=False)[0]
    got = mask_logits(logits, ImageGeometry(padded, valid, target), chunk_values)
    assert got.shape == (5, *target) and torch.allclose(got, expected, atol=1e-6)


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
