"""The one switch between the fast paths and the plain, exportable code.

Several layers have a fast variant for CPU/GPU inference next to their plain computation: the deformable attention's
gather-based sampler and its slab-wise encoder layer, Swin's windows a slab at a time and its q/k/v before windowing,
feed-forward blocks by slabs, in-place residual sums and activations, a short-row softmax. Each fast variant is chosen
by conditions on sizes and devices that are Python decisions; traced into an exported graph they would bake one input
size's loops and branches into it.

Every fast path asks :func:`use_fast_paths`. It is False inside :func:`exportable` (what ``mask2former export`` and
:func:`mask2former.export.export_onnx` use) and whenever torch is exporting or tracing (``torch.export``,
``torch.onnx.export``, ``torch.jit.trace``), so those get the plain computation without being asked.

    with exportable():
        outputs = model(pixel_values)  # the plain path everywhere, e.g. to compare with the fast one
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

_exportable = False


@contextmanager
def exportable(enabled: bool = True) -> Iterator[None]:
    """Run the plain code instead of the fast paths inside the ``with`` block (``enabled=False``: the fast paths)."""
    global _exportable
    previous, _exportable = _exportable, enabled
    try:
        yield
    finally:
        _exportable = previous


def use_fast_paths() -> bool:
    """Whether a layer may take its fast path: not inside :func:`exportable` and not while torch exports or traces."""
    return not (_exportable or torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.jit.is_scripting())
