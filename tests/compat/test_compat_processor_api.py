"""The image processor's other API against transformers: serialisation and round trips through both libraries, the
public ``resize``/``rescale``/``normalize``/``pad`` steps, semantic scores and transformers' run-length helpers."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import PIL.Image
import pytest
import torch

from mask2former import Mask2FormerImageProcessor

hf_module = pytest.importorskip("transformers.models.mask2former.image_processing_pil_mask2former")
HFProcessor = hf_module.Mask2FormerImageProcessorPil
SizeDict = pytest.importorskip("transformers.image_utils").SizeDict

SETTINGS = {
    "defaults": {},
    "custom": {"size": {"shortest_edge": 64, "longest_edge": 96}, "size_divisor": 16, "ignore_index": 255,
               "do_reduce_labels": True, "image_mean": [0.4, 0.5, 0.6], "image_std": [0.2, 0.3, 0.4],
               "resample": 3, "num_labels": 7},
    "height_width_no_normalize": {"size": {"height": 48, "width": 64}, "do_normalize": False},
    "no_rgb_conversion": {"do_convert_rgb": False, "size": {"height": 40, "width": 40}},
}


def image(seed: int = 0, height: int = 30, width: int = 45) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def same_outputs(a, b) -> bool:
    return all(np.allclose(np.asarray(a[key]), np.asarray(b[key]), atol=1e-5) for key in ("pixel_values", "pixel_mask"))


# --- serialisation ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", list(SETTINGS))
def test_round_trips_through_both_libraries(tmp_path, setting):
    kwargs = SETTINGS[setting]
    inputs = [image(1), image(2, 41, 29)]
    ours, theirs = Mask2FormerImageProcessor(**kwargs), HFProcessor(**kwargs)
    written = ours.save_pretrained(tmp_path / "ours")
    assert written == [str(tmp_path / "ours" / "preprocessor_config.json")]
    assert theirs.save_pretrained(tmp_path / "theirs") == [str(tmp_path / "theirs" / "preprocessor_config.json")]
    read_by_them = HFProcessor.from_pretrained(tmp_path / "ours")
    read_by_us = Mask2FormerImageProcessor.from_pretrained(tmp_path / "theirs")
    reference = theirs(inputs, return_tensors="np")
    for processor in (ours, read_by_us, read_by_them, Mask2FormerImageProcessor.from_pretrained(tmp_path / "ours")):
        assert same_outputs(processor(inputs, return_tensors="np"), reference)
    for key, value in kwargs.items():
        theirs_value = getattr(read_by_them, key)
        if key == "size":
            theirs_value = {name: getattr(theirs_value, name) for name in value}
        as_list = (lambda v: list(v) if isinstance(v, (list, tuple)) else v)  # noqa: E731
        assert as_list(getattr(read_by_us, key)) == as_list(theirs_value) == as_list(value), key


def test_json_methods(tmp_path):
    processor = Mask2FormerImageProcessor(**SETTINGS["custom"])
    processor.to_json_file(tmp_path / "p.json")
    assert json.loads((tmp_path / "p.json").read_text()) == processor.to_dict() == json.loads(
        processor.to_json_string())
    again = Mask2FormerImageProcessor.from_json_file(tmp_path / "p.json")
    assert again.to_dict() == processor.to_dict()
    HFProcessor(**SETTINGS["custom"]).to_json_file(tmp_path / "theirs.json")
    from_theirs = Mask2FormerImageProcessor.from_json_file(tmp_path / "theirs.json")
    assert same_outputs(from_theirs(image(3), return_tensors="np"), processor(image(3), return_tensors="np"))
    assert processor.to_dict()["image_processor_type"] == "Mask2FormerImageProcessor"


def test_from_dict_keywords_set_attributes():
    base = Mask2FormerImageProcessor().to_dict()
    for library in (Mask2FormerImageProcessor, HFProcessor):
        processor = library.from_dict(base, do_resize=False, ignore_index=3, do_convert_rgb=False)
        assert (processor.do_resize, processor.ignore_index, processor.do_convert_rgb) == (False, 3, False)
        processor, unused = library.from_dict(base, size_divisor=8, not_a_setting=1, return_unused_kwargs=True)
        assert processor.size_divisor == 8 and unused == {"not_a_setting": 1}


def test_subfolder(tmp_path):
    HFProcessor(size_divisor=8).save_pretrained(tmp_path / "sub")
    assert Mask2FormerImageProcessor.from_pretrained(tmp_path, subfolder="sub").size_divisor == 8


def test_do_convert_rgb_is_kept_and_written():
    for value in (True, False):
        processor = Mask2FormerImageProcessor(do_convert_rgb=value)
        assert processor.do_convert_rgb is value and processor.to_dict()["do_convert_rgb"] is value
    assert Mask2FormerImageProcessor().do_convert_rgb is True  # ours converts by default (docs/processing.md)
    assert Mask2FormerImageProcessor.from_dict({"do_convert_rgb": None}).do_convert_rgb is None


# --- public steps ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [{"shortest_edge": 48, "longest_edge": 80}, {"height": 40, "width": 56},
                                  {"max_height": 50, "max_width": 40}])
@pytest.mark.parametrize("size_divisor", [0, 32])
@pytest.mark.parametrize("channels", [1, 3])
def test_resize(size, size_divisor, channels):
    chw = np.ascontiguousarray(image(4)[:, :, :channels].transpose(2, 0, 1))
    expected = HFProcessor().resize(chw, SizeDict(**size), size_divisor=size_divisor)
    for given in (size, SizeDict(**size)):
        got = Mask2FormerImageProcessor().resize(chw, given, size_divisor=size_divisor)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
    nearest = HFProcessor().resize(chw, SizeDict(**size), size_divisor=size_divisor, resample=0)
    assert np.array_equal(Mask2FormerImageProcessor().resize(chw, size, size_divisor=size_divisor, resample=0),
                          nearest)


def test_rescale_and_normalize():
    chw = np.ascontiguousarray(image(5).transpose(2, 0, 1))
    ours, theirs = Mask2FormerImageProcessor(), HFProcessor()
    rescaled = ours.rescale(chw, 1 / 255)
    assert rescaled.dtype == np.float32 and np.allclose(rescaled, theirs.rescale(chw, 1 / 255))
    for mean, std in (([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]), (0.5, 0.25)):
        got, expected = ours.normalize(rescaled, mean, std), theirs.normalize(rescaled, mean, std)
        assert got.dtype == expected.dtype and np.allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match="mean"):
        ours.normalize(rescaled, [0.5, 0.5], [0.5, 0.5])


def test_pad():
    images = [np.ascontiguousarray(image(6).transpose(2, 0, 1)),
              np.ascontiguousarray(image(7, 20, 50).transpose(2, 0, 1))]
    maps = [np.ones((3, 30, 45), dtype=np.float32), np.ones((2, 20, 50), dtype=np.float32)]
    ours = Mask2FormerImageProcessor().pad(images, (32, 64), segmentation_maps=maps, fill=0, ignore_index=255)
    theirs = HFProcessor().pad(images, (32, 64), segmentation_maps=maps, fill=0, ignore_index=255)
    for got, expected in zip(ours, theirs):
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.dtype == b.dtype and np.array_equal(a, b)
    padded, masks, none = Mask2FormerImageProcessor().pad(images, (32, 64))
    assert none is None and masks[1].sum() == 20 * 50
    with pytest.raises(ValueError, match="smaller"):
        Mask2FormerImageProcessor().pad(images, (25, 64))


# --- post-processing ------------------------------------------------------------------------------------------------


def _outputs(batch: int = 2, queries: int = 5, classes: int = 4, height: int = 24, width: int = 32):
    generator = torch.Generator().manual_seed(0)
    return SimpleNamespace(
        class_queries_logits=torch.randn(batch, queries, classes + 1, generator=generator) * 3,
        masks_queries_logits=torch.randn(batch, queries, height, width, generator=generator) * 4,
    )


@pytest.mark.parametrize("target_sizes", [None, [(40, 50), (30, 20)]])
def test_semantic_segmentation_scores(target_sizes):
    outputs = _outputs()
    processor = Mask2FormerImageProcessor()
    maps = processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes)
    results = processor.post_process_semantic_segmentation(outputs, target_sizes=target_sizes,
                                                           return_segmentation_scores=True)
    theirs = HFProcessor().post_process_semantic_segmentation(outputs, target_sizes=target_sizes,
                                                              return_segmentation_scores=True)
    assert len(results) == len(theirs) == 2
    for result, their, segmentation in zip(results, theirs, maps):
        assert set(result.keys()) == set(their.keys()) == {"segmentation", "segmentation_scores"}
        assert torch.equal(result.segmentation, result["segmentation"])
        assert torch.equal(result.segmentation, segmentation)
        scores = result.segmentation_scores
        assert scores.shape == (4, *segmentation.shape) and scores.dtype == torch.float32
        assert torch.equal(scores.argmax(0), segmentation)
        if target_sizes is not None:  # at the requested size both; the values differ by design (docs)
            assert scores.shape == their.segmentation_scores.shape


def test_run_length_helpers_match_transformers():
    from mask2former.preprocess.image_processor import binary_mask_to_rle, convert_segmentation_to_rle

    rng = np.random.default_rng(0)
    segmentation = torch.from_numpy(rng.integers(0, 4, (13, 17)))
    segmentation[:, :3] = 7
    for mask in (segmentation == 2, (segmentation == 2).numpy(), torch.zeros(4, 5, dtype=torch.bool),
                 torch.ones(4, 5, dtype=torch.long)):
        assert binary_mask_to_rle(mask) == [int(v) for v in hf_module.binary_mask_to_rle(mask)]
    ours = convert_segmentation_to_rle(segmentation)
    theirs = hf_module.convert_segmentation_to_rle(segmentation)
    assert ours == [[int(v) for v in rle] for rle in theirs]
    from mask2former.postprocess import binary_mask_to_rle as exported

    assert exported is binary_mask_to_rle

