"""In-place arithmetic for inference, out-of-place under autograd.

In inference a residual sum or an activation can be written into a freshly computed branch output: the same values,
one large buffer fewer to allocate (and, on CPU, to fault in page by page). Under autograd the branch outputs are
usually views (a Linear on a (B, S, C) input returns a view of its 2-D product), and an in-place update of a view makes
the backward pass copy it back, which costs more than it saves; so these helpers only work in place when no gradient
is being recorded for the tensor, and only on the fast paths (:mod:`.fast_paths`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .fast_paths import use_fast_paths


def _in_place(x: Tensor) -> bool:
    return not x.requires_grad and use_fast_paths()


def add_into(branch: Tensor, residual: Tensor) -> Tensor:
    """``branch + residual``, written into ``branch`` when no gradient is recorded (``branch`` must be fresh)."""
    return branch.add_(residual) if _in_place(branch) else branch + residual


def relu_into(x: Tensor) -> Tensor:
    """``relu(x)``, in place when no gradient is recorded (``x`` must be fresh)."""
    return torch.relu_(x) if _in_place(x) else torch.relu(x)


def gelu_into(x: Tensor, approximate: str = "none") -> Tensor:
    """``gelu(x)``, in place when no gradient is recorded (``x`` must be fresh)."""
    if _in_place(x):
        return torch.ops.aten.gelu_(x, approximate=approximate)
    return F.gelu(x, approximate=approximate)
