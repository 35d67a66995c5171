"""Any timm model as the backbone (``use_timm_backbone=True`` with a ``backbone`` name), through timm's
``features_only`` mode, in transformers' ``TimmBackboneConfig`` schema and ``TimmBackbone`` key layout (the timm
model's own names under ``_backbone.``).

timm is imported only when such a backbone is built; without it the error names the package. The model must return
four maps at strides 4, 8, 16, 32 (``out_indices``, by default ``[1, 2, 3, 4]`` as for a ResNet).

This file is the ``timm_backbone`` row of the backbone registry: ``TimmBackboneConfig``, ``build_timm`` and its
(trivial) key rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from mask2former.modeling.backbones.base import BackboneConfig, CheckpointRules, FeatureInfo

DEFAULT_OUT_INDICES = (1, 2, 3, 4)


def import_timm() -> Any:
    """The timm module, or an ImportError that says what to install."""
    try:
        import timm
    except Exception as err:  # ImportError, or timm failing on a torchvision built for another torch
        raise ImportError(
            "use_timm_backbone=True needs the timm package, which could not be imported "
            f"({type(err).__name__}: {err}). Install it with `pip install timm` (timm also imports torchvision, "
            "which must match your torch build), or use a built-in backbone (backbone_config of type swin or resnet)."
        ) from err
    return timm


class TimmBackbone(nn.Module):
    """A timm model created with ``features_only=True``; ``feature_info`` is read from timm's own."""

    def __init__(self, *, name: str, out_indices: Sequence[int], num_channels: int = 3, pretrained: bool = False,
                 output_stride: int | None = None, freeze_batch_norm: bool = False) -> None:
        super().__init__()
        timm = import_timm()
        extra = {} if output_stride is None else {"output_stride": output_stride}
        self._backbone = timm.create_model(name, pretrained=pretrained, features_only=True, in_chans=num_channels,
                                           out_indices=tuple(out_indices), **extra)
        if freeze_batch_norm:
            self._backbone = timm.utils.model.freeze_batch_norm_2d(self._backbone)
        info = self._backbone.feature_info
        self.feature_info = [FeatureInfo(int(c), int(s)) for c, s in zip(info.channels(), info.reduction())]

    def forward(self, pixel_values: Tensor) -> list[Tensor]:
        """(B, C, H, W) -> the maps timm returns for ``out_indices``, finest first."""
        return list(self._backbone(pixel_values))


class TimmBackboneConfig(BackboneConfig):
    """A timm model by name (``model_type: timm_backbone``, transformers' schema)."""

    model_type = "timm_backbone"
    fields = ("backbone", "num_channels", "features_only", "freeze_batch_norm_2d", "output_stride", "out_indices")

    def __init__(self, backbone: str | None = None, num_channels: int = 3, features_only: bool = True,
                 freeze_batch_norm_2d: bool = False, output_stride: int | None = None,
                 out_indices: Sequence[int] | None = None, **kwargs: Any) -> None:
        self.backbone = backbone
        self.num_channels = num_channels
        self.features_only = features_only
        self.freeze_batch_norm_2d = freeze_batch_norm_2d
        self.output_stride = output_stride
        self.out_indices = list(DEFAULT_OUT_INDICES if out_indices is None else out_indices)
        kwargs.pop("out_features", None)  # transformers writes null: timm names its stages itself
        self._keep_extra(kwargs)

    def validate(self) -> None:
        if not self.backbone:
            raise ValueError("timm_backbone needs backbone=<a timm model name, e.g. 'resnet50'>.")
        if not self.features_only:
            raise ValueError("timm_backbone needs features_only=True (Mask2Former takes feature maps).")


def build_timm(config: TimmBackboneConfig, *, pretrained: bool = False) -> TimmBackbone:
    return TimmBackbone(name=str(config.backbone), out_indices=config.out_indices, num_channels=config.num_channels,
                        pretrained=pretrained, output_stride=config.output_stride,
                        freeze_batch_norm=config.freeze_batch_norm_2d)


TIMM_RULES = CheckpointRules()
