"""Resizing with Pillow, the way transformers' PIL-based processor does, and the threads that share the work.

8-bit RGB images are resized as one Pillow image, which is what the reference does, so the pixels are identical;
float images are resized plane by plane in Pillow's "F" mode. Pillow releases the GIL while it resamples, so pieces
of work run concurrently: the images of a batch, or the bands of one image (:func:`resize_in_bands`).

Work is shared by :func:`run_shared`: the calling thread works too, and every thread takes the next piece from a
shared counter. On the 2-vCPU VM of benchmarks/README.md a pool thread woken after an idle spell can start
milliseconds late (the host has to schedule the idle vCPU again); a caller that waited for the pool, as an earlier
version did, then lost more than the second core saved (one photo from 15% faster to 30% slower than one thread).
With the caller taking pieces itself, a late helper only means the caller does more of them.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Sequence, TypeVar

import numpy as np
import PIL.Image

from .pillow_memory import as_array

Planes = list[np.ndarray]  # three (rows, columns) channel planes, uint8 or float32
Sink = Callable[[int, int, Planes], None]  # (top, left, planes) of one piece of a resized image
Task = TypeVar("Task")


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
    return [as_array(band) for band in image.split()]


def resize_plane(plane: np.ndarray, height: int, width: int, resample: int) -> np.ndarray:
    """Resize one (H, W) uint8 or float32 channel with Pillow. For uint8, each plane of :func:`resized_planes` is
    exactly this: Pillow computes every band of an RGB image with the same integer arithmetic."""
    if plane.shape == (height, width):
        return plane
    return as_array(PIL.Image.fromarray(np.ascontiguousarray(plane)).resize((width, height), resample))


def resize_labels(label_map: np.ndarray, height: int, width: int) -> np.ndarray:
    """Nearest-neighbour resize of an (H, W) int64 label map, sampling the same pixels as Pillow's NEAREST."""
    if label_map.shape == (height, width):
        return label_map
    low, high = (int(label_map.min()), int(label_map.max())) if label_map.size else (0, 0)
    if low < -(2**31) or high >= 2**31:
        raise ValueError(f"Label ids must fit in int32 to be resized, got {low}..{high}.")
    resized = PIL.Image.fromarray(label_map.astype(np.int32)).resize((width, height), PIL.Image.Resampling.NEAREST)
    return as_array(resized).astype(np.int64)


def can_split(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int | None) -> bool:
    """Whether :func:`resize_in_bands` applies: an 8-bit RGB image that Pillow resamples in passes (any filter but
    NEAREST) to a new size."""
    if resample is None or resample == PIL.Image.Resampling.NEAREST:
        return False
    if isinstance(image, np.ndarray):
        return image.dtype == np.uint8 and image.shape[:2] != (height, width)
    return image.mode == "RGB" and image.size != (width, height)


def resize_in_bands(image: np.ndarray | PIL.Image.Image, height: int, width: int, resample: int, parts: int,
                    run: Callable[[Sequence[Task], Callable[[Task], None]], None], sink: Sink) -> None:
    """``image.resize((width, height), resample)`` as ``parts`` pieces per pass, exactly the pixels of one call; the
    pieces of each pass are computed by ``run(tasks, work)`` (:func:`run_shared`), and each final piece goes to
    ``sink`` on the thread that made it. Only for :func:`can_split` images.

    Pillow resamples in two passes with an 8-bit image in between: horizontally when the width changes, then
    vertically when the height changes, each pass with coefficients that depend only on its axis's input and output
    lengths. Rows are independent in the first pass and columns in the second, so the first pass runs on row bands of
    the input and the second on column bands of its result.
    """
    if isinstance(image, np.ndarray):
        image = PIL.Image.fromarray(image)
    in_width, in_height = image.size
    if in_width != width:
        source = image

        def rows_resized(band: tuple[int, int]) -> PIL.Image.Image:  # rows [top, bottom) after the horizontal pass
            top, bottom = band
            return source.crop((0, top, in_width, bottom)).resize((width, bottom - top), resample)

        if in_height == height:
            run(_bands(in_height, parts), lambda band: sink(band[0], 0, _planes(rows_resized(band))))
            return
        image = PIL.Image.new("RGB", (width, in_height), None)  # None: every pixel is pasted
        run(_bands(in_height, parts), lambda band: image.paste(rows_resized(band), (0, band[0])))  # disjoint rows

    def vertical(band: tuple[int, int]) -> None:
        left, right = band
        sink(0, left, _planes(image.crop((left, 0, right, in_height)).resize((right - left, height), resample)))

    run(_bands(width, parts), vertical)


def _bands(length: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting ``length`` into at most ``parts`` near-equal non-empty bands."""
    edges = [length * part // parts for part in range(parts + 1)]
    return [(start, stop) for start, stop in zip(edges, edges[1:]) if stop > start]


def run_shared(tasks: Sequence[Task], work: Callable[[Task], None], threads: int) -> None:
    """``work(task)`` for every task, on the calling thread and up to ``threads - 1`` threads of :func:`shared_pool`,
    each taking the next task from one counter (tasks run in any order, each once). The first error is raised
    after every thread has stopped taking tasks."""
    helpers = min(threads, len(tasks)) - 1
    if helpers < 1:
        for task in tasks:
            work(task)
        return
    counter = itertools.count()  # next() on it is atomic under the GIL
    failed: list[BaseException] = []

    def take() -> None:
        while not failed and (index := next(counter)) < len(tasks):
            try:
                work(tasks[index])
            except BaseException as error:  # noqa: BLE001 - handed to the caller below
                failed.append(error)

    pool = shared_pool(threads - 1)
    futures = [pool.submit(take) for _ in range(helpers)]
    take()
    # A helper that has not started (the pool busy with another caller) is not needed now. (wait() would still block
    # on a cancelled one until the pool reached it.)
    wait([future for future in futures if not future.cancel()])
    if failed:
        raise failed[0]


_pools: tuple[int, dict[int, ThreadPoolExecutor]] = (os.getpid(), {})  # (process id, pool per thread count)
_pools_lock = threading.Lock()


def _forget_pools_in_child() -> None:
    """After a fork: the parent's pools have no threads here, and its lock may have been held by a thread that
    does not exist here either."""
    global _pools, _pools_lock
    _pools, _pools_lock = (os.getpid(), {}), threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pools_in_child)


def shared_pool(threads: int) -> ThreadPoolExecutor:
    """A process-wide pool of ``threads`` threads, made on first use, one per size (a caller with another thread
    count never shuts down a pool in use), and made again after a fork (a forked child has the parent's pool objects
    but none of their threads)."""
    global _pools
    with _pools_lock:
        if _pools[0] != os.getpid():
            _pools = (os.getpid(), {})
        pools = _pools[1]
        if threads not in pools:
            pools[threads] = ThreadPoolExecutor(threads, thread_name_prefix="mask2former-resize")
        return pools[threads]
