"""Model outputs in, segmentations out: semantic maps, instances and panoptic segments (SPEC section 5), and COCO RLE.

Each post-processor brings every image's mask logits to its target size the way the original Mask2Former does
(:mod:`.geometry`) and then applies its task's rule in plain, vectorised torch on the outputs' device.
"""

from .instance import TOP_K_INSTANCES, instance_segmentation
from .panoptic import panoptic_segmentation
from .semantic import semantic_segmentation

__all__ = ["TOP_K_INSTANCES", "instance_segmentation", "panoptic_segmentation", "semantic_segmentation"]
