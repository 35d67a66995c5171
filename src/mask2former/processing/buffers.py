"""Large CPU tensors that are cheap to fill.

A freshly allocated multi-megabyte buffer is mapped page by page as it is first written, and on CPU those page faults
can cost more than the arithmetic that fills the buffer (a 42 MB batch of four 800x1088 images: about 10,000 faults,
several milliseconds). NumPy asks the kernel for transparent huge pages on large allocations, which cuts the faults
about 500-fold, so large CPU buffers are allocated through NumPy and shared with torch without a copy. A huge page
only maps a 2 MB-aligned stretch, and the allocator's block is not aligned: up to 2 MB at each end of it would still
be mapped 4 KB at a time (measured: ~1,100 of the faults of one 800x1088 image and its pixel mask), so the buffer
starts at a 2 MB boundary inside a block that much larger.
"""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_FROM = 1 << 20  # bytes; smaller buffers come from torch's allocator, where they are reused without faults
_HUGE_PAGE = 1 << 21  # bytes; the x86-64 and arm64 transparent huge page size


def empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
          ) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``, backed by NumPy memory when on CPU and large."""
    if torch.device(device).type != "cpu" or dtype == torch.bfloat16:
        return torch.empty(shape, dtype=dtype, device=device)
    numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    size = int(np.prod(shape)) * numpy_dtype.itemsize
    if size < _NUMPY_FROM:
        return torch.empty(shape, dtype=dtype)
    block = np.empty(size + _HUGE_PAGE, dtype=np.uint8)
    start = -block.ctypes.data % _HUGE_PAGE
    return torch.from_numpy(block[start:start + size].view(numpy_dtype).reshape(shape))
