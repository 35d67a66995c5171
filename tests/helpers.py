"""Shared test helpers: tiny configurations and weight randomisation for parity tests against transformers."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def tiny_config_kwargs(**overrides: Any) -> dict[str, Any]:
    """Keyword arguments of a tiny Mask2Former (Swin 16-channel backbone, 32-dim decoder) shared by both libraries."""
    backbone = dict(
        embed_dim=16,
        depths=[1, 1, 2, 1],
        num_heads=[1, 2, 2, 4],
        window_size=7,
        drop_path_rate=0.0,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    backbone.update(overrides.pop("backbone", {}))
    kwargs: dict[str, Any] = dict(
        backbone_config=backbone,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        dim_feedforward=64,
        num_attention_heads=4,
        encoder_layers=2,
        decoder_layers=4,
        num_queries=5,
        num_labels=3,
    )
    kwargs.update(overrides)
    return kwargs


def tiny_resnet_config_kwargs(**overrides: Any) -> dict[str, Any]:
    """A tiny Mask2Former on a tiny bottleneck ResNet (16-channel stem, 32..256 channels)."""
    backbone = dict(
        model_type="resnet",
        embedding_size=16,
        hidden_sizes=[32, 64, 128, 256],
        depths=[1, 2, 2, 1],
        layer_type="bottleneck",
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    backbone.update(overrides.pop("backbone", {}))
    return tiny_config_kwargs(backbone=backbone, **overrides)


def transformers_config(**kwargs: Any):
    """transformers' Mask2FormerConfig of the same keyword arguments (backbone dict with or without model_type)."""
    from transformers import Mask2FormerConfig, ResNetConfig, SwinConfig

    kwargs = dict(kwargs)
    backbone = dict(kwargs["backbone_config"])
    config_class = {"swin": SwinConfig, "resnet": ResNetConfig}[backbone.pop("model_type", "swin")]
    kwargs["backbone_config"] = config_class(**backbone)
    return Mask2FormerConfig(**kwargs)


@torch.no_grad()
def randomize_batch_norm_statistics_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm running mean and variance non-trivial values (parity must cover the loaded statistics)."""
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
    return model


@torch.no_grad()
def randomize_(model: nn.Module, seed: int = 0, scale: float = 0.05) -> nn.Module:
    """Perturb every floating parameter so no LayerNorm is the identity and no zero-initialised layer stays zero."""
    generator = torch.Generator().manual_seed(seed)
    for name, param in model.named_parameters():
        noise = torch.randn(param.shape, generator=generator) * scale
        if param.dim() == 1 and name.endswith("weight"):
            param.copy_(1.0 + 2 * noise)
        else:
            param.add_(noise.to(param.dtype))
    return model


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two tensors or (nested) tuples/lists/dicts of tensors of equal layout."""
    if a is None or b is None:
        assert a is None and b is None, (type(a), type(b))
        return 0.0
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.shape == b.shape, (getattr(a, "shape", None), getattr(b, "shape", None))
        return (a.float() - b.float()).abs().max().item() if a.numel() else 0.0
    if isinstance(a, dict):
        assert set(a) == set(b), (set(a), set(b))
        return max(max_abs_diff(a[k], b[k]) for k in a)
    assert len(a) == len(b), (len(a), len(b))
    return max((max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
