"""Backbones: one file each (config, builder, key rules, module), one row each in ``registry.BACKBONES``.

Every backbone exposes ``feature_info``: the channels and stride of every map it returns, finest first
(``base.py`` states the contract).
"""

from mask2former.modeling.backbones.base import Backbone, BackboneConfig, CheckpointRules, FeatureInfo

__all__ = ["Backbone", "BackboneConfig", "CheckpointRules", "FeatureInfo"]
