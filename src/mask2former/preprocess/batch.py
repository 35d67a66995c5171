"""Resized images -> one zero-padded, normalised batch: ``x * scale + shift`` per channel, written top-left."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import PIL.Image
import torch

from .resize import resize_image


def per_channel(name: str, values: float | Sequence[float], channels: int) -> np.ndarray:
    """(channels,) float64: one value for all channels, or one per channel; another count is refused."""
    array = np.atleast_1d(np.asarray(values, dtype=np.float64)).reshape(-1)
    if len(array) not in (1, channels):
        raise ValueError(f"{name} has {len(array)} values but the images have {channels} channels; give one value "
                         "per channel (or one for all).")
    return np.broadcast_to(array, (channels,))


def affine_coefficients(
    do_rescale: bool,
    rescale_factor: float,
    do_normalize: bool,
    image_mean: float | Sequence[float],
    image_std: float | Sequence[float],
    channels: int = 3,
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Per-channel (scale, shift) so that ``x * scale + shift`` equals rescaling then normalising, each (C,);
    ``None`` when neither step is on (the pixels keep their values and type)."""
    if not do_rescale and not do_normalize:
        return None
    factor = float(rescale_factor) if do_rescale else 1.0
    if do_normalize:
        mean, std = per_channel("image_mean", image_mean, channels), per_channel("image_std", image_std, channels)
        scale, shift = factor / std, -mean / std
    else:
        scale, shift = np.full(channels, factor), np.zeros(channels)
    return torch.from_numpy(scale.astype(np.float32)), torch.from_numpy(shift.astype(np.float32))


def images_to_batch(
    images: Sequence[np.ndarray | PIL.Image.Image],
    sizes: Sequence[tuple[int, int]],
    resample: int | None,
    padded_size: tuple[int, int],
    coefficients: tuple[torch.Tensor, torch.Tensor] | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize each image to its (h, w) in ``sizes`` and write ``x * scale + shift`` (``coefficients``) into the
    top-left of a zero (B, C, H_pad, W_pad) float32 batch; ``resample=None`` keeps the images as they are (sizes =
    their sizes). With ``coefficients=None`` the pixels are copied as they are, into a uint8 batch when every image
    is uint8 (as transformers returns them), else float32.

    Returns the batch and ``pixel_mask`` (B, H_pad, W_pad) int64, 1 on image pixels and 0 on padding.
    """
    resized = [resize_image(image, height, width, resample) for image, (height, width) in zip(images, sizes)]
    channels = {pixels.shape[2] for pixels in resized}  # each (h, w, C)
    if len(channels) != 1:
        raise ValueError(f"The images have different channel counts {sorted(channels)}; pass images of one kind.")
    num_channels = channels.pop()
    keep_uint8 = coefficients is None and all(pixels.dtype == np.uint8 for pixels in resized)
    # NumPy rather than torch for these single passes over memory: NumPy stays on the calling thread
    values = np.zeros((len(images), num_channels, *padded_size), dtype=np.uint8 if keep_uint8 else np.float32)
    mask = np.zeros((len(images), *padded_size), dtype=np.int64)  # (B, H_pad, W_pad)
    if coefficients is not None:
        scale, shift = (c.numpy().reshape(-1, 1, 1) for c in coefficients)  # (C, 1, 1) each
    for index, pixels in enumerate(resized):
        height, width = pixels.shape[:2]
        target = values[index, :, :height, :width]  # (C, h, w)
        if coefficients is None:
            target[...] = pixels.transpose(2, 0, 1)
        else:
            np.multiply(pixels.transpose(2, 0, 1), scale, out=target, casting="unsafe")  # computed in float32
            target += shift
        mask[index, :height, :width] = 1
    return torch.from_numpy(values), torch.from_numpy(mask)
