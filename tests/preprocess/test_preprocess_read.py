"""The one image reader (``mask2former.preprocess.read``): every Pillow mode to the same 8-bit RGB, EXIF orientation,
and the CLI segmenting a 16-bit or EXIF-rotated file exactly like the equivalent plain 8-bit picture."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image
from test_predict import tiny_model_dir

from mask2former.cli import main
from mask2former.preprocess.read import pil_to_rgb, read_image
from mask2former.preprocess import Mask2FormerImageProcessor

ORIENTATION = 0x0112


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_model_dir(tmp_path_factory.mktemp("tiny_model"))


def _pixels(seed: int = 0, height: int = 40, width: int = 56) -> np.ndarray:
    """Smooth colour blobs (a photo-like picture that survives JPEG), (H, W, 3) uint8."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([np.sin(x / 7 + seed) * 100 + 128, np.cos(y / 5) * 100 + 128, (x + y) * 2 % 256], axis=2)
    return rgb.astype(np.uint8)


def test_modes_convert_like_the_processor_documents(tmp_path):
    grey = _pixels()[:, :, 0]
    Image.fromarray(grey).save(tmp_path / "g8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    with Image.open(tmp_path / "g16.png") as opened:
        assert opened.mode == "I;16"
    assert np.array_equal(np.asarray(read_image(tmp_path / "g16.png")), np.asarray(read_image(tmp_path / "g8.png")))
    assert np.array_equal(np.asarray(read_image(tmp_path / "g8.png"))[:, :, 1], grey)

    rgba = np.dstack([_pixels(), np.full(grey.shape, 0, np.uint8)])  # fully transparent: white
    rgba[:10, :, 3] = 255  # opaque rows keep their colour
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    read = np.asarray(read_image(tmp_path / "rgba.png"))
    assert (read[10:] == 255).all() and np.array_equal(read[:10], _pixels()[:10])
    la = Image.fromarray(np.dstack([grey, np.zeros_like(grey)])).convert("LA")
    assert (np.asarray(pil_to_rgb(la)) == 255).all()

    palette = Image.fromarray(_pixels()).convert("P")
    assert np.array_equal(np.asarray(pil_to_rgb(palette)), np.asarray(palette.convert("RGB")))
    cmyk = Image.fromarray(_pixels()).convert("CMYK")
    cmyk.save(tmp_path / "cmyk.jpg")
    assert read_image(tmp_path / "cmyk.jpg").mode == "RGB"
    floats = Image.fromarray(grey.astype(np.float32) / 255.0)  # mode F in [0, 1]
    assert np.abs(np.asarray(pil_to_rgb(floats))[:, :, 0].astype(int) - grey).max() <= 1

    # the processor's conversion of 8-bit modes is the reader's
    for image in (la, palette, Image.fromarray(rgba)):
        ours = Mask2FormerImageProcessor()(pil_to_rgb(image), return_tensors="pt")["pixel_values"]
        theirs = Mask2FormerImageProcessor()(image, return_tensors="pt")["pixel_values"]
        assert np.array_equal(ours.numpy(), theirs.numpy())


@pytest.mark.parametrize("orientation, turn", [(3, lambda a: np.rot90(a, 2)), (6, lambda a: np.rot90(a, -1)),
                                               (8, lambda a: np.rot90(a, 1)), (2, lambda a: a[:, ::-1])])
def test_exif_orientation_is_applied(tmp_path, orientation, turn):
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    Image.fromarray(_pixels()).save(tmp_path / "photo.png", exif=exif)
    image = read_image(tmp_path / "photo.png")
    assert image.info["exif_orientation"] == orientation
    assert np.array_equal(np.asarray(image), turn(_pixels()))


def test_processor_refuses_an_empty_image_and_warns_about_rescaled_floats():
    processor = Mask2FormerImageProcessor()
    with pytest.raises(ValueError, match=r"no pixels \(0x0\)"):
        processor(np.zeros((0, 0, 3), np.uint8))
    with pytest.warns(UserWarning, match="do_rescale=False"):
        processor(np.random.default_rng(0).random((20, 24, 3)).astype(np.float32))


def _segments(folder, name):
    return json.loads((folder / f"{name}.json").read_text())


def test_cli_segments_16_bit_and_exif_rotated_files_like_their_plain_versions(tiny, tmp_path):
    grey = _pixels(seed=1)[:, :, 0]
    (tmp_path / "in").mkdir()
    Image.fromarray(grey).save(tmp_path / "in" / "grey8.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "in" / "grey16.png")

    exif = Image.Exif()
    exif[ORIENTATION] = 6  # stored sideways, shown turned 90 degrees clockwise
    Image.fromarray(_pixels(seed=2)).save(tmp_path / "in" / "phone.jpg", exif=exif, quality=95)
    with Image.open(tmp_path / "in" / "phone.jpg") as stored:  # the decoded pixels, as stored
        Image.fromarray(np.rot90(np.asarray(stored.convert("RGB")), -1)).save(tmp_path / "in" / "turned.png")

    out = tmp_path / "out"
    assert main(["predict", str(tmp_path / "in"), "--model", str(tiny), "--output-dir", str(out), "--threshold",
                 "0.1", "--no-progress"]) == 0
    grey8, grey16 = _segments(out, "grey8"), _segments(out, "grey16")
    assert grey8["segments"] and grey16["segments"] == grey8["segments"]
    phone, turned = _segments(out, "phone"), _segments(out, "turned")
    assert phone["exif_orientation"] == 6 and turned["exif_orientation"] == 1
    assert (phone["height"], phone["width"]) == (56, 40)
    assert phone["segments"] and phone["segments"] == turned["segments"]
    assert np.array_equal(np.asarray(Image.open(out / "grey16.png")), np.asarray(Image.open(out / "grey8.png")))
