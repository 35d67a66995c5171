"""Instance segmentation: the best (query, class) pairs, each with its own binary mask."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import rle
from .geometry import CHUNK_VALUES, batch_geometry, mask_probabilities

TOP_K_INSTANCES = 100  # (query, class) pairs scored per image, as the original's test_topk_per_image


def instance_segmentation(
    outputs: Any,
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    overlap_mask_area_threshold: float = 0.8,
    target_sizes: Any = None,
    return_coco_annotation: bool = False,
    return_binary_maps: bool = False,
    chunk_values: int = CHUNK_VALUES,
) -> list[dict]:
    """Per image ``{"segmentation": ..., "segments_info": [{"id", "label_id", "was_fused", "score"}]}``.

    The ``TOP_K_INSTANCES`` best (query, class) pairs by class probability are scored as class probability x mean
    mask probability over the mask (pixels with probability > ``mask_threshold``); pairs scoring >= ``threshold`` with
    a non-empty mask are kept, best first. ``segmentation`` is an (T_h, T_w) int32 map of instance ids (-1 = none),
    each pixel going to the best kept instance covering it, after dropping instances left with less than
    ``overlap_mask_area_threshold`` of their mask; with ``return_binary_maps`` an (N, T_h, T_w) bool tensor and with
    ``return_coco_annotation`` a list of COCO RLE dicts, one full (possibly overlapping) mask per kept instance.
    """
    if return_coco_annotation and return_binary_maps:
        raise ValueError("Choose one of return_coco_annotation and return_binary_maps, not both.")
    results = []
    for b, geometry in enumerate(batch_geometry(outputs, target_sizes)):
        class_probs = outputs.class_queries_logits[b].float().softmax(-1)[:, :-1]  # (Q, K)
        num_classes = class_probs.shape[1]
        top, flat = class_probs.reshape(-1).topk(min(TOP_K_INSTANCES, class_probs.numel()))  # (M,), best first
        # The mean mask probability is at most 1, so pairs with a class probability below threshold cannot pass.
        top, flat = top[top >= threshold], flat[top >= threshold]  # (m,)
        queries, labels = flat // num_classes, flat % num_classes
        unique, pair_query = torch.unique(queries, return_inverse=True)  # a query may come with several classes
        probs = mask_probabilities(outputs.masks_queries_logits[b, unique], geometry, chunk_values)  # (u, P)
        binary = probs > mask_threshold  # (u, P)
        area = binary.sum(1, dtype=torch.int32)  # (u,) (int32: half the work of the default int64)
        # (u,) mean probability over the mask; F.threshold keeps values > mask_threshold, the pixels of ``binary``
        mask_score = F.threshold(probs, mask_threshold, 0.0).sum(1) / (area + 1e-6)
        final = top * mask_score[pair_query]  # (m,)
        keep = torch.nonzero((area[pair_query] > 0) & (final >= threshold)).reshape(-1)
        keep = keep[final[keep].argsort(descending=True, stable=True)]  # (N,) best first
        info = [{"id": i, "label_id": int(labels[k]), "was_fused": False, "score": round(float(final[k]), 6)}
                for i, k in enumerate(keep.tolist())]
        masks = binary[pair_query[keep]]  # (N, P)
        if return_binary_maps:
            segmentation: Any = masks.view(len(keep), *geometry.target)
        elif return_coco_annotation:
            segmentation = [rle.encode(mask) for mask in masks.view(len(keep), *geometry.target).cpu().numpy()]
        else:
            segmentation, info = _instance_map(masks, area[pair_query[keep]], info, overlap_mask_area_threshold)
            segmentation = segmentation.view(geometry.target)
        results.append({"segmentation": segmentation, "segments_info": info})
    return results


def _owners(masks: Tensor, alive: Tensor) -> Tensor:
    """(P,) int64: the first alive instance (rows of ``masks`` (N, P), best first) covering each pixel, -1 none.

    Instance i gets the code N - i (0 if dropped); each pixel keeps the largest code among the masks covering it.
    The codes are bytes when they fit (a quarter of the memory traffic of float codes)."""
    count = len(masks)
    if count == 0:
        return torch.full((masks.shape[1],), -1, dtype=torch.int64, device=masks.device)
    dtype = torch.uint8 if count < 256 else torch.int32
    codes = ((count - torch.arange(count, device=masks.device)) * alive).to(dtype)  # (N,)
    best = (masks.to(dtype) * codes[:, None]).amax(0)  # (P,)
    return torch.where(best > 0, count - best.long(), -1)


def _instance_map(masks: Tensor, area: Tensor, info: list[dict], overlap_threshold: float
                  ) -> tuple[Tensor, list[dict]]:
    """(P,) int32 map of kept instances (-1 none) and their ``segments_info``, ids renumbered from 0.

    Instances left with fewer than ``overlap_threshold`` x their mask area of visible pixels are dropped, and the map
    is painted again without them."""
    count, device = len(masks), masks.device
    alive = torch.ones(count, dtype=torch.bool, device=device)
    owner = _owners(masks, alive)
    visible = torch.bincount(owner + 1, minlength=count + 1)[1:]  # (N,) pixels each instance shows
    alive = visible >= overlap_threshold * area
    if not bool(alive.all()):
        owner = _owners(masks, alive)
    new_id = torch.cumsum(alive.long(), 0) - 1  # (N,) id among survivors
    if count == 0:
        return owner.to(torch.int32), []
    segmentation = torch.where(owner >= 0, new_id[owner.clamp(min=0)], -1).to(torch.int32)
    segments = [dict(segment, id=int(new_id[i])) for i, segment in enumerate(info) if bool(alive[i])]
    return segmentation, segments
