"""Evaluation metrics: panoptic quality, semantic mIoU, instance mask AP, and reporting helpers."""

from .instance import AP_NAMES, evaluate_instance_segmentation, masks_to_coco_results
from .panoptic_quality import PanopticQuality, evaluate_panoptic_files, panoptic_image_stats
from .report import format_metrics, save_metrics
from .semantic import ConfusionMatrix, evaluate_semantic_folders

__all__ = [
    "AP_NAMES",
    "ConfusionMatrix",
    "PanopticQuality",
    "evaluate_instance_segmentation",
    "evaluate_panoptic_files",
    "evaluate_semantic_folders",
    "format_metrics",
    "masks_to_coco_results",
    "panoptic_image_stats",
    "save_metrics",
]
