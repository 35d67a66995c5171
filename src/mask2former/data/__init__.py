"""Datasets (COCO panoptic, COCO instance, semantic folders), joint augmentations, and a synthetic dataset writer."""

from .coco import CocoInstanceDataset, CocoPanopticDataset, decode_coco_segmentation
from .formats import (
    Category,
    id_to_rgb,
    read_label_png,
    read_panoptic_png,
    rgb_to_id,
    write_label_png,
    write_panoptic_png,
)
from .sample import Sample, SegmentationDataset, masks_to_panoptic, masks_to_semantic
from .semantic import SemanticFolderDataset, reduce_labels
from .synthetic import SyntheticDataset, generate_synthetic_dataset
from .transforms import (
    ColorJitter,
    Compose,
    LargeScaleJitter,
    RandomCrop,
    RandomHorizontalFlip,
    ResizeShortestEdge,
)

__all__ = [
    "Category",
    "CocoInstanceDataset",
    "CocoPanopticDataset",
    "ColorJitter",
    "Compose",
    "LargeScaleJitter",
    "RandomCrop",
    "RandomHorizontalFlip",
    "ResizeShortestEdge",
    "Sample",
    "SegmentationDataset",
    "SemanticFolderDataset",
    "SyntheticDataset",
    "decode_coco_segmentation",
    "generate_synthetic_dataset",
    "id_to_rgb",
    "masks_to_panoptic",
    "masks_to_semantic",
    "read_label_png",
    "read_panoptic_png",
    "reduce_labels",
    "rgb_to_id",
    "write_label_png",
    "write_panoptic_png",
]
