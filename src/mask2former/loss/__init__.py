"""Training loss: Hungarian matching and the Mask2Former set criterion."""

from .criterion import LOSS_TERMS, Mask2FormerCriterion, dice_loss, num_masks_normalizer, sigmoid_bce_loss
from .matcher import HungarianMatcher, pairwise_dice, pairwise_sigmoid_bce
from .point_sampling import importance_points, point_sample, sample_targets, uniform_points

__all__ = [
    "LOSS_TERMS",
    "HungarianMatcher",
    "Mask2FormerCriterion",
    "dice_loss",
    "importance_points",
    "num_masks_normalizer",
    "pairwise_dice",
    "pairwise_sigmoid_bce",
    "point_sample",
    "sample_targets",
    "sigmoid_bce_loss",
    "uniform_points",
]
