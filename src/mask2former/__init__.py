"""Mask2Former: universal image segmentation (panoptic, instance, semantic) with transformers-compatible weights.

The public names match transformers' Mask2Former API, so switching is a change of import.
"""

from mask2former.config import Mask2FormerConfig
from mask2former.modeling.backbones.resnet import ResNetConfig
from mask2former.modeling.backbones.swin import SwinConfig
from mask2former.modeling.model import Mask2FormerForUniversalSegmentation, Mask2FormerModel
from mask2former.modeling.outputs import Mask2FormerForUniversalSegmentationOutput, Mask2FormerModelOutput
from mask2former.preprocess import Mask2FormerImageProcessor
from mask2former.version import __version__

__all__ = [
    "Mask2FormerConfig",
    "Mask2FormerForUniversalSegmentation",
    "Mask2FormerForUniversalSegmentationOutput",
    "Mask2FormerImageProcessor",
    "Mask2FormerModel",
    "Mask2FormerModelOutput",
    "ResNetConfig",
    "SwinConfig",
    "__version__",
]
