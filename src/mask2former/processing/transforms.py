"""Pixel-level steps of preprocessing: output sizes, and resize + rescale + normalise into a padded batch.

Resizing goes through Pillow on the 8-bit RGB image (:mod:`.resize`), which is exactly what transformers' PIL-based
processor does for 8-bit inputs, so ``pixel_values`` agree with it; the arithmetic that follows is a conversion, a
multiply and an add per channel plane, written straight into the padded batch.
"""

from __future__ import annotations

import functools
import math
from typing import Mapping, Sequence

import numpy as np
import PIL.Image
import torch

from .buffers import empty
from .pillow_memory import reuse_pillow_blocks
from .resize import banded_resize, can_split, resized_planes
from .threads import Step, run_shared

_THREADS_FROM = 1 << 18  # output pixels in a batch below which thread hand-offs cost more than they save
_BANDS_PER_THREAD = 2  # one image is cut into this many bands per thread and pass: a late thread takes fewer

SizeDict = Mapping[str, int]


def scaled_size(height: int, width: int, shortest_edge: int, longest_edge: int | None) -> tuple[int, int]:
    """Size that brings the short side to ``shortest_edge`` unless the long side would exceed ``longest_edge``.

    The rounding follows the reference exactly: when the long side limits, the short side becomes
    ``round(longest * short / long)`` and the long side is truncated from the unrounded value; otherwise the long
    side is ``int(shortest * long / short)``. An image whose short side already has the target length is unchanged.
    """
    short, long = (height, width) if height <= width else (width, height)
    target_short: int = shortest_edge
    unrounded: float | None = None
    if longest_edge is not None and long / short * shortest_edge > longest_edge:
        unrounded = longest_edge * short / long
        target_short = int(round(unrounded))
    if short == target_short:
        return height, width
    factor = unrounded if unrounded is not None else target_short
    new_long = int(factor * long / short)
    return (target_short, new_long) if height <= width else (new_long, target_short)


def output_size(height: int, width: int, size: SizeDict, size_divisor: int) -> tuple[int, int]:
    """(height, width) an image of the given size is resized to, rounded *up* to a multiple of ``size_divisor``."""
    if size.get("shortest_edge"):
        new = scaled_size(height, width, size["shortest_edge"], size.get("longest_edge"))
    elif size.get("height") and size.get("width"):
        new = (size["height"], size["width"])
    elif size.get("max_height") and size.get("max_width"):
        factor = min(size["max_height"] / height, size["max_width"] / width)
        new = (int(height * factor), int(width * factor))
    else:
        raise ValueError(
            f"size must have 'shortest_edge' (and optionally 'longest_edge'), 'height' and 'width', or 'max_height' "
            f"and 'max_width'; got {dict(size)}."
        )
    if size_divisor and size_divisor > 0:
        new = (math.ceil(new[0] / size_divisor) * size_divisor, math.ceil(new[1] / size_divisor) * size_divisor)
    return new


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
    """Resize each (H, W, 3) image to its (h, w) in ``sizes`` and write ``x * scale + shift`` into the top-left of a
    zero (B, 3, H_pad, W_pad) float32 batch; ``resample=None`` keeps the images as they are (sizes = their sizes).

    Returns the batch and ``pixel_mask`` (B, H_pad, W_pad) int64, 1 on image pixels and 0 on padding.

    With more than one torch thread (``torch.get_num_threads()``) and enough pixels, the work is shared by that many
    threads (:func:`~.threads.run_shared`) in pieces of 8-bit RGB images (:func:`~.resize.banded_resize`): whole-row
    bands in one round where they are exact; otherwise, with fewer images than threads, two rounds, one per Pillow
    pass; otherwise one step per image. About ``_BANDS_PER_THREAD`` pieces per thread and round, so that the calling
    thread can take over the work of a slow helper. The thread that commits a piece writes it with NumPy, which like
    Pillow releases the GIL and starts no threads of its own, so the threads do not compete with a second pool;
    pieces of whole rows are scaled and their mask written there too, images cut in column bands at the end on the
    calling thread.
    """
    reuse_pillow_blocks()
    height, width = padded_size
    # Uninitialised memory, every element written once: zero-filling first would cost as much again.
    batch = empty((len(images), 3, height, width), torch.float32)
    pixel_mask = empty((len(images), height, width), torch.int64)
    values, mask = batch.numpy(), pixel_mask.numpy()
    scale32, shift32 = scale.numpy().astype(np.float32), shift.numpy().astype(np.float32)
    in_rows = [True] * len(images)  # every piece of the image came in whole rows, already finished

    def finish_rows(index: int, top: int, bottom: int) -> None:
        """Rows [top, bottom) of image ``index``, written: scaled over the padded width, where the slice is
        contiguous (~5x faster than a narrower one), then the padding columns and the mask."""
        image_width = sizes[index][1]
        _scale_rows(values[index, :, top:bottom], scale32, shift32)
        values[index, :, top:bottom, image_width:] = 0.0
        mask[index, top:bottom, :image_width] = 1
        mask[index, top:bottom, image_width:] = 0

    def write(index: int, top: int, left: int, planes: list[np.ndarray]) -> None:
        """One resized piece (three (rows, columns) planes) at (top, left) of image ``index``; whole rows are
        finished here, on the thread that made them."""
        rows, columns = planes[0].shape
        for channel, plane in enumerate(planes):
            np.copyto(values[index, channel, top:top + rows, left:left + columns], plane, casting="unsafe")
        if left == 0 and columns == sizes[index][1]:
            finish_rows(index, top, top + rows)
        else:
            in_rows[index] = False

    pixels = sum(h * w for h, w in sizes)
    threads = torch.get_num_threads() if pixels >= _THREADS_FROM else 1
    # Exact whole-row bands (one round) for every image; two rounds of bands only with fewer images than threads.
    rounds = 2 if len(images) < threads else 1
    parts = max(2, threads * _BANDS_PER_THREAD // len(images))
    first: list[Step] = []
    second: list[Step] = []
    for index, (image, size) in enumerate(zip(images, sizes)):
        sink = functools.partial(write, index)
        banded = banded_resize(image, *size, resample, parts, sink, rounds) if (
            threads > 1 and can_split(image, *size, resample)) else None
        if banded is not None:
            first += banded[0]
            second += banded[1]
        else:
            first.append((functools.partial(resized_planes, image, *size, resample), functools.partial(sink, 0, 0)))
    run_shared(first, threads)
    run_shared(second, threads)
    for index, (h, w) in enumerate(sizes):
        if not in_rows[index]:  # written in column bands: finished here, in whole rows
            finish_rows(index, 0, h)
        values[index, :, h:] = 0.0
        mask[index, h:] = 0
    return batch, pixel_mask


def _scale_rows(rows: np.ndarray, scale: np.ndarray, shift: np.ndarray) -> None:
    """``rows = rows * scale + shift`` in place, per channel, for (3, n, W_pad) float32 rows of the batch. The padding
    columns hold whatever the memory held until they are zeroed, hence no floating-point warnings."""
    with np.errstate(all="ignore"):
        for channel in range(3):
            np.multiply(rows[channel], scale[channel], out=rows[channel])
            np.add(rows[channel], shift[channel], out=rows[channel])


def as_resample(resample: int | PIL.Image.Resampling | None) -> PIL.Image.Resampling:
    """Pillow filter from an int (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming) or the enum."""
    if resample is None:
        return PIL.Image.Resampling.BILINEAR
    try:
        return PIL.Image.Resampling(int(resample))
    except (ValueError, TypeError) as error:
        raise ValueError(f"resample must be a Pillow filter id 0..5, got {resample!r}.") from error
