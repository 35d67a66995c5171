"""Panoptic segmentation: segments of "thing" and "stuff" classes that do not overlap (original Mask2Former rule)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .geometry import CHUNK_VALUES, batch_geometry, chunks, mask_probabilities


def panoptic_segmentation(
    outputs: Any,
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    overlap_mask_area_threshold: float = 0.8,
    label_ids_to_fuse: set[int] | None = None,
    target_sizes: Any = None,
    chunk_values: int = CHUNK_VALUES,
) -> list[dict]:
    """Per image ``{"segmentation": (T_h, T_w) int32 ids, 0 = no segment, "segments_info": [...]}``.

    Queries whose best class is not "no object" and scores above ``threshold`` compete: each pixel goes to the query
    with the largest score x mask probability, and is painted where that probability is >= ``mask_threshold``. A
    query whose won pixels are fewer than ``overlap_mask_area_threshold`` x its own mask area (probability >=
    ``mask_threshold``), or that paints nothing, is dropped. Queries of a class in ``label_ids_to_fuse`` share one
    segment per class.
    """
    fuse = set() if label_ids_to_fuse is None else {int(label) for label in label_ids_to_fuse}
    results = []
    for b, geometry in enumerate(batch_geometry(outputs, target_sizes)):
        probs = outputs.class_queries_logits[b].float().softmax(-1)  # (Q, K + 1)
        scores, labels = probs.max(-1)  # (Q,)
        keep = (labels != probs.shape[-1] - 1) & (scores > threshold)
        scores, labels = scores[keep], labels[keep]  # (n,)
        device = scores.device
        if len(scores) == 0:
            results.append({"segmentation": torch.zeros(geometry.target, dtype=torch.int32, device=device),
                            "segments_info": []})
            continue
        mask_probs = mask_probabilities(outputs.masks_queries_logits[b, keep], geometry, chunk_values)  # (n, P)
        n, num_pixels = mask_probs.shape
        winner = torch.empty(num_pixels, dtype=torch.int64, device=device)  # (P,) query with the best score x prob
        painted = torch.empty(num_pixels, dtype=torch.bool, device=device)  # (P,) its prob >= mask_threshold
        for part in chunks(num_pixels, n, chunk_values):
            winner[part] = (scores[:, None] * mask_probs[:, part]).max(0).indices  # the first best query
            painted[part] = mask_probs[:, part].gather(0, winner[None, part])[0] >= mask_threshold
        won = torch.bincount(winner, minlength=n)  # (n,) pixels won
        kept = torch.bincount(winner[painted], minlength=n)  # (n,) pixels won and painted
        original = (mask_probs >= mask_threshold).sum(1, dtype=torch.int32)  # (n,) the query's own mask area
        ids, segments = _segments(won, kept, original, scores, labels, overlap_mask_area_threshold, fuse)
        segmentation = torch.where(painted, ids.to(device)[winner], 0).to(torch.int32)
        results.append({"segmentation": segmentation.view(geometry.target), "segments_info": segments})
    return results


def _segments(won: Tensor, kept: Tensor, original: Tensor, scores: Tensor, labels: Tensor, overlap_threshold: float,
              fuse: set[int]) -> tuple[Tensor, list[dict]]:
    """Segment id of each competing query (0 = dropped) and ``segments_info``, going through queries in order."""
    won, kept, original = won.tolist(), kept.tolist(), original.tolist()
    scores, labels = scores.tolist(), labels.tolist()
    ids = [0] * len(scores)
    segments: list[dict] = []
    fused: dict[int, dict] = {}
    for k, label in enumerate(labels):
        if not (won[k] > 0 and original[k] > 0 and kept[k] > 0) or won[k] / original[k] < overlap_threshold:
            continue
        if label in fused:  # another query of a class to fuse: same segment
            ids[k] = fused[label]["id"]
            fused[label]["score"] = max(fused[label]["score"], round(scores[k], 6))
            continue
        segment = {"id": len(segments) + 1, "label_id": label, "was_fused": label in fuse, "score": round(scores[k], 6)}
        segments.append(segment)
        ids[k] = segment["id"]
        if label in fuse:
            fused[label] = segment
    return torch.tensor(ids, dtype=torch.int64), segments
