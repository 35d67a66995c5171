"""The original Mask2Former checkpoints (detectron2's ``model_final_*.pkl`` and ``.pth`` files), read without
detectron2 and without running any code from the file.

- ``read_original_weights``: a ``.pkl`` (a pickled dict whose ``"model"`` maps parameter names to numpy arrays) is
  unpickled by a reader that only builds plain containers and numpy arrays; any other object in the file is refused
  before it is created. Both numpy 1's and numpy 2's array reconstructor names are accepted. A ``.pth``/``.pt`` goes
  through ``torch.load(weights_only=True)``.
- ``original_to_native``: the pure renaming to our names (backbone keys by the backbone's own rules).
- ``infer_config_kwargs``: the architecture read off the tensor shapes, for files that are not a known zoo release.

The key names are facts from the original code (``mask2former/modeling/``) and the official converters.
"""

from __future__ import annotations

import io
import math
import pickle
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mask2former.modeling.backbones.base import OriginalWeights
from mask2former.modeling.backbones.registry import backbone_entry

_BACKBONE = "backbone."
_PIXEL_DECODER = "sem_seg_head.pixel_decoder."
_PREDICTOR = "sem_seg_head.predictor."
DERIVED = ("criterion.empty_weight",)  # stored by the original, rebuilt from no_object_weight


class UnsafeCheckpointError(pickle.UnpicklingError):
    """The file holds something other than plain containers and arrays; it was not loaded."""


class OriginalCheckpointError(ValueError):
    """The file is not an original Mask2Former checkpoint this library can read."""


# --- reading without executing ------------------------------------------------------------------------------------


def _checked_dtype(dtype: np.dtype) -> np.dtype:
    if dtype.hasobject:
        raise UnsafeCheckpointError("an array of Python objects (dtype object) was refused")
    return dtype


def _dtype(*args: Any) -> np.dtype:
    return _checked_dtype(np.dtype(*args))


def _reconstruct(subtype: Any, shape: Any, dtype: Any) -> np.ndarray:
    """numpy's pickled-array constructor: an empty array that the file's state then fills (``__setstate__``)."""
    if subtype is not np.ndarray:
        raise UnsafeCheckpointError(f"an array subclass {subtype!r} was refused")
    return np.ndarray.__new__(np.ndarray, shape, _dtype(dtype))


def _frombuffer(buffer: Any, dtype: Any, shape: Any, order: str) -> np.ndarray:
    """numpy's constructor for arrays pickled with protocol 5."""
    array = np.frombuffer(bytes(buffer), dtype=_checked_dtype(dtype))
    return array.reshape(shape, order="F" if order == "F" else "C").copy()


def _scalar(dtype: Any, data: Any = None) -> Any:
    dtype = _checked_dtype(dtype)
    return np.frombuffer(bytes(data), dtype=dtype)[0] if data is not None else dtype.type()


def _latin1_encode(text: Any, encoding: str = "utf-8") -> bytes:
    """Protocol-2 pickles written by Python 3 spell bytes as ``_codecs.encode(text, "latin1")``."""
    if not isinstance(text, str) or encoding.replace("-", "").lower() not in ("latin1", "utf8"):
        raise UnsafeCheckpointError("an unexpected _codecs.encode call was refused")
    return text.encode(encoding)


_ALLOWED: dict[tuple[str, str], Callable[..., Any] | type] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _dtype,
    ("_codecs", "encode"): _latin1_encode,
}
for _module in ("numpy.core", "numpy._core"):  # numpy 1 wrote the first, numpy 2 the second
    _ALLOWED[(f"{_module}.multiarray", "_reconstruct")] = _reconstruct
    _ALLOWED[(f"{_module}.multiarray", "scalar")] = _scalar
    _ALLOWED[(f"{_module}.numeric", "_frombuffer")] = _frombuffer


class _ArraysOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals of ``_ALLOWED``; every other global (a class, a function such as ``os.system``)
    stops the load before anything is called."""

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED.get((module, name))
        if allowed is None:
            raise UnsafeCheckpointError(
                f"the file asks for {module}.{name}, which is refused: original checkpoints hold only dicts of numpy "
                "arrays, and loading anything else could run code from the file"
            )
        return allowed

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeCheckpointError("persistent references are refused (this is not an original checkpoint)")


def _to_tensor(value: Any) -> Tensor | None:
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.array(value, copy=True))
    if isinstance(value, Tensor):
        return value
    if isinstance(value, np.generic):
        return torch.from_numpy(np.array(value))
    return None


def read_original_weights(path: str | Path) -> dict[str, Tensor]:
    """The tensors of an original checkpoint file, by their original names (``backbone.…``, ``sem_seg_head.…``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file (an original Mask2Former checkpoint, .pkl or .pth).")
    data = path.read_bytes()
    if path.suffix == ".pkl":
        try:
            loaded = _ArraysOnlyUnpickler(io.BytesIO(data), encoding="latin1").load()
        except UnsafeCheckpointError as err:
            raise UnsafeCheckpointError(f"Refused to load {path}: {err}. Nothing from the file was run.") from None
        except Exception as err:  # truncated or not a pickle
            raise OriginalCheckpointError(f"{path} is not a readable pickle ({type(err).__name__}: {err}).") from err
    else:
        try:
            loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise UnsafeCheckpointError(
                f"Refused to load {path}: torch's weights-only reader found objects other than tensors and plain "
                f"containers ({err}). Nothing from the file was run; save the model's state dict alone "
                "(torch.save({'model': model.state_dict()}, path)) and convert that."
            ) from None
        except Exception as err:
            raise OriginalCheckpointError(f"{path} is not a readable PyTorch file ({type(err).__name__}: {err}).") \
                from err
    weights = loaded.get("model", loaded) if isinstance(loaded, Mapping) else None
    if not isinstance(weights, Mapping):
        raise OriginalCheckpointError(f"{path} holds a {type(loaded).__name__}, not a dict of weights.")
    out: dict[str, Tensor] = {}
    for key, value in weights.items():
        tensor = _to_tensor(value)
        if tensor is None or not isinstance(key, str):
            raise OriginalCheckpointError(f"{path}: entry {key!r} of the weights is a {type(value).__name__}, not "
                                          "an array.")
        out[key] = tensor
    return out


# --- original names -> ours ---------------------------------------------------------------------------------------

_PIXEL_DECODER_NAMES = (
    (re.compile(r"^(adapter|layer)_(\d+)\.weight$"), r"\1_\2.0.weight"),
    (re.compile(r"^(adapter|layer)_(\d+)\.norm\.(weight|bias)$"), r"\1_\2.1.\3"),
    (re.compile(r"^input_proj\.(\d+)\.(\d+)\.(weight|bias)$"), r"input_projections.\1.\2.\3"),
    (re.compile(r"^transformer\.level_embed$"), "level_embed"),
    (re.compile(r"^transformer\.encoder\.layers\.(\d+)\.self_attn\."), r"encoder.layers.\1.self_attn."),
    (re.compile(r"^transformer\.encoder\.layers\.(\d+)\.norm1\."), r"encoder.layers.\1.self_attn_layer_norm."),
    (re.compile(r"^transformer\.encoder\.layers\.(\d+)\.norm2\."), r"encoder.layers.\1.final_layer_norm."),
    (re.compile(r"^transformer\.encoder\.layers\.(\d+)\.linear1\."), r"encoder.layers.\1.fc1."),
    (re.compile(r"^transformer\.encoder\.layers\.(\d+)\.linear2\."), r"encoder.layers.\1.fc2."),
    (re.compile(r"^mask_features\."), "mask_projection."),
)
_PREDICTOR_NAMES = (
    (re.compile(r"^query_embed\.weight$"), "model.transformer_module.queries_embedder.weight"),
    (re.compile(r"^query_feat\.weight$"), "model.transformer_module.queries_features.weight"),
    (re.compile(r"^level_embed\.weight$"), "model.transformer_module.level_embed.weight"),
    (re.compile(r"^input_proj\.(\d+)\.(weight|bias)$"), r"model.transformer_module.input_projections.\1.\2"),
    (re.compile(r"^transformer_self_attention_layers\.(\d+)\.self_attn\.out_proj\."),
     r"model.transformer_module.decoder.layers.\1.self_attn.out_proj."),
    (re.compile(r"^transformer_self_attention_layers\.(\d+)\.norm\."),
     r"model.transformer_module.decoder.layers.\1.self_attn_layer_norm."),
    (re.compile(r"^transformer_cross_attention_layers\.(\d+)\.multihead_attn\."),
     r"model.transformer_module.decoder.layers.\1.cross_attn."),
    (re.compile(r"^transformer_cross_attention_layers\.(\d+)\.norm\."),
     r"model.transformer_module.decoder.layers.\1.cross_attn_layer_norm."),
    (re.compile(r"^transformer_ffn_layers\.(\d+)\.linear1\."), r"model.transformer_module.decoder.layers.\1.fc1."),
    (re.compile(r"^transformer_ffn_layers\.(\d+)\.linear2\."), r"model.transformer_module.decoder.layers.\1.fc2."),
    (re.compile(r"^transformer_ffn_layers\.(\d+)\.norm\."),
     r"model.transformer_module.decoder.layers.\1.final_layer_norm."),
    (re.compile(r"^decoder_norm\."), "model.transformer_module.decoder.layernorm."),
    (re.compile(r"^mask_embed\.layers\.(\d+)\."),
     r"model.transformer_module.decoder.mask_predictor.mask_embedder.\1.0."),
    (re.compile(r"^class_embed\."), "class_predictor."),
)
_SELF_ATTENTION_IN_PROJ = re.compile(r"^transformer_self_attention_layers\.(\d+)\.self_attn\.in_proj_(weight|bias)$")


def _rename(key: str, rules: tuple[tuple[re.Pattern[str], str], ...]) -> str | None:
    for pattern, replacement in rules:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def original_to_native(weights: Mapping[str, Tensor], backbone_config: Any) -> OriginalWeights:
    """An original state dict under the names of ``Mask2FormerForUniversalSegmentation``.

    The self-attention's fused ``in_proj`` (3D, D) is split into q, k, v projections; the cross-attention keeps its
    fused ``in_proj`` (ours does too). ``criterion.empty_weight`` is dropped (it is derived, not a weight). An original
    key no rule knows keeps its name, so that loading reports it as unexpected.
    """
    out = OriginalWeights()
    backbone = {key[len(_BACKBONE):]: tensor for key, tensor in weights.items() if key.startswith(_BACKBONE)}
    from_original = backbone_entry(backbone_config.model_type).rules.from_original
    if backbone and from_original is None:
        raise OriginalCheckpointError(f"original checkpoints with a {backbone_config.model_type} backbone are not "
                                      "supported.")
    if backbone:
        converted = from_original(backbone, backbone_config)  # type: ignore[misc]
        for name, tensor in converted.tensors.items():
            out.add(f"model.pixel_level_module.encoder.{name}", tensor, _BACKBONE + converted.origin[name])
        out.dropped += [_BACKBONE + key for key in converted.dropped]
    for key, tensor in weights.items():
        if key.startswith(_BACKBONE):
            continue
        if key in DERIVED:
            out.dropped.append(key)
        elif key.startswith(_PIXEL_DECODER):
            name = _rename(key[len(_PIXEL_DECODER):], _PIXEL_DECODER_NAMES)
            out.add(f"model.pixel_level_module.decoder.{name}" if name else key, tensor, key)
        elif match := _SELF_ATTENTION_IN_PROJ.match(key[len(_PREDICTOR):]) if key.startswith(_PREDICTOR) else None:
            layer, kind = match.groups()
            for proj, part in zip(("q_proj", "k_proj", "v_proj"), tensor.chunk(3, dim=0)):
                out.add(f"model.transformer_module.decoder.layers.{layer}.self_attn.{proj}.{kind}", part.contiguous(),
                        key)
        elif key.startswith(_PREDICTOR):
            out.add(_rename(key[len(_PREDICTOR):], _PREDICTOR_NAMES) or key, tensor, key)
        else:
            out.add(key, tensor, key)
    return out


# --- the architecture, read off the shapes ------------------------------------------------------------------------


def _indices(weights: Mapping[str, Tensor], pattern: str) -> list[int]:
    regex = re.compile(pattern)
    return sorted({int(m.group(1)) for key in weights if (m := regex.match(key))})


def _infer_swin(weights: Mapping[str, Tensor]) -> dict[str, Any]:
    embed_dim, num_channels, patch_size, _ = weights["backbone.patch_embed.proj.weight"].shape
    stages = _indices(weights, r"backbone\.layers\.(\d+)\.")
    depths = [len(_indices(weights, rf"backbone\.layers\.{s}\.blocks\.(\d+)\.")) for s in stages]
    tables = [weights[f"backbone.layers.{s}.blocks.0.attn.relative_position_bias_table"] for s in stages]
    window = (math.isqrt(tables[0].shape[0]) + 1) // 2  # the table has (2w - 1)^2 rows
    hidden = weights["backbone.layers.0.blocks.0.mlp.fc1.weight"].shape[0]
    return dict(model_type="swin", embed_dim=embed_dim, depths=depths, num_heads=[t.shape[1] for t in tables],
                window_size=window, patch_size=patch_size, num_channels=num_channels, mlp_ratio=hidden / embed_dim,
                qkv_bias="backbone.layers.0.blocks.0.attn.qkv.bias" in weights, drop_path_rate=0.3,
                out_features=[f"stage{i + 1}" for i in _indices(weights, r"backbone\.norm(\d+)\.weight$")])


def _infer_resnet(weights: Mapping[str, Tensor]) -> dict[str, Any]:
    if "backbone.stem.conv2.weight" in weights:
        raise OriginalCheckpointError(
            "this checkpoint's ResNet has a DeepLab stem (three 3x3 convolutions, detectron2's R-103 / 'ResNet-C'), "
            "which transformers' ResNet layout cannot hold; it is not supported."
        )
    embedding_size, num_channels = weights["backbone.stem.conv1.weight"].shape[:2]
    stages = _indices(weights, r"backbone\.res(\d+)\.")
    bottleneck = "backbone.res2.0.conv3.weight" in weights
    last_conv = "conv3" if bottleneck else "conv2"
    hidden_sizes = [weights[f"backbone.res{r}.0.{last_conv}.weight"].shape[0] for r in stages]
    if bottleneck and any(weights[f"backbone.res{r}.0.conv1.weight"].shape[0] * 4 != size
                          for r, size in zip(stages, hidden_sizes)):
        raise OriginalCheckpointError("this checkpoint's ResNet blocks are not a quarter as wide inside as outside "
                                      "(a wide ResNet or ResNeXt), which transformers' ResNet layout cannot hold.")
    # Not in the weights: where the stride sits. The original Mask2Former configs put it in the 3x3 convolution.
    depths = [len(_indices(weights, rf"backbone\.res{r}\.(\d+)\.")) for r in stages]
    return dict(model_type="resnet", embedding_size=embedding_size, num_channels=num_channels,
                hidden_sizes=hidden_sizes, depths=depths,
                layer_type="bottleneck" if bottleneck else "basic", downsample_in_bottleneck=False,
                freeze_batch_norm=True, out_features=[f"stage{r - 1}" for r in stages])


def infer_config_kwargs(weights: Mapping[str, Tensor]) -> dict[str, Any]:
    """``Mask2FormerConfig`` keyword arguments that fit an original checkpoint's tensors.

    Read off the shapes: the backbone, hidden sizes, queries, classes, layer counts. Not in the weights, so taken
    from the original configs: 8 attention heads, post-norm decoder, ResNet stride in the 3x3 convolution.
    """
    if "backbone.patch_embed.proj.weight" in weights:
        backbone = _infer_swin(weights)
    elif "backbone.stem.conv1.weight" in weights:
        backbone = _infer_resnet(weights)
    else:
        raise OriginalCheckpointError("no Swin (backbone.patch_embed) or ResNet (backbone.stem) backbone found in "
                                      "this checkpoint.")
    needed = [f"{_PREDICTOR}query_feat.weight", f"{_PREDICTOR}class_embed.weight",
              f"{_PREDICTOR}transformer_ffn_layers.0.linear1.weight", f"{_PIXEL_DECODER}mask_features.weight",
              f"{_PIXEL_DECODER}input_proj.0.0.weight", f"{_PIXEL_DECODER}transformer.encoder.layers.0.linear1.weight"]
    absent = [key for key in needed if key not in weights]
    if absent:
        raise OriginalCheckpointError(
            f"this is not an original Mask2Former checkpoint: it lacks {', '.join(absent)} (it holds {len(weights)} "
            f"tensors, e.g. {', '.join(list(weights)[:3])}). MaskFormer (v1) and video checkpoints are not supported."
        )
    num_queries, hidden_dim = weights[f"{_PREDICTOR}query_feat.weight"].shape
    feature_size = weights[f"{_PIXEL_DECODER}input_proj.0.0.weight"].shape[0]
    num_fpn_levels = len(_indices(weights, rf"{re.escape(_PIXEL_DECODER)}adapter_(\d+)\.weight$"))
    return dict(
        backbone_config=backbone,
        num_queries=num_queries,
        hidden_dim=hidden_dim,
        num_labels=weights[f"{_PREDICTOR}class_embed.weight"].shape[0] - 1,
        decoder_layers=len(_indices(weights, rf"{re.escape(_PREDICTOR)}transformer_ffn_layers\.(\d+)\.")) + 1,
        dim_feedforward=weights[f"{_PREDICTOR}transformer_ffn_layers.0.linear1.weight"].shape[0],
        feature_size=feature_size,
        mask_feature_size=weights[f"{_PIXEL_DECODER}mask_features.weight"].shape[0],
        encoder_layers=len(_indices(weights, rf"{re.escape(_PIXEL_DECODER)}transformer\.encoder\.layers\.(\d+)\.")),
        encoder_feedforward_dim=weights[f"{_PIXEL_DECODER}transformer.encoder.layers.0.linear1.weight"].shape[0],
        enforce_input_projection=f"{_PREDICTOR}input_proj.0.weight" in weights and feature_size == hidden_dim,
        common_stride=8 // 2**num_fpn_levels,  # the finest encoder level has stride 8; each FPN level halves it
    )
