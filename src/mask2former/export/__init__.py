"""Export to ONNX and running the exported file with ONNX Runtime.

- :func:`export_onnx` writes ``model.onnx`` (standard ONNX ops, dynamic batch, height and width).
- :func:`export_directory` is ``mask2former export``: ``model.onnx`` with ``config.json`` and
  ``preprocessor_config.json`` in one directory, checked after writing, never left half-written.
- :class:`OnnxRuntimeModel` runs such a directory with the model's call signature and outputs, so the image processor,
  the post-processors and :class:`mask2former.predict.Predictor` take it in place of the PyTorch model.

onnx and onnxruntime are the ``onnx`` extra (``pip install 'mask2former[onnx]'``), imported only when used.
"""

from mask2former.export.onnx import ExportCheck, export_directory, export_onnx
from mask2former.export.runtime import OnnxRuntimeModel, is_onnx_directory

__all__ = ["ExportCheck", "OnnxRuntimeModel", "export_directory", "export_onnx", "is_onnx_directory"]
