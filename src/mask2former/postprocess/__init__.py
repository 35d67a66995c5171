"""Model outputs in, segmentations out: semantic maps, instances and panoptic segments (SPEC section 5), and COCO RLE.

Each post-processor brings every image's mask logits to its target size the way the original Mask2Former does
(:mod:`.geometry`) and then applies its task's rule in plain, vectorised torch on the outputs' device.
"""

from .instance import TOP_K_INSTANCES, instance_segmentation
from .panoptic import panoptic_segmentation
from .rle import binary_mask_to_rle, convert_segmentation_to_rle
from .semantic import SemanticSegmentationResult, semantic_segmentation

__all__ = ["TOP_K_INSTANCES", "SemanticSegmentationResult", "binary_mask_to_rle", "convert_segmentation_to_rle",
           "instance_segmentation", "panoptic_segmentation", "semantic_segmentation"]
