"""Turning user inputs (PIL images, numpy arrays, torch tensors) into plain RGB arrays and integer label maps.

Every image leaves here as an (H, W, 3) array that is either ``uint8`` (values 0..255, the fast and
transformers-compatible path) or ``float32`` (values kept as given). Label maps leave as (H, W) ``int64``.
"""

from __future__ import annotations

import warnings
from typing import Any, Sequence

import numpy as np
import PIL.Image
import torch

from .read import SIXTEEN_BIT_MODES, pil_to_rgb

CHANNELS_FIRST = "channels_first"
CHANNELS_LAST = "channels_last"


def layout_name(data_format: Any) -> str | None:
    """Accept "channels_first"/"channels_last", "first"/"last" or an enum whose ``value`` is one of those."""
    if data_format is None:
        return None
    name = str(getattr(data_format, "value", data_format)).lower()
    if name in (CHANNELS_FIRST, "first", "chw"):
        return CHANNELS_FIRST
    if name in (CHANNELS_LAST, "last", "hwc"):
        return CHANNELS_LAST
    raise ValueError(f"input_data_format must be 'channels_first' or 'channels_last', got {data_format!r}.")


def split_batch(images: Any, what: str = "images") -> list[Any]:
    """A single image, a list/tuple of images, or a 4-D array/tensor (a batch along axis 0) -> list of images."""
    if isinstance(images, (list, tuple)):
        if len(images) == 0:
            raise ValueError(f"Got an empty list of {what}; pass at least one.")
        return list(images)
    if isinstance(images, (np.ndarray, torch.Tensor)) and images.ndim == 4:
        return list(images)
    return [images]


def _composite_on_white(rgb: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Blend an (H, W, 3) image over a white background with an (H, W, 1) alpha in the same value scale."""
    if rgb.dtype == np.uint8:
        a = alpha.astype(np.float64) / 255.0
        blended = a * rgb + (1.0 - a) * 255.0
        return np.round(blended).astype(np.uint8)
    if rgb.min(initial=0.0) < 0.0 or rgb.max(initial=0.0) > 1.0 or alpha.min(initial=0.0) < 0.0 or alpha.max(
        initial=0.0
    ) > 1.0:
        raise ValueError(
            "A float RGBA image must hold values in [0, 1] to be composited onto white; "
            "scale it to [0, 1] or pass uint8."
        )
    return (alpha * rgb + (1.0 - alpha)).astype(np.float32)


def _decode(image: PIL.Image.Image) -> None:
    """Decode a lazily opened Pillow image now, so that a corrupt file gives a clear error."""
    try:
        image.load()
    except (OSError, SyntaxError) as error:
        raise ValueError(f"Could not decode the image ({error}); the file may be truncated or corrupt.") from error


def _as_array(image: Any) -> np.ndarray:
    """A numpy array or torch tensor (any device) as a numpy array; anything else is refused."""
    if isinstance(image, torch.Tensor):
        return image.detach().cpu().numpy()
    if not isinstance(image, np.ndarray):
        raise ValueError(
            f"Unsupported image type {type(image).__name__}; pass a PIL image, a numpy array or a torch tensor."
        )
    return image


def _pil_to_rgb(image: PIL.Image.Image) -> PIL.Image.Image | np.ndarray:
    """8-bit images stay Pillow images in mode RGB (resizing them then needs no copy); 16-bit and float -> arrays.

    A lazily opened file is decoded here, so that a corrupt file gives a clear error."""
    _decode(image)
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in SIXTEEN_BIT_MODES:
        # 16-bit greyscale: map 0..65535 onto 0..255 without losing precision (float path).
        gray = np.asarray(image).astype(np.float32) * np.float32(255.0 / 65535.0)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":
        gray = np.asarray(image, dtype=np.float32)
        return np.repeat(gray[:, :, None], 3, axis=2)
    return pil_to_rgb(image)  # the file reader's rules: alpha onto white, palettes, CMYK, ...


def array_to_hwc(array: np.ndarray, data_format: str | None, any_channels: bool = False) -> np.ndarray:
    """(H, W), (C, H, W) or (H, W, C) -> (H, W, C); C in 1, 3, 4 unless ``any_channels``."""
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise ValueError(
            f"An image must have 2 (H, W) or 3 (C, H, W or H, W, C) dimensions, got shape {tuple(array.shape)}; "
            "pass a batch as a list or a 4-D array."
        )
    if data_format is None:
        # Same rule as transformers: a leading axis of 1, 3 or 4 wins when both ends could be channels.
        if array.shape[0] in (1, 3, 4):
            data_format = CHANNELS_FIRST
        elif array.shape[2] in (1, 3, 4):
            data_format = CHANNELS_LAST
        else:
            raise ValueError(
                f"Cannot tell the channel axis of an image of shape {tuple(array.shape)}: neither the first nor the "
                "last axis has 1, 3 or 4 channels. Pass input_data_format='channels_first' or 'channels_last'."
            )
    if data_format == CHANNELS_FIRST:
        array = np.moveaxis(array, 0, 2)
    if array.shape[2] not in (1, 3, 4) and not any_channels:
        raise ValueError(f"An image must have 1, 3 or 4 channels, got {array.shape[2]} (shape {tuple(array.shape)}).")
    return array


def to_channels(image: Any, input_data_format: Any = None) -> np.ndarray:
    """One image -> an (H, W, C) ``uint8`` or ``float32`` array with its own channels (``do_convert_rgb=False``).

    PIL images give their bands (L: 1, LA: 2, RGB: 3, RGBA: 4, ...); arrays and tensors may have any channel count
    when ``input_data_format`` says where it is. No greyscale replication, no alpha compositing."""
    if isinstance(image, PIL.Image.Image):
        _decode(image)
        if image.mode not in ("L", "LA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV", "F"):
            raise ValueError(f"A PIL image of mode {image.mode!r} has no plain channels to keep; convert it first "
                             "or use do_convert_rgb=True.")
        array = array_to_hwc(np.asarray(image), CHANNELS_LAST, any_channels=True)
    else:
        array = array_to_hwc(_as_array(image), layout_name(input_data_format), any_channels=True)
    if np.issubdtype(array.dtype, np.floating):
        return array.astype(np.float32, copy=False)
    if array.dtype != np.uint8:
        raise ValueError(f"With do_convert_rgb=False images must be uint8 or float, got {array.dtype}; convert them "
                         "or use do_convert_rgb=True.")
    return array


def _array_to_rgb(array: np.ndarray, data_format: str | None) -> np.ndarray:
    array = array_to_hwc(array, data_format)  # (H, W, C)
    if array.dtype == np.bool_:
        array = array.astype(np.uint8) * 255
    elif array.dtype == np.uint16:
        array = array.astype(np.float32) * np.float32(255.0 / 65535.0)
    elif np.issubdtype(array.dtype, np.integer) and array.dtype != np.uint8:
        low, high = (int(array.min()), int(array.max())) if array.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(
                f"An integer image of dtype {array.dtype} must hold values in 0..255, got {low}..{high}. "
                "Pass 8-bit images as uint8, 16-bit images as uint16, or floats."
            )
        array = array.astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float32, copy=False)
    elif array.dtype != np.uint8:
        raise ValueError(f"Unsupported image dtype {array.dtype}; pass uint8, uint16, bool or a float type.")

    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 4:
        return _composite_on_white(array[:, :, :3], array[:, :, 3:])
    return array


def to_rgb(image: Any, input_data_format: Any = None) -> np.ndarray | PIL.Image.Image:
    """One image -> an RGB Pillow image (8-bit Pillow inputs) or an (H, W, 3) ``uint8`` or ``float32`` array.

    Greyscale is replicated to three channels; alpha (RGBA, LA, palettes with transparency) is composited onto white;
    16-bit images (uint16 arrays, PIL "I;16"/"I") are mapped from 0..65535 to 0..255 as floats; other integer arrays
    must hold 0..255; float arrays are kept as they are.
    """
    if isinstance(image, PIL.Image.Image):
        rgb = _pil_to_rgb(image)
    else:
        rgb = _array_to_rgb(_as_array(image), layout_name(input_data_format))
    height, width = image_size(rgb)
    if height == 0 or width == 0:
        raise ValueError(f"An image has no pixels ({height}x{width}); pass images of at least 1x1 pixel.")
    return rgb


def warn_if_already_rescaled(images: Sequence[np.ndarray | PIL.Image.Image], do_rescale: bool) -> None:
    """Warn (once per process, Python's default filter) when float images already in [0, 1] are about to be
    multiplied by ``rescale_factor`` again: they would come out nearly black."""
    if not do_rescale:
        return
    for image in images:
        if isinstance(image, np.ndarray) and image.dtype == np.float32 and image.size and float(image.max()) <= 1.0:
            warnings.warn("Float images with values in [0, 1] are being rescaled by rescale_factor (1/255) again; "
                          "if they are already scaled, pass do_rescale=False (or give uint8 images).", UserWarning,
                          stacklevel=3)
            return


def image_size(image: np.ndarray | PIL.Image.Image) -> tuple[int, int]:
    """(height, width) of a result of :func:`to_rgb`."""
    return (image.height, image.width) if isinstance(image, PIL.Image.Image) else image.shape[:2]


def to_label_map(segmentation_map: Any) -> np.ndarray:
    """One segmentation map (PIL image in mode L/P/I/I;16, or a 2-D / (1, H, W) / (H, W, 1) array) -> (H, W) int64."""
    if isinstance(segmentation_map, PIL.Image.Image):
        if segmentation_map.mode not in ("L", "P", "1", "I", "I;16", "I;16B", "I;16L", "I;16N"):
            raise ValueError(
                f"A segmentation map must be a single-channel image of label ids, got PIL mode "
                f"{segmentation_map.mode!r}; convert colour-coded maps to ids first."
            )
        array = np.asarray(segmentation_map)
    elif isinstance(segmentation_map, torch.Tensor):
        array = segmentation_map.detach().cpu().numpy()
    elif isinstance(segmentation_map, np.ndarray):
        array = segmentation_map
    else:
        raise ValueError(
            f"Unsupported segmentation map type {type(segmentation_map).__name__}; pass a PIL image, a numpy array "
            "or a torch tensor of label ids."
        )
    if array.ndim == 3 and 1 in (array.shape[0], array.shape[2]):
        array = array.reshape(array.shape[:2] if array.shape[2] == 1 else array.shape[1:])
    if array.ndim != 2:
        raise ValueError(f"A segmentation map must be (H, W) label ids, got shape {tuple(array.shape)}.")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError("A float segmentation map must hold whole-number label ids; pass an integer array.")
    elif not (np.issubdtype(array.dtype, np.integer) or array.dtype == np.bool_):
        raise ValueError(f"Unsupported segmentation map dtype {array.dtype}; pass integer label ids.")
    return array.astype(np.int64, copy=False)


def per_image(value: Any, count: int, name: str) -> Sequence[Any]:
    """Broadcast one value to ``count`` images, or check that a list has one entry per image."""
    if isinstance(value, (list, tuple)):
        if len(value) != count:
            raise ValueError(f"Got {len(value)} {name} for {count} images; pass one per image (or a single one).")
        return list(value)
    return [value] * count
