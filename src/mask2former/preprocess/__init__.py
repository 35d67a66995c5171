"""The image processor: images (and training label maps) in, padded model batches out.

Its ``post_process_*`` methods hand the model's outputs to :mod:`mask2former.postprocess`.
"""

from .image_processor import BatchFeature, Mask2FormerImageProcessor

__all__ = ["BatchFeature", "Mask2FormerImageProcessor"]
