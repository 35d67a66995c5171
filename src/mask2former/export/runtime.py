"""An exported ``model.onnx`` run by ONNX Runtime behind the PyTorch model's call signature.

``OnnxRuntimeModel.from_pretrained(DIR)(pixel_values, pixel_mask=...)`` returns a
:class:`~mask2former.modeling.outputs.Mask2FormerForUniversalSegmentationOutput` with the class and mask logits (and
the image sizes from the pixel mask), so the image processor's post-processors and the ``Predictor`` take it in place
of the PyTorch model. No torch weights are read: ``config.json`` gives the labels, ``model.onnx`` the network.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mask2former.config import Mask2FormerConfig
from mask2former.extras import require
from mask2former.modeling.outputs import Mask2FormerForUniversalSegmentationOutput, image_sizes_from_pixel_mask

MODEL_FILE = "model.onnx"
_NUMPY_DTYPES = {"tensor(float)": np.float32, "tensor(float16)": np.float16}


def is_onnx_directory(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a local directory holding an exported ``model.onnx``."""
    return (Path(path).expanduser() / MODEL_FILE).is_file()


class OnnxRuntimeModel:
    """``model.onnx`` in an ONNX Runtime session, called like ``Mask2FormerForUniversalSegmentation``.

    Args:
        session: an ``onnxruntime.InferenceSession`` on a graph written by :func:`~mask2former.export.export_onnx`.
        config: the model's config (labels, backbone), as in ``config.json``.
    """

    def __init__(self, session: Any, config: Mask2FormerConfig | None) -> None:
        self.session = session
        self.config = config
        inputs = session.get_inputs()
        if [i.name for i in inputs] != ["pixel_values"]:
            raise ValueError(f"the ONNX graph takes {[i.name for i in inputs]}, not ['pixel_values']: it was not "
                             "written by mask2former export.")
        self.input_dtype = _NUMPY_DTYPES.get(inputs[0].type, np.float32)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, config: Mask2FormerConfig | None = None,
                  providers: Sequence[str] | None = None, threads: int | None = None) -> "OnnxRuntimeModel":
        """A session on the ONNX file ``path``. ``providers``: ONNX Runtime execution providers, default CPU only;
        ``threads``: intra-op threads (default: ONNX Runtime's choice)."""
        ort = require("onnxruntime", "onnx", "Running an exported model")
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(path), options, providers=list(providers or ["CPUExecutionProvider"]))
        return cls(session, config)

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike[str], *, providers: Sequence[str] | None = None,
                        threads: int | None = None) -> "OnnxRuntimeModel":
        """An exported directory (``model.onnx`` and ``config.json``), as ``mask2former export`` writes it."""
        directory = Path(directory).expanduser()
        if not is_onnx_directory(directory):
            raise FileNotFoundError(f"{directory} holds no {MODEL_FILE}; write one with 'mask2former export'.")
        config = Mask2FormerConfig.from_pretrained(directory) if (directory / "config.json").is_file() else None
        return cls.from_file(directory / MODEL_FILE, config=config, providers=providers, threads=threads)

    # the few parts of nn.Module's interface that the Predictor and the post-processors use
    def eval(self) -> "OnnxRuntimeModel":
        return self

    @property
    def device(self) -> torch.device:
        return torch.device("cpu")  # outputs come back as CPU tensors whatever the provider

    @property
    def dtype(self) -> torch.dtype:
        return torch.float16 if self.input_dtype == np.float16 else torch.float32

    def __call__(self, pixel_values: Tensor, pixel_mask: Tensor | None = None, **unused: Any
                 ) -> Mask2FormerForUniversalSegmentationOutput:
        """pixel_values (B, 3, H, W) -> class logits (B, Q, K+1) and mask logits (B, Q, H/4, W/4), float32 tensors.

        ``pixel_mask`` (B, H, W) only gives each image's valid size to the post-processors, as in PyTorch; options
        such as ``output_hidden_states`` are not in the graph and are ignored."""
        if pixel_values.dim() != 4 or pixel_values.shape[1] != 3:
            raise ValueError(f"pixel_values must have shape (B, 3, H, W), got {tuple(pixel_values.shape)}.")
        batch, _, height, width = pixel_values.shape
        array = pixel_values.detach().to("cpu", torch.float32).numpy().astype(self.input_dtype, copy=False)
        class_logits, mask_logits = self.session.run(None, {"pixel_values": array})
        return Mask2FormerForUniversalSegmentationOutput(
            class_queries_logits=torch.from_numpy(np.asarray(class_logits, dtype=np.float32)),
            masks_queries_logits=torch.from_numpy(np.asarray(mask_logits, dtype=np.float32)),
            image_sizes=image_sizes_from_pixel_mask(pixel_mask, batch, height, width, torch.device("cpu")),
            padded_size=(height, width),
        )
