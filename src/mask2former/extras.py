"""Optional dependencies: the extras declared in ``pyproject.toml``, imported only where they are used.

``require("pycocotools.mask", "coco", "Mask AP")`` returns the module, or raises :class:`MissingExtraError` that says
which extra installs it (``pip install 'mask2former[coco]'``) instead of a bare ``No module named ...``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# extra -> what it installs (as pyproject.toml declares; the README's extras table describes them)
EXTRAS = {
    "hub": "huggingface_hub",
    "coco": "pycocotools",
    "onnx": "onnx, onnxruntime and onnxscript",
    "serve": "starlette, uvicorn and python-multipart",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that installs it."""


def require(module: str, extra: str, purpose: str) -> ModuleType:
    """Import ``module`` for ``purpose`` (a phrase such as "Mask AP"), or raise :class:`MissingExtraError`."""
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; the extras are {sorted(EXTRAS)}.")
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingExtraError(
            f"{purpose} needs {EXTRAS[extra]} ({err}): pip install 'mask2former[{extra}]'."
        ) from err
