"""ResNet backbone (He et al., 2016) in transformers' ``ResNetConfig`` schema and ``ResNetBackbone`` key layout.

The data path: a stem (7x7 convolution with stride 2, BatchNorm, ReLU, 3x3 max-pool with stride 2), then four stages
of residual blocks; the first block of a stage changes the channels and (except in the first stage) halves the size.
Stage s (1-based) returns (B, hidden_sizes[s-1], H / 2**(s+1), W / 2**(s+1)): strides 4, 8, 16, 32.

Bottleneck blocks (ResNet-50/101) are 1x1 -> 3x3 -> 1x1 convolutions with a quarter of the output channels inside;
the stride sits in the 3x3 convolution (``downsample_in_bottleneck=False``, the original Mask2Former configs'
``STRIDE_IN_1X1: False``) or in the first 1x1 (``True``). Basic blocks (ResNet-18/34) are two 3x3 convolutions.

BatchNorm is frozen by default (``freeze_batch_norm=True``, the original recipe's FrozenBN): its statistics and affine
parameters are loaded, used as they are in training too, and receive no gradient. ``freeze_batch_norm=False`` gives
ordinary BatchNorm that updates its statistics in training.

This file is ResNet's row of the backbone registry: ``ResNetConfig``, ``build_resnet`` and ``RESNET_RULES``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mask2former.field_types import check_field_types
from mask2former.modeling.backbones.base import (
    CheckpointRules,
    FeatureInfo,
    OriginalWeights,
    StagedBackboneConfig,
    resolve_out_indices,
)
from mask2former.modeling.recompute import call_layer

LAYER_TYPES = ("bottleneck", "basic")
_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU, "swish": nn.SiLU}


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that, when ``frozen``, always normalises with its stored statistics and trains neither them nor
    its affine parameters (detectron2's FrozenBatchNorm2d, with BatchNorm2d's state-dict names)."""

    def __init__(self, num_features: int, *, frozen: bool) -> None:
        super().__init__(num_features)
        self.frozen = frozen
        if frozen:
            self.weight.requires_grad_(False)
            self.bias.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        if not self.frozen:
            return super().forward(x)
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", frozen={self.frozen}"


class ConvNorm(nn.Module):
    """Convolution (no bias, padding ``kernel // 2``) -> BatchNorm -> activation (``None``: none)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1,
                 activation: str | None, frozen_norm: bool) -> None:
        super().__init__()
        self.convolution = nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=kernel_size // 2,
                                     bias=False)
        self.normalization = BatchNorm2d(out_channels, frozen=frozen_norm)
        self.activation = _ACTIVATIONS[activation]() if activation is not None else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.normalization(self.convolution(x)))


class ResidualBlock(nn.Module):
    """``activation(layer(x) + shortcut(x))``; the shortcut projects (1x1 convolution + BatchNorm, with the block's
    stride) when the channels or the size change, and is the identity otherwise. Inside ``layer`` the activations
    are ReLU whatever ``activation`` is (as in transformers)."""

    def __init__(self, in_channels: int, out_channels: int, *, stride: int, bottleneck: bool,
                 stride_in_first_1x1: bool, activation: str, frozen_norm: bool) -> None:
        super().__init__()
        norm = dict(frozen_norm=frozen_norm)
        if in_channels != out_channels or stride != 1:
            self.shortcut: nn.Module = ConvNorm(in_channels, out_channels, 1, stride=stride, activation=None, **norm)
        else:
            self.shortcut = nn.Identity()
        if bottleneck:
            inner = out_channels // 4
            first, middle = (stride, 1) if stride_in_first_1x1 else (1, stride)
            self.layer = nn.Sequential(
                ConvNorm(in_channels, inner, 1, stride=first, activation="relu", **norm),
                ConvNorm(inner, inner, 3, stride=middle, activation="relu", **norm),
                ConvNorm(inner, out_channels, 1, activation=None, **norm),
            )
        else:
            self.layer = nn.Sequential(
                ConvNorm(in_channels, out_channels, 3, stride=stride, activation="relu", **norm),
                ConvNorm(out_channels, out_channels, 3, activation=None, **norm),
            )
        self.activation = _ACTIVATIONS[activation]()

    def forward(self, x: Tensor) -> Tensor:
        return self.activation(self.layer(x) + self.shortcut(x))


class ResNetStage(nn.Module):
    """``depth`` residual blocks; the first changes channels and applies the stage's stride."""

    def __init__(self, in_channels: int, out_channels: int, depth: int, *, stride: int, **block: Any) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            *(ResidualBlock(in_channels if i == 0 else out_channels, out_channels, stride=stride if i == 0 else 1,
                            **block) for i in range(depth))
        )
        self.gradient_checkpointing = False

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = call_layer(layer, self.gradient_checkpointing, x)
        return x


class ResNetBackbone(nn.Module):
    """ResNet returning the maps of ``out_indices`` (0: the stem's output, s: stage s), finest first.

    Names follow transformers' ``ResNetBackbone``: ``embedder.embedder`` (the stem convolution),
    ``encoder.stages.{s}.layers.{b}.{shortcut, layer.{i}}.{convolution, normalization}``.
    """

    def __init__(
        self,
        *,
        num_channels: int = 3,
        embedding_size: int = 64,
        hidden_sizes: Sequence[int] = (256, 512, 1024, 2048),
        depths: Sequence[int] = (3, 4, 6, 3),
        layer_type: str = "bottleneck",
        hidden_act: str = "relu",
        downsample_in_first_stage: bool = False,
        downsample_in_bottleneck: bool = False,
        out_indices: Sequence[int] = (1, 2, 3, 4),
        freeze_batch_norm: bool = True,
    ) -> None:
        super().__init__()
        if layer_type not in LAYER_TYPES:
            raise ValueError(f"layer_type must be one of {LAYER_TYPES}, got {layer_type!r}")
        if len(hidden_sizes) != len(depths):
            raise ValueError(f"hidden_sizes ({list(hidden_sizes)}) and depths ({list(depths)}) differ in length")
        self.out_indices = tuple(out_indices)
        embedder = nn.Module()  # a bare container, so that names read ``embedder.embedder``
        embedder.embedder = ConvNorm(num_channels, embedding_size, 7, stride=2, activation=hidden_act,
                                     frozen_norm=freeze_batch_norm)
        embedder.pooler = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.embedder = embedder
        block = dict(bottleneck=layer_type == "bottleneck", stride_in_first_1x1=downsample_in_bottleneck,
                     activation=hidden_act, frozen_norm=freeze_batch_norm)
        channels = [embedding_size, *hidden_sizes]
        strides = [2 if downsample_in_first_stage else 1] + [2] * (len(depths) - 1)
        encoder = nn.Module()
        encoder.stages = nn.ModuleList(
            ResNetStage(channels[i], channels[i + 1], depths[i], stride=strides[i], **block) for i in range(len(depths))
        )
        self.encoder = encoder
        stage_strides = [4]
        for stride in strides:
            stage_strides.append(stage_strides[-1] * stride)
        self.feature_info = [FeatureInfo(channels[i], stage_strides[i]) for i in self.out_indices]
        self._init_weights()

    def _init_weights(self) -> None:
        """He (fan-out) initialisation of the convolutions; BatchNorm starts as the identity."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, pixel_values: Tensor) -> list[Tensor]:
        """(B, C, H, W) -> one (B, C_s, H_s, W_s) map per entry of ``out_indices``."""
        x = self.embedder.pooler(self.embedder.embedder(pixel_values))  # (B, E, H/4, W/4)
        features = [x] if 0 in self.out_indices else []
        for s, stage in enumerate(self.encoder.stages, start=1):
            if s > self.out_indices[-1]:
                break  # later stages would feed no output
            x = stage(x)  # (B, C_s, H_s, W_s)
            if s in self.out_indices:
                features.append(x)
        return features


# --- config, builder and checkpoint key rules (one row of registry.BACKBONES) ----------------------------------------


class ResNetConfig(StagedBackboneConfig):
    """Hyper-parameters of a ResNet backbone, in transformers' ``ResNetConfig`` schema (``model_type: resnet``).

    The defaults are transformers' (ResNet-50); ``freeze_batch_norm`` is ours (transformers keeps it as an unknown
    key). ResNet-50 with the original Mask2Former settings: ``ResNetConfig(out_features=["stage1", "stage2",
    "stage3", "stage4"])``; ResNet-101: also ``depths=[3, 4, 23, 3]``.
    """

    model_type = "resnet"
    fields = ("num_channels", "embedding_size", "hidden_sizes", "depths", "layer_type", "hidden_act",
              "downsample_in_first_stage", "downsample_in_bottleneck", "freeze_batch_norm", "out_features",
              "out_indices")
    derived = ("stage_names",)

    def __init__(
        self,
        num_channels: int = 3,
        embedding_size: int = 64,
        hidden_sizes: Sequence[int] = (256, 512, 1024, 2048),
        depths: Sequence[int] = (3, 4, 6, 3),
        layer_type: str = "bottleneck",
        hidden_act: str = "relu",
        downsample_in_first_stage: bool = False,
        downsample_in_bottleneck: bool = False,
        freeze_batch_norm: bool = True,
        out_features: list[str] | None = None,
        out_indices: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        check_field_types("ResNetConfig", locals(), ints=("num_channels", "embedding_size"),
                          bools=("downsample_in_first_stage", "downsample_in_bottleneck", "freeze_batch_norm"),
                          int_lists=("hidden_sizes", "depths"))
        self.num_channels = num_channels
        self.embedding_size = embedding_size
        self.hidden_sizes = list(hidden_sizes)
        self.depths = list(depths)
        self.layer_type = layer_type
        self.hidden_act = hidden_act
        self.downsample_in_first_stage = downsample_in_first_stage
        self.downsample_in_bottleneck = downsample_in_bottleneck
        self.freeze_batch_norm = freeze_batch_norm
        self.out_indices = resolve_out_indices(out_features, out_indices, self.stage_names, "ResNet")
        self._keep_extra(kwargs)

    def validate(self) -> None:
        if self.layer_type not in LAYER_TYPES:
            raise ValueError(f"ResNet layer_type={self.layer_type!r} is not one of {', '.join(LAYER_TYPES)}.")
        if len(self.hidden_sizes) != len(self.depths):
            raise ValueError(f"ResNet has {len(self.depths)} depths but {len(self.hidden_sizes)} hidden_sizes; give "
                             "one of each per stage.")
        if self.hidden_act not in _ACTIVATIONS:
            raise ValueError(f"ResNet hidden_act={self.hidden_act!r} is not supported; use one of "
                             f"{', '.join(_ACTIVATIONS)}.")
        if self.layer_type == "bottleneck" and any(size % 4 for size in self.hidden_sizes):
            raise ValueError(f"ResNet bottleneck blocks need hidden_sizes divisible by 4, got {self.hidden_sizes}.")


def build_resnet(config: ResNetConfig) -> ResNetBackbone:
    return ResNetBackbone(
        num_channels=config.num_channels,
        embedding_size=config.embedding_size,
        hidden_sizes=config.hidden_sizes,
        depths=config.depths,
        layer_type=config.layer_type,
        hidden_act=config.hidden_act,
        downsample_in_first_stage=config.downsample_in_first_stage,
        downsample_in_bottleneck=config.downsample_in_bottleneck,
        out_indices=config.out_indices,
        freeze_batch_norm=config.freeze_batch_norm,
    )


# detectron2's ResNet -> ours: the stem convolution, and per block conv1..conv3 and the shortcut, each with its
# (frozen) BatchNorm in ``.norm``.
_ORIGINAL_STEM = re.compile(r"^stem\.conv1\.(?:(weight)|norm\.(weight|bias|running_mean|running_var))$")
_ORIGINAL_BLOCK = re.compile(
    r"^res(\d+)\.(\d+)\.(conv(\d)|shortcut)\.(?:(weight)|norm\.(weight|bias|running_mean|running_var))$"
)


def resnet_from_original(state_dict: Mapping[str, Tensor], config: ResNetConfig) -> OriginalWeights:
    """The original checkpoint's ``backbone.*`` tensors (prefix removed) under our names.

    ``res{s+2}.{b}.conv{i+1}`` is ``encoder.stages.{s}.layers.{b}.layer.{i}``, ``res{s+2}.{b}.shortcut`` the block's
    ``shortcut``, ``stem.conv1`` is ``embedder.embedder``; a ``.norm`` is the ``normalization`` next to the
    ``convolution``. Frozen BatchNorm stores no ``num_batches_tracked``: it is filled with 0.
    """
    out = OriginalWeights()
    for key, tensor in state_dict.items():
        if match := _ORIGINAL_STEM.match(key):
            target = "embedder.embedder"
            conv_weight, norm_field = match.groups()
        elif match := _ORIGINAL_BLOCK.match(key):
            res, block, part, conv, conv_weight, norm_field = match.groups()
            layer = "shortcut" if part == "shortcut" else f"layer.{int(conv) - 1}"
            target = f"encoder.stages.{int(res) - 2}.layers.{block}.{layer}"
        else:
            out.add(key, tensor, key)  # unknown (e.g. a DeepLab stem's conv2): reported as unexpected
            continue
        if conv_weight:
            out.add(f"{target}.convolution.weight", tensor, key)
        else:
            out.add(f"{target}.normalization.{norm_field}", tensor, key)
            counter = f"{target}.normalization.num_batches_tracked"
            if norm_field == "running_mean" and counter not in out.tensors:
                out.add(counter, torch.zeros((), dtype=torch.long), key)
    return out


RESNET_RULES = CheckpointRules(from_original=resnet_from_original)
