"""Large CPU tensors that are cheap to fill.

A freshly allocated multi-megabyte buffer is mapped page by page as it is first written, and on CPU those page faults
can cost more than the arithmetic that fills the buffer (a 42 MB batch of four 800x1088 images: about 10,000 faults,
several milliseconds). NumPy asks the kernel for transparent huge pages on large allocations, which cuts the faults
about 500-fold, so large CPU buffers are allocated through NumPy and shared with torch without a copy.
"""

from __future__ import annotations

import numpy as np
import torch

_NUMPY_FROM = 1 << 20  # bytes; smaller buffers come from torch's allocator, where they are reused without faults


def empty(shape: tuple[int, ...], dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
          ) -> torch.Tensor:
    """``torch.empty(shape, dtype=dtype, device=device)``, backed by NumPy memory when on CPU and large."""
    if torch.device(device).type != "cpu" or dtype == torch.bfloat16:
        return torch.empty(shape, dtype=dtype, device=device)
    numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    if int(np.prod(shape)) * numpy_dtype.itemsize < _NUMPY_FROM:
        return torch.empty(shape, dtype=dtype)
    return torch.from_numpy(np.empty(shape, dtype=numpy_dtype))
