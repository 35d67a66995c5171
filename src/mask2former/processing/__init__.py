"""Preprocessing (images and training targets) and post-processing (semantic, instance, panoptic)."""

from .image_processor import BatchFeature, Mask2FormerImageProcessor

__all__ = ["BatchFeature", "Mask2FormerImageProcessor"]
