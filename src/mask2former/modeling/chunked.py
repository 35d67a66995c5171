"""Row-wise blocks computed a slab of tokens at a time, in CPU inference.

A transformer's feed-forward block widens every token 4x (Swin: (54,400, 384) at stride 4 of an 800x1088 image; the
pixel decoder: (17,850, 1024)) and narrows it back. Computed for all tokens at once, that intermediate is a 40-80 MB
buffer that is written to memory, read back, and on CPU freshly mapped page by page on every call. Computed 1,024
tokens at a time it is a few megabytes that stay in cache and are reused: the pixel decoder's feed-forward runs ~20%
faster on 2 cores. Every row goes through the same products as in one call, and on this CPU's MKL the results are
bit-identical (tested).

Only on the fast paths (:mod:`.fast_paths`), where nothing records gradients (``torch.no_grad`` or ``torch.inference_mode``), on CPU, and not while
``torch.compile`` traces (it fuses the block its own way): a GPU runs the whole block in one launch per layer.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .fast_paths import use_fast_paths

ROWS = 1024  # tokens per slab: a (1024, 1024) float32 intermediate is 4 MB


def slabs_pay(x: Tensor, rows: int = ROWS) -> bool:
    """Whether :func:`by_slabs` would cut ``x`` (..., C): fast paths on (:mod:`.fast_paths`), CPU, no gradient recording, not compiling, > ``rows``
    tokens."""
    return (
        use_fast_paths()
        and x.device.type == "cpu"
        and not torch.is_grad_enabled()
        and not torch.compiler.is_compiling()
        and x.numel() > rows * x.shape[-1]
    )


def slab_edges(total: int, most: int) -> list[int]:
    """Edges ``[0, ..., total]`` cutting ``total`` items into near-equal slabs of at most ``most`` items (so, when
    there is more than one, of at least ``most / 2``)."""
    count = max(1, -(-total // most))
    return [total * index // count for index in range(count + 1)]


def by_slabs(block: Callable[[Tensor], Tensor], x: Tensor, rows: int = ROWS) -> Tensor:
    """``block(x)`` for a ``block`` that maps each token on its own, (..., C_in) -> (..., C_out), computed in slabs of
    at most ``rows`` tokens when :func:`slabs_pay`, otherwise in one call.

    The slabs have near-equal sizes (at least ``rows / 2`` tokens): BLAS kernels for a handful of rows round
    differently (MKL: fewer than 12), slabs this large go through the same kernel as one call.
    """
    if not slabs_pay(x, rows):
        return block(x)
    tokens = x.reshape(-1, x.shape[-1])  # (T, C_in)
    edges = slab_edges(tokens.shape[0], rows)
    first = block(tokens[:edges[1]])  # (edges[1], C_out)
    out = first.new_empty(tokens.shape[0], first.shape[-1])  # (T, C_out)
    out[:edges[1]] = first
    for start, stop in zip(edges[1:], edges[2:]):
        out[start:stop] = block(tokens[start:stop])
    return out.view(*x.shape[:-1], first.shape[-1])
