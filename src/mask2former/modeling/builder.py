"""The one place where a ``Mask2FormerConfig`` becomes modules.

Every part receives literal keyword arguments taken from the config, so its real dependencies are visible in its
signature and no layer ever sees the config object.
"""

from __future__ import annotations

from torch import nn

from mask2former.config import Mask2FormerConfig
from mask2former.loss.criterion import Mask2FormerCriterion
from mask2former.modeling.backbones import FeatureInfo
from mask2former.modeling.backbones.registry import backbone_entry
from mask2former.modeling.pixel_decoder import PixelDecoder
from mask2former.modeling.transformer_decoder import MaskedAttentionTransformer


def build_backbone(config: Mask2FormerConfig) -> nn.Module:
    """The backbone of ``config.backbone_config``'s type (its registry row's builder). The module honours the
    contract of ``backbones/base.py``: ``feature_info`` and a list of maps, finest first."""
    backbone_config = config.backbone_config
    return backbone_entry(backbone_config.model_type).build(backbone_config)


def build_pixel_decoder(config: Mask2FormerConfig, in_features: list[FeatureInfo]) -> PixelDecoder:
    return PixelDecoder(
        in_features=in_features,
        feature_dim=config.feature_size,
        mask_dim=config.mask_feature_size,
        num_heads=config.num_attention_heads,
        num_encoder_layers=config.encoder_layers,
        encoder_ffn_dim=config.encoder_feedforward_dim,
        dropout=config.dropout,
        activation="relu",  # the deformable encoder uses ReLU whatever activation_function says (original and transformers)
        num_points=4,
        common_stride=config.common_stride,
    )


def build_transformer_decoder(config: Mask2FormerConfig) -> MaskedAttentionTransformer:
    return MaskedAttentionTransformer(
        in_channels=config.feature_size,
        hidden_dim=config.hidden_dim,
        num_queries=config.num_queries,
        num_heads=config.num_attention_heads,
        dim_feedforward=config.dim_feedforward,
        num_layers=config.decoder_layers - 1,
        mask_dim=config.mask_feature_size,
        pre_norm=config.pre_norm,
        enforce_input_projection=config.enforce_input_projection,
        dropout=config.dropout,
        activation=config.activation_function,
        num_levels=3,
        init_xavier_std=config.init_xavier_std,
    )


def build_class_predictor(config: Mask2FormerConfig) -> nn.Linear:
    """Linear (hidden_dim -> num_labels + 1); the last logit is "no object"."""
    return nn.Linear(config.hidden_dim, config.num_labels + 1)


def build_criterion(config: Mask2FormerConfig, *, matcher_class_cost: float | None = None) -> Mask2FormerCriterion:
    return Mask2FormerCriterion(
        num_labels=config.num_labels,
        no_object_weight=config.no_object_weight,
        class_weight=config.class_weight,
        mask_weight=config.mask_weight,
        dice_weight=config.dice_weight,
        train_num_points=config.train_num_points,
        oversample_ratio=config.oversample_ratio,
        importance_sample_ratio=config.importance_sample_ratio,
        matcher_class_cost=matcher_class_cost,
    )
