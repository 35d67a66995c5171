"""Resized images -> one zero-padded, normalised batch: ``x * scale + shift`` per channel, written top-left."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import PIL.Image
import torch

from .resize import resize_image


def affine_coefficients(
    do_rescale: bool,
    rescale_factor: float,
    do_normalize: bool,
    image_mean: Sequence[float],
    image_std: Sequence[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) so that ``x * scale + shift`` equals rescaling then normalising, each (3,)."""
    factor = float(rescale_factor) if do_rescale else 1.0
    if do_normalize:
        mean = np.broadcast_to(np.asarray(image_mean, dtype=np.float64), (3,))
        std = np.broadcast_to(np.asarray(image_std, dtype=np.float64), (3,))
        scale, shift = factor / std, -mean / std
    else:
        scale, shift = np.full(3, factor), np.zeros(3)
    return torch.from_numpy(scale.astype(np.float32)), torch.from_numpy(shift.astype(np.float32))


def images_to_batch(
    images: Sequence[np.ndarray | PIL.Image.Image],
    sizes: Sequence[tuple[int, int]],
    resample: int | None,
    padded_size: tuple[int, int],
    scale: torch.Tensor,
    shift: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Resize each RGB image to its (h, w) in ``sizes`` and write ``x * scale + shift`` into the top-left of a zero
    (B, 3, H_pad, W_pad) float32 batch; ``resample=None`` keeps the images as they are (sizes = their sizes).

    Returns the batch and ``pixel_mask`` (B, H_pad, W_pad) int64, 1 on image pixels and 0 on padding.
    """
    # NumPy rather than torch for these single passes over memory: NumPy stays on the calling thread
    values = np.zeros((len(images), 3, *padded_size), dtype=np.float32)  # (B, 3, H_pad, W_pad)
    mask = np.zeros((len(images), *padded_size), dtype=np.int64)  # (B, H_pad, W_pad)
    scale32, shift32 = scale.numpy().reshape(3, 1, 1), shift.numpy().reshape(3, 1, 1)
    for index, (image, (height, width)) in enumerate(zip(images, sizes)):
        pixels = resize_image(image, height, width, resample).transpose(2, 0, 1)  # (3, h, w) uint8 or float32
        target = values[index, :, :height, :width]  # (3, h, w) float32
        np.multiply(pixels, scale32, out=target, casting="unsafe")  # uint8 * float32 computes in float32
        target += shift32
        mask[index, :height, :width] = 1
    return torch.from_numpy(values), torch.from_numpy(mask)
