"""Semantic segmentation: one class id per pixel."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .geometry import CHUNK_VALUES, batch_geometry, chunks, mask_probabilities


def semantic_segmentation(outputs: Any, target_sizes: Any = None, chunk_values: int = CHUNK_VALUES) -> list[Tensor]:
    """Per image a (T_h, T_w) int64 map: argmax over classes k of sum_q softmax(class_q)[k] * sigmoid(mask_q).

    The "no object" class is left out of the softmax's result (not of its normalisation). Class scores are computed
    in chunks of pixels holding at most ``chunk_values`` values.
    """
    results = []
    for b, geometry in enumerate(batch_geometry(outputs, target_sizes)):
        class_probs = outputs.class_queries_logits[b].float().softmax(-1)[:, :-1]  # (Q, K)
        probs = mask_probabilities(outputs.masks_queries_logits[b], geometry, chunk_values)  # (Q, P)
        weights = class_probs.T.contiguous()  # (K, Q)
        classes = torch.empty(probs.shape[1], dtype=torch.int64, device=probs.device)  # (P,)
        for part in chunks(probs.shape[1], len(weights), chunk_values):
            classes[part] = (weights @ probs[:, part]).argmax(0)  # (K, P') -> (P',)
        results.append(classes.view(geometry.target))
    return results
