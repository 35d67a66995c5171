"""Resizing with Pillow, the way transformers' PIL-based processor does, and the thread pool that runs it.

8-bit RGB images are resized as one Pillow image, which is what the reference does, so the pixels are identical;
float images are resized plane by plane in Pillow's "F" mode. Pillow releases the GIL while it resamples, so the
images of a batch are resized concurrently on :func:`shared_pool`.

Cutting one image into bands (rows for Pillow's horizontal pass, columns for its vertical pass: exact) was measured
and not kept: on the 2-vCPU machine of benchmarks/README.md a single 800x1067 image came out anywhere from 15%
faster to 30% slower than one thread, depending on what else the process had allocated (fresh pages cost more than
the resampling saved).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import PIL.Image

Planes = list[np.ndarray]  # three (rows, columns) channel planes, uint8 or float32


def resized_planes(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int | None) -> Planes:
    """The three (height, width) channel planes of an RGB image (Pillow, or (H, W, 3) uint8 or float32 array) resized
    with Pillow: uint8 stays uint8 and float32 is resized plane by plane; ``resample=None`` or the same size keeps
    the pixels.

    8-bit images are resized as one RGB image and Pillow splits the result into planes: its de-interleaving is about
    4x faster than a strided copy of (H, W, 3) pixels into channel planes.
    """
    if isinstance(image, np.ndarray):
        if resample is None or image.shape[:2] == (height, width):
            return [image[:, :, channel] for channel in range(3)]
        if image.dtype != np.uint8:
            return [resize_plane(image[:, :, channel], height, width, resample) for channel in range(3)]
        image = PIL.Image.fromarray(image)
    if resample is not None and image.size != (width, height):
        image = image.resize((width, height), resample=resample)
    return _planes(image)


def _planes(image: PIL.Image.Image) -> Planes:
    return [np.asarray(band) for band in image.split()]


def resize_plane(plane: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """Resize one (H, W) uint8 or float32 channel with Pillow. For uint8, each plane of :func:`resized_planes` is
    exactly this: Pillow computes every band of an RGB image with the same integer arithmetic."""
    if plane.shape == (height, width):
        return plane
    return np.asarray(PIL.Image.fromarray(np.ascontiguousarray(plane)).resize((width, height), resample))


def resize_labels(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) int64 label map, sampling the same pixels as Pillow's NEAREST."""
    if label_map.shape == (height, width):
        return label_map
    low, high = (int(label_map.min()), int(label_map.max())) if label_map.size else (0, 0)
    if low < -(2**31) or high >= 2**31:
        raise ValueError(f"Label ids must fit in int32 to be resized, got {low}..{high}.")
    resized = PIL.Image.fromarray(label_map.astype(np.int32)).resize((width, height), PIL.Image.Resampling.NEAREST)
    return np.asarray(resized).astype(np.int64)


_pool: tuple[int, int, ThreadPoolExecutor] | None = None  # (process id, threads, pool)


def shared_pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``threads`` threads, made on first use and again after a fork or a change of size
    (a forked child has the parent's pool object but none of its threads)."""
    global _pool
    if _pool is None or _pool[:2] != (os.getpid(), threads):
        if _pool is not None and _pool[0] == os.getpid():
            _pool[2].shutdown(wait=False)
        _pool = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="mask2former-resize"))
    return _pool[2]
