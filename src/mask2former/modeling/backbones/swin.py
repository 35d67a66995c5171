"""Swin Transformer backbone (Liu et al., 2021) with the parameter names of transformers' ``SwinBackbone`` files.

The data path: a 4x4 patch embedding, then stages of Swin blocks (window attention with a relative position bias, every
second block on windows shifted by half a window), with a 2x2 patch merging between stages (``swin_layers.py``). Each
requested stage's map is taken before its patch merging, layer-normed, and returned as (B, C_s, H_s, W_s).

This file is Swin's row of the backbone registry: ``SwinConfig``, ``build_swin`` and ``SWIN_RULES`` (how Swin weights
are named in transformers' files and in the original checkpoints).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from mask2former.field_types import check_field_types
from mask2former.modeling.backbones.base import (
    CheckpointRules,
    FeatureInfo,
    OriginalWeights,
    StagedBackboneConfig,
    resolve_out_indices,
)
from mask2former.modeling.backbones.swin_layers import ACTIVATIONS, Embeddings, SwinStage, WindowSelfAttention


class SwinBackbone(nn.Module):
    """Swin Transformer returning one feature map per requested stage, finest first.

    Stage s (1-based) has ``embed_dim * 2**(s-1)`` channels at stride ``patch_size * 2**(s-1)``; its output is the
    map before the stage's patch merging, passed through ``hidden_states_norms.stage{s}``. Inputs of any size work.
    """

    def __init__(
        self,
        *,
        num_channels: int = 3,
        patch_size: int = 4,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        hidden_act: str = "gelu",
        layer_norm_eps: float = 1e-5,
        drop_path_rate: float = 0.0,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        out_indices: Sequence[int] = (1, 2, 3, 4),
        init_std: float = 0.02,
    ) -> None:
        super().__init__()
        num_stages = len(depths)
        if len(num_heads) != num_stages:
            raise ValueError(f"depths ({list(depths)}) and num_heads ({list(num_heads)}) differ in length")
        if not out_indices or list(out_indices) != sorted(set(out_indices)) or not 1 <= out_indices[0]:
            raise ValueError(f"out_indices must be increasing stage numbers from 1, got {list(out_indices)}")
        if out_indices[-1] > num_stages:
            raise ValueError(f"out_indices {list(out_indices)} ask for more than {num_stages} stages")
        if hidden_act not in ACTIVATIONS:
            raise ValueError(f"unknown hidden_act {hidden_act!r}; known: {sorted(ACTIVATIONS)}")
        self.out_indices = tuple(out_indices)
        self.init_std = init_std

        self.embeddings = Embeddings(num_channels, embed_dim, patch_size, hidden_dropout_prob)
        # stochastic depth grows linearly from 0 at the first block to drop_path_rate at the last
        num_blocks = sum(depths)
        drop_paths = [drop_path_rate * i / max(num_blocks - 1, 1) for i in range(num_blocks)]
        encoder = nn.Module()  # a bare container, so that names read ``encoder.layers.{s}``
        encoder.layers = nn.ModuleList(
            SwinStage(
                embed_dim * 2**i,
                depths[i],
                num_heads[i],
                window_size,
                drop_paths=drop_paths[sum(depths[:i]) : sum(depths[: i + 1])],
                downsample=i < num_stages - 1,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                hidden_act=hidden_act,
                layer_norm_eps=layer_norm_eps,
                dropout=hidden_dropout_prob,
                attention_dropout=attention_probs_dropout_prob,
            )
            for i in range(num_stages)
        )
        self.encoder = encoder
        self.feature_info = [
            FeatureInfo(channels=embed_dim * 2 ** (s - 1), stride=patch_size * 2 ** (s - 1)) for s in self.out_indices
        ]
        self.hidden_states_norms = nn.ModuleDict(
            {f"stage{s}": nn.LayerNorm(info.channels) for s, info in zip(self.out_indices, self.feature_info)}
        )
        self.apply(self._init_weights)

    def _init_weights(self, module: nn.Module) -> None:
        """Original Swin initialisation: truncated-normal Linear weights and bias tables, zero biases, unit norms.

        The truncation is at +-2 (absolute), as in the original code. The patch projection keeps PyTorch's default.
        """
        if isinstance(module, nn.Linear):
            nn.init.trunc_normal_(module.weight, std=self.init_std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, WindowSelfAttention):
            nn.init.trunc_normal_(module.relative_position_bias_table, std=self.init_std)

    def forward(self, pixel_values: Tensor) -> list[Tensor]:
        """(B, 3, H, W) -> one (B, C_s, H_s, W_s) map per entry of ``out_indices``, with H_s = ceil(H / stride_s)."""
        x = self.embeddings(pixel_values)  # (B, H/4, W/4, C)
        features = []
        for s, stage in enumerate(self.encoder.layers, start=1):
            stage_map, x = stage(x)  # (B, H_s, W_s, C_s), then the merged (B, H_s/2, W_s/2, 2C_s) or None
            if s in self.out_indices:
                out = self.hidden_states_norms[f"stage{s}"](stage_map)  # (B, H_s, W_s, C_s)
                features.append(out.permute(0, 3, 1, 2))  # (B, C_s, H_s, W_s), channels-last strides, no copy
            if s == self.out_indices[-1]:
                break  # later stages would feed no output
        return features


# --- config, builder and checkpoint key rules (one row of registry.BACKBONES) ----------------------------------------


class SwinConfig(StagedBackboneConfig):
    """Hyper-parameters of a Swin Transformer backbone, in transformers' ``SwinConfig`` schema (``model_type: swin``).

    The defaults are those of transformers' ``SwinConfig``; ``Mask2FormerConfig`` uses different ones (Swin with
    depths [2, 2, 18, 2] and drop path 0.3) when no backbone is given. As in transformers, ``hidden_size`` (the last
    stage's channels) and ``num_layers`` (the number of stages) are computed when not given and can be assigned; the
    model never reads them.
    """

    model_type = "swin"
    fields = ("image_size", "patch_size", "num_channels", "embed_dim", "depths", "num_heads", "window_size",
              "mlp_ratio", "qkv_bias", "hidden_dropout_prob", "attention_probs_dropout_prob", "drop_path_rate",
              "hidden_act", "use_absolute_embeddings", "initializer_range", "layer_norm_eps", "encoder_stride",
              "out_features", "out_indices", "num_layers", "hidden_size")
    derived = ("stage_names",)
    attribute_map = {"num_attention_heads": "num_heads", "num_hidden_layers": "num_layers"}

    def __init__(
        self,
        image_size: int = 224,
        patch_size: int = 4,
        num_channels: int = 3,
        embed_dim: int = 96,
        depths: Sequence[int] = (2, 2, 6, 2),
        num_heads: Sequence[int] = (3, 6, 12, 24),
        window_size: int = 7,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        hidden_dropout_prob: float = 0.0,
        attention_probs_dropout_prob: float = 0.0,
        drop_path_rate: float = 0.1,
        hidden_act: str = "gelu",
        use_absolute_embeddings: bool = False,
        initializer_range: float = 0.02,
        layer_norm_eps: float = 1e-5,
        encoder_stride: int = 32,
        out_features: list[str] | None = None,
        out_indices: list[int] | None = None,
        num_layers: int | None = None,
        hidden_size: int | None = None,
        **kwargs: Any,
    ) -> None:
        num_heads = kwargs.pop("num_attention_heads", num_heads)
        num_layers = kwargs.pop("num_hidden_layers", num_layers)
        check_field_types("SwinConfig", locals(), ints=("patch_size", "num_channels", "embed_dim",
                                                                  "window_size", "encoder_stride"),
                          numbers=("mlp_ratio", "hidden_dropout_prob", "attention_probs_dropout_prob",
                                   "drop_path_rate", "initializer_range", "layer_norm_eps"),
                          bools=("qkv_bias", "use_absolute_embeddings"), int_lists=("depths", "num_heads"))
        self.image_size = image_size
        self.patch_size = patch_size
        self.num_channels = num_channels
        self.embed_dim = embed_dim
        self.depths = list(depths)
        self.num_heads = list(num_heads)
        self.window_size = window_size
        self.mlp_ratio = mlp_ratio
        self.qkv_bias = qkv_bias
        self.hidden_dropout_prob = hidden_dropout_prob
        self.attention_probs_dropout_prob = attention_probs_dropout_prob
        self.drop_path_rate = drop_path_rate
        self.hidden_act = hidden_act
        self.use_absolute_embeddings = use_absolute_embeddings
        self.initializer_range = initializer_range
        self.layer_norm_eps = layer_norm_eps
        self.encoder_stride = encoder_stride
        self.num_layers = len(self.depths) if num_layers is None else num_layers
        self.hidden_size = self.last_stage_channels if hidden_size is None else hidden_size
        self.out_indices = resolve_out_indices(out_features, out_indices, self.stage_names, "Swin")
        self._keep_extra(kwargs)

    @property
    def last_stage_channels(self) -> int:
        return int(self.embed_dim * 2 ** (len(self.depths) - 1))

    def validate(self) -> None:
        if len(self.depths) != len(self.num_heads):
            raise ValueError(f"Swin has {len(self.depths)} depths but {len(self.num_heads)} num_heads; give one head "
                             "count per stage.")
        for stage, heads in enumerate(self.num_heads):
            channels = self.embed_dim * 2**stage
            if channels % heads != 0:
                raise ValueError(f"Swin stage {stage + 1} has {channels} channels, not divisible by its {heads} heads;"
                                 " change embed_dim or num_heads.")
        if self.use_absolute_embeddings:
            raise ValueError("Swin use_absolute_embeddings=True is not supported (no Mask2Former checkpoint uses it); "
                             "set it to false.")
        if self.hidden_act not in ACTIVATIONS:
            raise ValueError(f"Swin hidden_act={self.hidden_act!r} is not supported; use one of "
                             f"{', '.join(ACTIVATIONS)}.")
        if 0 in self.out_indices:
            raise ValueError("Swin out_features cannot include 'stem'; choose from stage1..stage4.")


def build_swin(config: SwinConfig) -> SwinBackbone:
    return SwinBackbone(
        num_channels=config.num_channels,
        patch_size=config.patch_size,
        embed_dim=config.embed_dim,
        depths=config.depths,
        num_heads=config.num_heads,
        window_size=config.window_size,
        mlp_ratio=config.mlp_ratio,
        qkv_bias=config.qkv_bias,
        hidden_act=config.hidden_act,
        layer_norm_eps=config.layer_norm_eps,
        drop_path_rate=config.drop_path_rate,
        hidden_dropout_prob=config.hidden_dropout_prob,
        attention_probs_dropout_prob=config.attention_probs_dropout_prob,
        out_indices=config.out_indices,
        init_std=config.initializer_range,
    )


# transformers 5 keeps other names in memory than in its files: a raw ``torch.save(model.state_dict())`` from it has
# these. (pattern, replacement) pairs, applied in order.
_TRANSFORMERS5_MEMORY_NAMES = (
    (re.compile(r"^swin\.(embeddings|encoder)\."), r"\1."),
    (re.compile(r"\.attention\.q_proj\."), ".attention.self.query."),
    (re.compile(r"\.attention\.k_proj\."), ".attention.self.key."),
    (re.compile(r"\.attention\.v_proj\."), ".attention.self.value."),
    (re.compile(r"\.attention\.o_proj\."), ".attention.output.dense."),
    (re.compile(r"\.attention\.relative_position_bias\.relative_position_bias_table$"),
     ".attention.self.relative_position_bias_table"),
    (re.compile(r"\.blocks\.(\d+)\.mlp\.fc1\."), r".blocks.\1.intermediate.dense."),
    (re.compile(r"\.blocks\.(\d+)\.mlp\.fc2\."), r".blocks.\1.output.dense."),
)


def swin_native_name(key: str) -> str | None:
    """Known extras of real files: ``relative_position_index`` buffers (official hub files, transformers 4; derived
    from the window size and rebuilt) and ``swin.layernorm`` (transformers 5: a LayerNorm on the last stage that
    Mask2Former never uses). Everything else: transformers 5's in-memory names mapped to the file names."""
    if key.endswith(".relative_position_index") or key.startswith("swin.layernorm."):
        return None
    for pattern, replacement in _TRANSFORMERS5_MEMORY_NAMES:
        key = pattern.sub(replacement, key)
    return key


def swin_file_extras(config: SwinConfig, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """transformers 5 expects ``swin.layernorm`` in a file: an identity LayerNorm over the last stage's channels."""
    dtype = state_dict["embeddings.norm.weight"].dtype
    channels = config.last_stage_channels
    return {"swin.layernorm.weight": torch.ones(channels, dtype=dtype),
            "swin.layernorm.bias": torch.zeros(channels, dtype=dtype)}


# The original Swin (Mask2Former's D2SwinTransformer) -> our names; its fused qkv projection is split below.
_ORIGINAL_NAMES = (
    (re.compile(r"^patch_embed\.proj\."), "embeddings.patch_embeddings.projection."),
    (re.compile(r"^patch_embed\.norm\."), "embeddings.norm."),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.norm1\."), r"encoder.layers.\1.blocks.\2.layernorm_before."),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.norm2\."), r"encoder.layers.\1.blocks.\2.layernorm_after."),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.proj\."),
     r"encoder.layers.\1.blocks.\2.attention.output.dense."),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.relative_position_bias_table$"),
     r"encoder.layers.\1.blocks.\2.attention.self.relative_position_bias_table"),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc1\."), r"encoder.layers.\1.blocks.\2.intermediate.dense."),
    (re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.mlp\.fc2\."), r"encoder.layers.\1.blocks.\2.output.dense."),
    (re.compile(r"^layers\.(\d+)\.downsample\."), r"encoder.layers.\1.downsample."),
)
_ORIGINAL_QKV = re.compile(r"^layers\.(\d+)\.blocks\.(\d+)\.attn\.qkv\.(weight|bias)$")
_ORIGINAL_NORM = re.compile(r"^norm(\d+)\.(weight|bias)$")


def swin_from_original(state_dict: Mapping[str, Tensor], config: SwinConfig) -> OriginalWeights:
    """The original checkpoint's ``backbone.*`` tensors (prefix removed) under our names.

    ``attn.qkv`` (3C, C) is split into query, key and value (C, C) each, in that order; ``norm{i}`` (the output norm
    of stage i, 0-based) is ``hidden_states_norms.stage{i+1}``; ``relative_position_index`` (stored as (N, N)) is
    derived from the window size and dropped.
    """
    out = OriginalWeights()
    for key, tensor in state_dict.items():
        if key.endswith(".relative_position_index"):
            out.dropped.append(key)
        elif match := _ORIGINAL_QKV.match(key):
            stage, block, kind = match.groups()
            prefix = f"encoder.layers.{stage}.blocks.{block}.attention.self"
            for name, part in zip(("query", "key", "value"), tensor.chunk(3, dim=0)):
                out.add(f"{prefix}.{name}.{kind}", part.contiguous(), key)
        elif match := _ORIGINAL_NORM.match(key):
            out.add(f"hidden_states_norms.stage{int(match[1]) + 1}.{match[2]}", tensor, key)
        else:
            for pattern, replacement in _ORIGINAL_NAMES:
                if pattern.match(key):
                    out.add(pattern.sub(replacement, key), tensor, key)
                    break
            else:
                out.add(key, tensor, key)  # unknown: reported as unexpected under its own name
    return out


SWIN_RULES = CheckpointRules(native_name=swin_native_name, file_extras=swin_file_extras,
                             from_original=swin_from_original)
