"""Backbones. Each exposes ``feature_info``: the channels and stride of every map it returns, finest first."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FeatureInfo:
    """One backbone output: its channel count and its stride (reduction) relative to the input image."""

    channels: int
    stride: int
