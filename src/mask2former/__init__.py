"""Mask2Former: universal image segmentation."""
