"""Pillow images as NumPy arrays without a copy, and Pillow memory that is reused rather than mapped anew.

Two costs dominate preprocessing once the resize itself is as fast as Pillow makes it, and neither is arithmetic:

- ``np.asarray(image)`` goes through ``image.tobytes()``: a full copy of the pixels into a new ``bytes`` object.
  Pillow >= 11.2 exports an image through the Arrow C data interface instead, zero-copy when the image is held in
  one block of memory (any image under Pillow's 16 MB block size). :func:`as_array` reads that export with
  ``ctypes`` (no pyarrow) and falls back to ``np.asarray`` where there is none.
- Fresh memory is mapped page by page on first write. Pillow returns every freed image to the C allocator, which
  gives large blocks back to the kernel, so the three to six images of one resize (input copy, intermediate,
  result, bands) fault on every call: measured 1,600 page faults and ~3 ms of a 9 ms resize on the 2-vCPU VM of
  benchmarks/README.md. Pillow keeps freed blocks for reuse when its ``blocks_max`` setting allows it (the
  ``PILLOW_BLOCKS_MAX`` environment variable, 0 by default); :func:`reuse_pillow_blocks` raises it unless the
  application set it.
"""

from __future__ import annotations

import ctypes
import os
import threading

import numpy as np
import PIL.Image

PILLOW_BLOCKS = 16  # freed Pillow blocks kept for reuse; each is one image (or a 16 MB part of a larger one)


class _ArrowArray(ctypes.Structure):
    """``struct ArrowArray`` of the Arrow C data interface (a stable ABI)."""


_ArrowArray._fields_ = [
    ("length", ctypes.c_int64), ("null_count", ctypes.c_int64), ("offset", ctypes.c_int64),
    ("n_buffers", ctypes.c_int64), ("n_children", ctypes.c_int64), ("buffers", ctypes.POINTER(ctypes.c_void_p)),
    ("children", ctypes.POINTER(ctypes.POINTER(_ArrowArray))), ("dictionary", ctypes.POINTER(_ArrowArray)),
    ("release", ctypes.c_void_p), ("private_data", ctypes.c_void_p),
]

_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype = ctypes.c_void_p
_capsule_pointer.argtypes = [ctypes.py_object, ctypes.c_char_p]

# Pillow mode -> (NumPy dtype, channels per pixel in memory). Multi-band 8-bit images are stored 4 bytes per pixel.
_LAYOUTS = {"L": (np.uint8, 1), "F": (np.float32, 1), "I": (np.int32, 1), "RGB": (np.uint8, 4),
            "RGBA": (np.uint8, 4), "RGBX": (np.uint8, 4)}


class _Export:
    """Owner of one Arrow export: NumPy arrays made from it keep it alive, and the export keeps the image memory
    alive (Pillow counts it as a reference), so the view stays valid after the image itself is gone."""

    __slots__ = ("__array_interface__", "_capsule")

    def __init__(self, capsule: object, interface: dict) -> None:
        self._capsule = capsule
        self.__array_interface__ = interface


def as_array(image: PIL.Image.Image) -> np.ndarray:
    """Read-only NumPy view of a Pillow image's pixels: (H, W) for "L", "F" and "I", (H, W, 3) or (H, W, 4) uint8
    for "RGB" and "RGBA"/"RGBX" (an RGB view has a stride of 4 bytes per pixel: Pillow's padding byte is skipped).

    Zero-copy through Pillow's Arrow export when the image is in one block of memory; otherwise, and for other
    modes or a Pillow without Arrow export, the same values as ``np.asarray(image)`` (a copy)."""
    exported = _export(image)
    if exported is None:
        return np.asarray(image)
    capsule, pointer = exported
    width, height = image.size
    dtype, channels = _LAYOUTS[image.mode]
    shape = (height, width) if channels == 1 else (height, width, channels)
    interface = {"version": 3, "shape": shape, "typestr": np.dtype(dtype).str, "data": (pointer, True)}
    view = np.asarray(_Export(capsule, interface))
    return view[:, :, :3] if image.mode == "RGB" else view


def _export(image: PIL.Image.Image) -> tuple[object, int] | None:
    """Pillow's Arrow export of ``image`` and the address of its pixels, or None where there is no zero-copy one
    (unknown mode, no Arrow export in this Pillow, rows in several blocks, an unexpected layout)."""
    layout = _LAYOUTS.get(image.mode)
    export = getattr(image.im, "__arrow_c_array__", None) if layout is not None else None
    if export is None:
        return None
    try:
        capsule = export()
    except ValueError:  # rows not contiguous: the image spans several blocks
        return None
    width, height = image.size
    channels = layout[1]
    array = _ArrowArray.from_address(_capsule_pointer(capsule, b"arrow_array"))
    if channels > 1:  # fixed-size list of `channels` uint8 per pixel: the bytes are in the child array
        if array.n_children != 1 or array.offset != 0:
            return None
        array = array.children[0].contents
    if array.n_buffers != 2 or array.offset != 0 or array.length != width * height * channels:
        return None
    pointer = array.buffers[1]
    return (capsule, pointer) if pointer else None


_configured = False
_configure_lock = threading.Lock()


def reuse_pillow_blocks() -> None:
    """Let Pillow keep up to :data:`PILLOW_BLOCKS` freed image blocks for reuse (once per process), unless the
    application chose a value: the ``PILLOW_BLOCKS_MAX`` environment variable is set, or ``blocks_max`` is already
    non-zero. Set ``PILLOW_BLOCKS_MAX=0`` to keep Pillow's default of freeing every block."""
    global _configured
    if _configured:
        return
    with _configure_lock:
        core = PIL.Image.core
        if "PILLOW_BLOCKS_MAX" not in os.environ and hasattr(core, "set_blocks_max") and core.get_blocks_max() == 0:
            core.set_blocks_max(PILLOW_BLOCKS)
        _configured = True
