"""Augmentations keep image and masks aligned, are reproducible from the generator, and keep the sample consistent."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mask2former.data import (
    ColorJitter,
    Compose,
    LargeScaleJitter,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
    SegmentationDataset,
)
from mask2former.data.formats import Category
from mask2former.data.transforms import nearest_source_indices, resize_crop_pad

# corners of the RGB cube: none is a blend of the others (padding, grey 128, is left out by pixel_mask)
PALETTE = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [0, 255, 255], [255, 255, 255]], np.uint8)


def block_sample(seed: int, height: int = 60, width: int = 84) -> dict:
    """Overlapping rectangles coloured by class on a class-5 background; masks are the visible rectangles."""
    rng = np.random.default_rng(seed)
    owner = np.zeros((height, width), dtype=np.int64)
    labels = [5]
    for index in range(1, 7):
        y, x = rng.integers(-5, height - 5), rng.integers(-5, width - 5)
        owner[max(y, 0) : y + rng.integers(8, 30), max(x, 0) : x + rng.integers(8, 30)] = index
        labels.append(int(rng.integers(0, 5)))
    masks = owner[None] == np.arange(len(labels))[:, None, None]  # (N, H, W)
    keep = masks.any((1, 2))
    labels_array = np.array(labels)
    return {
        "image": PALETTE[labels_array[owner]],
        "masks": masks[keep],
        "class_labels": labels_array[keep],
        "iscrowd": (np.arange(len(labels)) == 3)[keep],
        "image_id": seed,
    }


def assert_aligned(sample: dict, min_fraction: float = 0.5) -> None:
    """Every pixel whose colour is (nearly) a palette colour lies in exactly one mask, of that colour's class."""
    image = sample["image"].astype(np.int64)
    valid = sample.get("pixel_mask", np.ones(image.shape[:2], dtype=bool))
    distance = np.abs(image[:, :, None, :] - PALETTE[None, None].astype(np.int64)).max(-1)  # (H, W, 6)
    pure = (distance.min(-1) <= 2) & valid
    colour_class = distance.argmin(-1)
    masks, labels = sample["masks"], sample["class_labels"]
    assert masks.shape[1:] == image.shape[:2] and len(masks) == len(labels) == len(sample["iscrowd"])
    assert (masks.sum(0)[pure] == 1).all()
    mask_class = np.tensordot(labels, masks.astype(np.int64), axes=1)  # (H, W): the covering mask's class
    assert np.array_equal(mask_class[pure], colour_class[pure])
    assert pure.sum() >= min_fraction * valid.sum()
    assert not masks[:, ~valid].any()
    assert masks.any((1, 2)).all()


def test_nearest_indices_follow_pil_geometry():
    """Mask resampling picks the pixel PIL's NEAREST picks (up to ties exactly on a pixel border)."""
    rng = np.random.default_rng(0)
    for _ in range(100):
        in_len, out_len = (int(v) for v in rng.integers(2, 80, 2))
        source = np.arange(in_len, dtype=np.uint8)[:, None]
        pil = np.asarray(Image.fromarray(source).resize((1, out_len), Image.NEAREST))[:, 0]
        tie = ((np.arange(out_len) + 0.5) * in_len / out_len) % 1 == 0
        assert np.array_equal(pil[~tie], nearest_source_indices(out_len, in_len)[~tie])


def test_resize_crop_masks_match_pil_nearest_on_the_same_box():
    """The kept window of a resize, for masks, equals PIL's NEAREST resize of the matching source box."""
    rng = np.random.default_rng(1)
    for seed in range(20):
        sample = block_sample(seed)
        height, width = sample["image"].shape[:2]
        owner = np.tensordot(np.arange(len(sample["masks"])), sample["masks"].astype(np.int64), axes=1)  # (H, W)
        new_h, new_w = (int(v) for v in rng.integers(10, 200, 2))
        top, left = int(rng.integers(0, new_h)), int(rng.integers(0, new_w))
        box_h, box_w = int(rng.integers(1, new_h - top + 1)), int(rng.integers(1, new_w - left + 1))
        scale_y, scale_x = new_h / height, new_w / width
        source_box = (left / scale_x, top / scale_y, (left + box_w) / scale_x, (top + box_h) / scale_y)
        expected = np.asarray(
            Image.fromarray(owner.astype(np.uint8)).resize((box_w, box_h), Image.NEAREST, box=source_box)
        )
        out = resize_crop_pad(sample, (new_h, new_w), (top, left, box_h, box_w))
        assert out["image"].shape == (box_h, box_w, 3)
        labels_in_window = out["class_labels"]
        got = np.full((box_h, box_w), -1)
        for mask, label in zip(out["masks"], labels_in_window):
            got[mask] = label
        expected_labels = sample["class_labels"][expected]  # (box_h, box_w)
        assert (got >= 0).all() and np.mean(got == expected_labels) >= 0.995  # ties on pixel borders may differ


@pytest.mark.parametrize("seed", range(12))
def test_large_scale_jitter_keeps_alignment(seed):
    rng = np.random.default_rng(seed)
    transform = Compose([RandomHorizontalFlip(), LargeScaleJitter(output_size=(64, 72), min_scale=0.1, max_scale=2.0)])
    sample = block_sample(seed)
    out = transform(sample, rng)
    assert out["image"].shape == (64, 72, 3) and out["pixel_mask"].shape == (64, 72)
    assert (out["image"][~out["pixel_mask"]] == 128).all()
    assert_aligned(out, min_fraction=0.3)
    assert out["image_id"] == seed
    assert sample["image"].shape == (60, 84, 3)  # the input sample is not modified


def test_large_scale_jitter_scales_and_pads():
    sample = block_sample(1)
    small = LargeScaleJitter(120, min_scale=0.5, max_scale=0.5)(sample, np.random.default_rng(0))
    # 60x84 fitted into 60x60 -> 43x60 real pixels, the rest padding
    assert small["pixel_mask"].sum(0).max() == 43 and small["pixel_mask"].sum(1).max() == 60
    assert_aligned(small)
    large = LargeScaleJitter(40, min_scale=2.0, max_scale=2.0)(sample, np.random.default_rng(0))
    assert large["pixel_mask"].all() and large["image"].shape == (40, 40, 3)
    assert_aligned(large, min_fraction=0.6)


def test_flip_resize_crop_recipe_keeps_alignment():
    transform = Compose(
        [
            ResizeShortestEdge([30, 45, 90], max_size=100),
            RandomCrop(40, single_category_max_area=0.75),
            ColorJitter(0.0, 0.0, 0.0),
            RandomHorizontalFlip(p=1.0),
        ]
    )
    for seed in range(8):
        out = transform(block_sample(seed), np.random.default_rng(seed))
        assert max(out["image"].shape[:2]) <= 40 and "pixel_mask" not in out
        assert_aligned(out, min_fraction=0.6)


def test_flip_exactly_mirrors():
    sample = block_sample(2)
    out = RandomHorizontalFlip(p=1.0)(sample, np.random.default_rng(0))
    assert np.array_equal(out["image"], sample["image"][:, ::-1])
    assert np.array_equal(out["masks"], sample["masks"][:, :, ::-1])
    assert RandomHorizontalFlip(p=0.0)(sample, np.random.default_rng(0)) is sample


def test_resize_shortest_edge_sizes():
    sample = block_sample(3)  # 60 x 84
    out = ResizeShortestEdge(30, max_size=1000)(sample, np.random.default_rng(0))
    assert out["image"].shape[:2] == (30, 42) and out["masks"].shape[1:] == (30, 42)
    capped = ResizeShortestEdge(600, max_size=168)(sample, np.random.default_rng(0))
    assert capped["image"].shape[:2] == (120, 168)


def test_crop_drops_empty_masks_and_respects_category_area():
    sample = block_sample(4)
    crop = RandomCrop((10, 10))
    for seed in range(5):
        out = crop(sample, np.random.default_rng(seed))
        assert len(out["masks"]) == len(out["class_labels"]) == len(out["iscrowd"]) <= len(sample["masks"])
        assert out["masks"].any((1, 2)).all()
    constrained = RandomCrop((20, 20), single_category_max_area=0.6, max_tries=50)
    out = constrained(sample, np.random.default_rng(0))
    areas = np.bincount(out["class_labels"], weights=out["masks"].sum((1, 2)))
    assert areas.max() < 0.6 * areas.sum()


def test_colour_jitter_touches_only_the_image():
    sample = block_sample(5)
    out = ColorJitter(0.4, 0.4, 0.4)(sample, np.random.default_rng(1))
    assert out["image"].dtype == np.uint8 and not np.array_equal(out["image"], sample["image"])
    assert out["masks"] is sample["masks"]
    identity = ColorJitter(0.0, 0.0, 0.0)(sample, np.random.default_rng(1))
    assert np.abs(identity["image"].astype(int) - sample["image"]).max() <= 1


class _Blocks(SegmentationDataset):
    def __init__(self, transform, seed):
        super().__init__([Category(i, i, str(i), True) for i in range(6)], transform, seed)

    def __len__(self):
        return 4

    def load(self, index):
        return block_sample(index)


def test_dataset_augmentation_is_reproducible_per_index_and_epoch():
    transform = Compose([RandomHorizontalFlip(), LargeScaleJitter(48)])
    first, second = _Blocks(transform, seed=7), _Blocks(transform, seed=7)
    backwards = [second[i] for i in reversed(range(4))][::-1]
    for index in range(4):
        assert np.array_equal(first[index]["image"], backwards[index]["image"])
        assert np.array_equal(first[index]["masks"], backwards[index]["masks"])
    before = first[0]["image"]
    first.set_epoch(1)
    assert not np.array_equal(first[0]["image"], before)
