"""The one image-file reader: what ``mask2former predict``, the datasets and ``evaluate`` see of a photo.

:func:`read_image` opens a file, applies its EXIF orientation (a phone photo is segmented as it is shown, not as its
sensor stored it) and converts every Pillow mode to 8-bit RGB with :func:`pil_to_rgb`:

- greyscale (``1``, ``L``) and palettes (``P``) are expanded to RGB;
- alpha (``RGBA``, ``LA``, ``PA``, palettes with transparency) is composited onto white, as the image processor does;
- 16-bit greyscale (``I;16*``, ``I``) maps 0..65535 onto 0..255 (``round(v * 255 / 65535)``), so a 16-bit file holding
  ``257 * v`` reads exactly as the 8-bit file holding ``v``;
- float greyscale (``F``) in [0, 1] is scaled by 255, other float values are clipped to 0..255;
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` use Pillow's conversion.

The image processor, given Pillow images, converts their modes with :func:`pil_to_rgb` too (16-bit and float images
excepted: it keeps their precision as floats); it does not rotate by EXIF, because it takes pixels as given (as
transformers does). Read files with :func:`read_image` to get the oriented picture.
"""

from __future__ import annotations

import os

import numpy as np
from PIL import Image, ImageOps

_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
SIXTEEN_BIT_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N"}
_ORIENTATION_TAG = 0x0112

# what callers catch to skip a file that is not a readable image
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def pil_to_rgb(image: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of a Pillow image of any mode (the module docstring lists the rules); RGB is returned as is."""
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        return _grey_to_rgb(np.clip(np.round(values * (255.0 / 65535.0)), 0, 255))
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)  # (H, W)
        finite = values[np.isfinite(values)]
        if finite.size and finite.min() >= 0.0 and finite.max() <= 1.0:
            values = values * 255.0
        return _grey_to_rgb(np.clip(np.round(np.nan_to_num(values)), 0, 255))
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return image.convert("RGB")
    except (ValueError, OSError) as error:
        raise ValueError(f"cannot convert a Pillow image of mode {mode!r} to RGB ({error}).") from error


def _grey_to_rgb(values: np.ndarray) -> Image.Image:
    grey = values.astype(np.uint8)  # (H, W)
    return Image.fromarray(np.repeat(grey[:, :, None], 3, axis=2))  # (H, W, 3)


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag of an opened image (1 = as stored, 2..8 = mirrored and/or rotated)."""
    try:
        value = image.getexif().get(_ORIENTATION_TAG, 1)
        return int(value) if int(value) in range(1, 9) else 1
    except (OSError, ValueError, TypeError, SyntaxError):  # a broken EXIF block: show the pixels as stored
        return 1


def oriented_rgb(image: Image.Image) -> Image.Image:
    """A decoded Pillow image turned as its EXIF orientation says and converted with :func:`pil_to_rgb`; a new image
    whose ``info["exif_orientation"]`` keeps the tag that was applied (1: none)."""
    orientation = exif_orientation(image)
    oriented = ImageOps.exif_transpose(image) if orientation != 1 else image
    rgb = pil_to_rgb(oriented)
    rgb = rgb.copy() if rgb is image else rgb
    rgb.info["exif_orientation"] = orientation
    return rgb


def read_image(path: str | os.PathLike[str]) -> Image.Image:
    """An image file as an 8-bit RGB Pillow image, fully decoded, turned as its EXIF orientation says (see
    :func:`oriented_rgb`). Raises ``FileNotFoundError`` for a missing file, ``OSError`` / ``ValueError`` naming the
    file for one that is not a readable image or has no pixels."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such image file.")
    try:
        with Image.open(path) as opened:
            opened.load()
            rgb = oriented_rgb(opened)
    except Image.DecompressionBombError:
        raise
    except (OSError, SyntaxError, ValueError) as error:
        raise OSError(f"{path}: cannot read it as an image ({error}).") from error
    if rgb.width == 0 or rgb.height == 0:
        raise ValueError(f"{path}: the image is empty ({rgb.width}x{rgb.height} pixels).")
    return rgb
