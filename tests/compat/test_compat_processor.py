"""The image processor against transformers' (its Pillow backend, ``Mask2FormerImageProcessorPil``): the same
arguments over the combinations users pass give the same outputs.

Compared: every key, the container each ``return_tensors`` gives, dtypes and values. ``mask_labels`` are compared
inside each image's valid region (ours are bool and zero on the padding, theirs float with ``ignore_index`` there:
deliberate differences, docs/processing.md).
"""

from __future__ import annotations

import itertools

import numpy as np
import PIL.Image
import pytest
import torch

from mask2former import Mask2FormerImageProcessor

hf_module = pytest.importorskip("transformers.models.mask2former.image_processing_pil_mask2former")
HFProcessor = hf_module.Mask2FormerImageProcessorPil

SIZES = [(30, 45), (41, 29)]  # (height, width) of the two images of a list
SMALL = {"size": {"shortest_edge": 48, "longest_edge": 80}}


def make_image(height: int, width: int, seed: int, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, channels), dtype=np.uint8)


def make_map(height: int, width: int, seed: int, high: int = 5) -> np.ndarray:
    """Blocky label ids 0..high-1 (each id a few rectangles), as uint8."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, high, (max(height // 6, 1) + 1, max(width // 6, 1) + 1), dtype=np.uint8)
    return np.repeat(np.repeat(coarse, 6, axis=0), 6, axis=1)[:height, :width].copy()


def as_kind(image: np.ndarray, kind: str):
    """An (H, W, C) uint8 array as the input kind users pass."""
    if kind == "pil":
        return PIL.Image.fromarray(image)
    if kind == "np_hwc":
        return image
    if kind == "np_chw":
        return np.ascontiguousarray(image.transpose(2, 0, 1))
    if kind == "torch_chw":
        return torch.from_numpy(image).permute(2, 0, 1).contiguous()
    if kind == "torch_hwc":
        return torch.from_numpy(image)
    raise AssertionError(kind)


def map_as_kind(label_map: np.ndarray, kind: str):
    if kind == "pil":
        return PIL.Image.fromarray(label_map)
    if kind == "np":
        return label_map
    if kind == "torch":
        return torch.from_numpy(label_map.astype(np.int64))
    raise AssertionError(kind)


def as_numpy(value) -> np.ndarray:
    return value.numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def assert_container(value, return_tensors):
    if return_tensors == "pt":
        assert isinstance(value, torch.Tensor)
    elif return_tensors == "np":
        assert isinstance(value, np.ndarray)
    else:
        assert isinstance(value, list) and all(isinstance(item, np.ndarray) for item in value)


def assert_same(ours, theirs, return_tensors=None, tolerance=1e-5):
    assert set(ours) == set(theirs)
    for key in ("pixel_values", "pixel_mask"):
        assert_container(ours[key], return_tensors)
        assert_container(theirs[key], return_tensors)
        got, expected = as_numpy(ours[key]), as_numpy(theirs[key])
        if return_tensors is None:
            assert [a.dtype for a in ours[key]] == [b.dtype for b in theirs[key]]
        assert got.dtype == expected.dtype, key
        assert got.shape == expected.shape, key
        assert np.abs(got.astype(np.float64) - expected.astype(np.float64)).max(initial=0.0) <= tolerance, key
    if "mask_labels" not in theirs:
        return
    valid_masks = [as_numpy(mask) for mask in ours["pixel_mask"]]
    for masks, their_masks, classes, their_classes, valid in zip(
        ours["mask_labels"], theirs["mask_labels"], ours["class_labels"], theirs["class_labels"], valid_masks
    ):
        wanted = torch.Tensor if return_tensors == "pt" else np.ndarray
        assert isinstance(masks, wanted) and isinstance(classes, wanted)
        assert np.array_equal(as_numpy(classes), as_numpy(their_classes))
        rows, cols = int(valid.any(1).sum()), int(valid.any(0).sum())
        got, expected = as_numpy(masks), as_numpy(their_masks)
        assert got.shape == expected.shape
        assert np.array_equal(got[:, :rows, :cols].astype(bool), expected[:, :rows, :cols].astype(bool))


def both(images, maps=None, init=None, **call):
    init = dict(init or {})
    ours = Mask2FormerImageProcessor(**init)(images, segmentation_maps=maps, **call)
    theirs = HFProcessor(**init)(images, segmentation_maps=maps, **call)
    return ours, theirs


# --- images: input kinds, batches, layouts, return types ---------------------------------------------------------

KINDS = ["pil", "np_hwc", "np_chw", "torch_chw", "torch_hwc"]
# A 4-D batch is an array or a tensor, (B, C, H, W) here.
INPUT_CASES = [(kind, batch, return_tensors) for kind in KINDS for batch in ("single", "list", "4d")
               for return_tensors in ("pt", "np", None) if batch != "4d" or kind in ("np_chw", "torch_chw")]


@pytest.mark.parametrize(("kind", "batch", "return_tensors"), INPUT_CASES)
def test_input_kinds_batches_and_return_types(kind, batch, return_tensors):
    first, second = make_image(*SIZES[0], seed=1), make_image(*SIZES[1], seed=2)
    if batch == "single":
        images = as_kind(first, kind)
    elif batch == "list":
        images = [as_kind(first, kind), as_kind(second, kind)]
    else:
        stacked = np.stack([first, make_image(*SIZES[0], seed=3)])  # (2, H, W, 3)
        images = np.ascontiguousarray(stacked.transpose(0, 3, 1, 2)) if kind == "np_chw" else torch.from_numpy(
            stacked).permute(0, 3, 1, 2).contiguous()
    assert_same(*both(images, init=SMALL, return_tensors=return_tensors), return_tensors)


@pytest.mark.parametrize("layout", ["channels_first", "channels_last"])
def test_explicit_input_data_format(layout):
    image = make_image(30, 45, seed=4)
    array = np.ascontiguousarray(image.transpose(2, 0, 1)) if layout == "channels_first" else image
    assert_same(*both([array, array[..., :20] if layout == "channels_first" else array[:, :20]], init=SMALL,
                      input_data_format=layout, return_tensors="pt"), "pt")


# --- sizes ----------------------------------------------------------------------------------------------------------

SIZE_SETTINGS = {
    "shortest_longest": {"size": {"shortest_edge": 48, "longest_edge": 80}},
    "longest_limits": {"size": {"shortest_edge": 64, "longest_edge": 70}},
    "height_width": {"size": {"height": 40, "width": 56}},
    "int_with_max_size": {"size": 48, "max_size": 70},
    "max_size_only": {"max_size": 96},
    "max_height_width": {"size": {"max_height": 50, "max_width": 40}},
}


@pytest.mark.parametrize("size_divisor", [0, 8, 32])
@pytest.mark.parametrize("setting", list(SIZE_SETTINGS))
def test_sizes_and_size_divisor(setting, size_divisor):
    images = [make_image(*SIZES[0], seed=5), make_image(*SIZES[1], seed=6)]
    init = dict(SIZE_SETTINGS[setting], size_divisor=size_divisor)
    assert_same(*both(images, init=init, return_tensors="pt"), "pt")


def test_shortest_edge_alone():
    """transformers' Pillow backend needs a longest_edge with shortest_edge; ours resizes the short side alone."""
    image = make_image(30, 45, seed=5)
    with pytest.raises(ValueError, match="longest_edge"):
        HFProcessor(size=48)(image)
    out = Mask2FormerImageProcessor(size=48, size_divisor=0)(image, return_tensors="pt")
    assert out["pixel_values"].shape == (1, 3, 48, 72)


def test_size_given_at_call_time():
    images = [make_image(*SIZES[0], seed=5), make_image(*SIZES[1], seed=6)]
    assert_same(*both(images, size={"height": 40, "width": 56}, size_divisor=16, return_tensors="pt"), "pt")


# --- steps switched off ---------------------------------------------------------------------------------------------

FLAGS = {
    "no_resize": {"do_resize": False},
    "no_rescale": {"do_rescale": False},
    "no_normalize": {"do_normalize": False},
    "no_rescale_no_normalize": {"do_rescale": False, "do_normalize": False},
    "nothing": {"do_resize": False, "do_rescale": False, "do_normalize": False},
    "own_mean_std": {"image_mean": [0.3, 0.4, 0.5], "image_std": [0.2, 0.25, 0.3]},
    "scalar_mean_std": {"image_mean": 0.5, "image_std": 0.25},
    "rescale_factor": {"rescale_factor": 1 / 127.5},
}


@pytest.mark.parametrize("return_tensors", ["pt", "np", None])
@pytest.mark.parametrize("flags", list(FLAGS))
def test_steps_switched_off(flags, return_tensors):
    images = [make_image(*SIZES[0], seed=7), PIL.Image.fromarray(make_image(*SIZES[1], seed=8))]
    ours, theirs = both(images, init={**SMALL, **FLAGS[flags]}, return_tensors=return_tensors)
    assert_same(ours, theirs, return_tensors, tolerance=1e-5 if FLAGS[flags].get("do_rescale", True) else 1e-3)


def test_flags_given_at_call_time():
    images = [make_image(*SIZES[0], seed=7), make_image(*SIZES[1], seed=8)]
    assert_same(*both(images, init=SMALL, do_rescale=False, do_normalize=False, return_tensors="pt"), "pt")


# --- channels kept: do_convert_rgb=False --------------------------------------------------------------------------

@pytest.mark.parametrize("do_resize", [True, False])
@pytest.mark.parametrize("channels", [1, 2, 3, 4, 5])
def test_channels_kept_without_rgb_conversion(channels, do_resize):
    mean, std = [0.1 * (c + 2) for c in range(channels)], [0.2 + 0.05 * c for c in range(channels)]
    init = dict(SMALL, do_convert_rgb=False, image_mean=mean, image_std=std, do_resize=do_resize)
    images = [make_image(30, 45, 9, channels), make_image(41, 29, 10, channels)]
    for layout in ("channels_last", "channels_first"):
        arrays = images if layout == "channels_last" else [np.ascontiguousarray(i.transpose(2, 0, 1)) for i in images]
        if channels == 5 and do_resize:  # transformers' Pillow backend cannot resize 5 channels; ours plane by plane
            with pytest.raises(TypeError):
                HFProcessor(**init)(arrays, input_data_format=layout)
            out = Mask2FormerImageProcessor(**init)(arrays, input_data_format=layout, return_tensors="pt")
            assert out["pixel_values"].shape == (2, 5, 96, 96)
            continue
        ours, theirs = both(arrays, init=init, input_data_format=layout, return_tensors="pt")
        assert ours["pixel_values"].shape[1] == channels
        assert_same(ours, theirs, "pt")
    processor = Mask2FormerImageProcessor(do_convert_rgb=False)
    assert processor.do_convert_rgb is False and processor.to_dict()["do_convert_rgb"] is False


def test_five_channels_resize_plane_by_plane():
    image = make_image(30, 45, 11, 5)
    mean, std = [0.5] * 5, [0.25] * 5
    out = Mask2FormerImageProcessor(**SMALL, do_convert_rgb=False, image_mean=mean, image_std=std)(
        image, input_data_format="channels_last", return_tensors="pt")
    planes = [np.asarray(PIL.Image.fromarray(image[:, :, c]).resize((96, 64), PIL.Image.Resampling.BILINEAR))
              for c in range(5)]
    expected = (np.stack(planes) / 255.0 - 0.5) / 0.25
    assert out["pixel_values"].shape == (1, 5, 64, 96)  # 48x72 rounded up to multiples of size_divisor 32
    assert np.abs(out["pixel_values"][0].numpy() - expected).max() < 1e-5


@pytest.mark.parametrize("mode", ["L", "LA", "RGBA"])
def test_pil_modes_without_rgb_conversion(mode):
    channels = {"L": 1, "LA": 2, "RGBA": 4}[mode]
    image = make_image(30, 45, 12, channels)
    pil = PIL.Image.fromarray(image[:, :, 0] if channels == 1 else image, mode=mode)
    init = dict(SMALL, do_convert_rgb=False, image_mean=[0.5] * channels, image_std=[0.5] * channels)
    assert_same(*both(pil, init=init, return_tensors="pt"), "pt")


def test_mean_of_the_wrong_length_is_a_clear_error():
    with pytest.raises(ValueError, match="image_mean"):
        Mask2FormerImageProcessor(do_convert_rgb=False, image_mean=[0.5] * 2, image_std=[0.5] * 2)(
            make_image(20, 30, 0, 4), input_data_format="channels_last")


# --- segmentation maps ------------------------------------------------------------------------------------------------

LABEL_CASES = list(itertools.product(["pil", "np", "torch"], ["same", "other"], [0, 255, None], [False, True]))


@pytest.mark.parametrize(("map_kind", "map_size", "ignore_index", "reduce"), LABEL_CASES)
def test_segmentation_maps(map_kind, map_size, ignore_index, reduce):
    images = [make_image(*SIZES[0], seed=13), make_image(*SIZES[1], seed=14)]
    factor = 1 if map_size == "same" else 2
    maps = [map_as_kind(make_map(h * factor, w * factor, seed=15 + i), map_kind) for i, (h, w) in enumerate(SIZES)]
    init = dict(SMALL, ignore_index=ignore_index, do_reduce_labels=reduce)
    if ignore_index is None and reduce:  # reducing labels needs an ignore_index in both
        for processor in (Mask2FormerImageProcessor(**init), HFProcessor(**init)):
            with pytest.raises(ValueError, match="ignore_index"):
                processor(images, maps)
        return
    if ignore_index is None:  # transformers pads the targets with ignore_index: None fails once padding is needed
        Mask2FormerImageProcessor(**init)(images, maps, return_tensors="pt")
        images, maps = images[:1], maps[:1]
    for return_tensors in ("pt", "np"):
        assert_same(*both(images, maps, init=init, return_tensors=return_tensors), return_tensors)


@pytest.mark.parametrize("size", [{"height": 40, "width": 56}, {"shortest_edge": 48, "longest_edge": 80}])
def test_segmentation_map_of_another_size_is_resized_with_its_image(size):
    image = make_image(30, 45, seed=16)
    label_map = make_map(60, 90, seed=17)
    assert_same(*both(image, label_map, init={"size": size}, return_tensors="pt"), "pt")


@pytest.mark.parametrize("per_image", [True, False])
def test_instance_maps_with_instance_id_to_semantic_id(per_image):
    images = [make_image(*SIZES[0], seed=18), make_image(*SIZES[1], seed=19)]
    maps = [make_map(h, w, seed=20 + i, high=6) for i, (h, w) in enumerate(SIZES)]
    mappings = [{0: 0, 1: 2, 2: 2, 3: 1, 4: 3, 5: 1}, {0: 1, 1: 0, 2: 3, 3: 3, 4: 2, 5: 2}]
    mapping = mappings if per_image else mappings[0]
    for reduce in (False, True):
        init = dict(SMALL, ignore_index=255, do_reduce_labels=reduce)
        assert_same(*both(images, maps, init=init, instance_id_to_semantic_id=mapping, return_tensors="pt"), "pt")


def test_maps_without_resizing():
    images = [make_image(*SIZES[0], seed=21), make_image(*SIZES[1], seed=22)]
    maps = [make_map(h, w, seed=23 + i) for i, (h, w) in enumerate(SIZES)]
    assert_same(*both(images, maps, init={"do_resize": False, "ignore_index": 255}, return_tensors="pt"), "pt")
    with pytest.raises(ValueError, match="do_resize"):
        Mask2FormerImageProcessor(do_resize=False)(images[0], make_map(60, 90, seed=1))
