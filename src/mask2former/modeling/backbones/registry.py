"""The backbone table: ``model_type`` -> (config class, builder, checkpoint key rules).

Adding a backbone is one file (its config class in transformers' schema, a builder returning a module that honours
the contract of ``base.py``, its key rules) plus one row here. Nothing else in the package names a backbone type.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from mask2former.modeling.backbones.base import BackboneConfig, CheckpointRules
from mask2former.modeling.backbones.resnet import RESNET_RULES, ResNetConfig, build_resnet
from mask2former.modeling.backbones.swin import SWIN_RULES, SwinConfig, build_swin
from mask2former.modeling.backbones.timm_backbone import TIMM_RULES, TimmBackboneConfig, build_timm


@dataclass(frozen=True)
class BackboneEntry:
    config_class: type[BackboneConfig]
    build: Callable[..., nn.Module]
    rules: CheckpointRules


BACKBONES: dict[str, BackboneEntry] = {
    "swin": BackboneEntry(SwinConfig, build_swin, SWIN_RULES),
    "resnet": BackboneEntry(ResNetConfig, build_resnet, RESNET_RULES),
    "timm_backbone": BackboneEntry(TimmBackboneConfig, build_timm, TIMM_RULES),
}


def backbone_entry(model_type: str) -> BackboneEntry:
    """The row of ``model_type``; a ``ValueError`` naming the supported types otherwise."""
    if model_type not in BACKBONES:
        raise ValueError(f"backbone type {model_type!r} is not supported; mask2former supports: "
                         f"{', '.join(BACKBONES)}.")
    return BACKBONES[model_type]
