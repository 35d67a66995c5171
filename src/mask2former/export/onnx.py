"""``model.onnx``: a Mask2Former as one ONNX graph of standard operators, any batch size and image size.

The graph is traced by ``torch.onnx.export`` (through ``torch.export``) with the fast paths off
(:func:`mask2former.modeling.fast_paths.exportable`): the deformable attention samples with ``GridSample``, Swin cuts
its windows with pad, roll and reshapes, and nothing depends on one input's size. Input ``pixel_values``
(B, 3, H, W); outputs ``class_queries_logits`` (B, Q, K+1) and ``masks_queries_logits`` (B, Q, H/4, W/4), the two
fields the post-processors read. The pixel mask does not change the network's computation, so it is not a graph input:
:class:`~mask2former.export.runtime.OnnxRuntimeModel` takes it, as the PyTorch model does, for the image sizes.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from mask2former.extras import require
from mask2former.modeling.fast_paths import exportable

INPUT_NAMES = ["pixel_values"]
OUTPUT_NAMES = ["class_queries_logits", "masks_queries_logits"]
DEFAULT_OPSET = 18  # GridSample (opset 16) with its 2-D bilinear mode, run by onnxruntime >= 1.17 on every provider
DTYPES = {"fp32": torch.float32, "fp16": torch.float16}
MODEL_FILE = "model.onnx"


class _Logits(nn.Module):
    """The model reduced to what the post-processors read: pixel_values -> (class logits, mask logits)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values: Tensor) -> tuple[Tensor, Tensor]:
        out = self.model(pixel_values, output_hidden_states=False, output_attentions=False,
                         output_auxiliary_logits=False, return_dict=True)
        return out.class_queries_logits, out.masks_queries_logits


def example_size(model: nn.Module) -> tuple[int, int]:
    """The (H, W) the graph is traced at: every backbone stage at least two windows a side and not a multiple of the
    window (no padding-free or single-window case to be specialised on), and neither side a multiple of 32."""
    backbone_config = getattr(getattr(model, "config", None), "backbone_config", None)
    window = int(getattr(backbone_config, "window_size", 7) or 7)
    base = 2 * 32 * window  # two windows of the stride-32 stage
    return base + 35, base + 163


def export_onnx(model: nn.Module, path: str | os.PathLike[str], *, opset: int = DEFAULT_OPSET,
                dtype: str | torch.dtype = "fp32", batch_size: int = 2) -> Path:
    """Write ``model`` (a ``Mask2FormerForUniversalSegmentation``) to the ONNX file ``path``; returns the path.

    Batch, height and width are dynamic. ``dtype``: ``fp32`` or ``fp16`` (weights and activations in half
    precision; the masked-attention thresholds and the deformable sampling coordinates stay float32, as in PyTorch).
    The model is traced on CPU in eval mode and left as it was given.
    """
    require("onnxscript", "onnx", "ONNX export")
    torch_dtype = DTYPES[dtype] if isinstance(dtype, str) else dtype
    if opset < 16:
        raise ValueError(f"opset {opset} has no GridSample; use --opset 16 or later (default {DEFAULT_OPSET}).")
    path = Path(path)
    was_training = model.training
    parameter = next(model.parameters())
    original = (parameter.device, parameter.dtype)
    model = model.eval().to("cpu", torch_dtype)
    height, width = example_size(model)
    pixel_values = torch.randn(batch_size, 3, height, width, dtype=torch_dtype)
    dynamic = ({0: torch.export.Dim.DYNAMIC, 2: torch.export.Dim.DYNAMIC, 3: torch.export.Dim.DYNAMIC},)
    try:
        with exportable(), torch.no_grad():
            exported = torch.export.export(_Logits(model), (pixel_values,), dynamic_shapes=dynamic, strict=False)
            program = torch.onnx.export(
                exported, dynamo=True, opset_version=opset, input_names=INPUT_NAMES, output_names=OUTPUT_NAMES,
                external_data=False, optimize=True, verbose=False,
            )
        program.save(str(path), external_data=False)
    finally:
        model.to(*original).train(was_training)
    return path


@dataclass
class ExportCheck:
    """What :func:`check_export` measured: ONNX Runtime against PyTorch on one input the graph was not traced at."""

    shape: tuple[int, ...]
    class_max_diff: float
    mask_max_diff: float
    mask_share_within_1e4: float
    operators: list[str]


def onnx_operators(path: str | os.PathLike[str]) -> list[str]:
    """The operator types of the graph at ``path`` (functions inlined), sorted, each once."""
    onnx = require("onnx", "onnx", "Reading ONNX files")
    model = onnx.load(str(path), load_external_data=False)
    names = {node.op_type for node in model.graph.node}
    for function in model.functions:
        names |= {node.op_type for node in function.node}
    names -= {function.name for function in model.functions}
    return sorted(names)


def check_export(model: nn.Module, path: str | os.PathLike[str], *, batch_size: int = 1,
                 size: tuple[int, int] = (301, 437)) -> ExportCheck:
    """The ONNX checker on ``path``, then ONNX Runtime against ``model`` (PyTorch, CPU, float32) on a random batch of
    ``size`` (not the traced size, not a multiple of 32)."""
    onnx = require("onnx", "onnx", "Checking an ONNX export")
    onnx.checker.check_model(str(path), full_check=True)
    from mask2former.export.runtime import OnnxRuntimeModel

    runtime = OnnxRuntimeModel.from_file(path, config=getattr(model, "config", None))
    generator = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(batch_size, 3, *size, generator=generator)
    parameter = next(model.parameters())
    original = (parameter.device, parameter.dtype, model.training)
    model.eval().to("cpu", torch.float32)
    try:
        with torch.inference_mode():
            expected = model(pixel_values)
    finally:
        model.to(original[0], original[1]).train(original[2])
    got = runtime(pixel_values)
    mask_diff = (got.masks_queries_logits.float() - expected.masks_queries_logits).abs()
    class_diff = (got.class_queries_logits.float() - expected.class_queries_logits).abs()
    return ExportCheck(tuple(pixel_values.shape), float(class_diff.max()), float(mask_diff.max()),
                       float((mask_diff <= 1e-4).float().mean()), onnx_operators(path))


def export_directory(model_source: str | os.PathLike[str] | nn.Module, output_dir: str | os.PathLike[str], *,
                     opset: int = DEFAULT_OPSET, dtype: str = "fp32", overwrite: bool = False, check: bool = True,
                     processor: Any = None) -> tuple[Path, ExportCheck | None, float]:
    """``mask2former export``: ``output_dir`` gets ``model.onnx``, ``config.json`` and ``preprocessor_config.json``.

    ``model_source``: a checkpoint directory, a hub id, or a loaded model (then ``processor`` or the default one).
    Everything is written into a temporary directory next to ``output_dir`` and moved into place only after the export
    (and the check, when ``check``) succeeded: a failure leaves no half-written ``output_dir``. An existing
    non-empty ``output_dir`` is an error unless ``overwrite``. Returns the directory, the check and the export seconds.
    """
    from mask2former import Mask2FormerForUniversalSegmentation
    from mask2former.preprocess import Mask2FormerImageProcessor

    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise FileExistsError(f"{output_dir} exists and is not a directory; choose a directory for the export.")
    if output_dir.is_dir() and any(output_dir.iterdir()) and not overwrite:
        raise FileExistsError(f"{output_dir} exists and is not empty; choose another --output-dir or pass "
                              "--overwrite to replace it.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}.")
    if isinstance(model_source, nn.Module):
        model = model_source
    else:
        model = Mask2FormerForUniversalSegmentation.from_pretrained(model_source)
        local = Path(model_source).expanduser()
        if processor is None and (local / "preprocessor_config.json").is_file():
            processor = Mask2FormerImageProcessor.from_pretrained(local)
    processor = processor if processor is not None else Mask2FormerImageProcessor()

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        start = time.perf_counter()
        export_onnx(model, staging / MODEL_FILE, opset=opset, dtype=dtype)
        seconds = time.perf_counter() - start
        model.config.save_pretrained(staging)
        (staging / "preprocessor_config.json").write_text(processor.to_json_string(), encoding="utf-8")
        result = check_export(model, staging / MODEL_FILE) if check else None
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir, result, seconds
