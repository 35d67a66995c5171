"""Semantic segmentation: one class id per pixel."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .geometry import CHUNK_VALUES, batch_geometry, chunks, mask_probabilities


class SemanticSegmentationResult(dict):
    """One image's semantic result with its scores, as keys and attributes: ``segmentation`` (T_h, T_w) int64 and
    ``segmentation_scores`` (K, T_h, T_w) float32 (transformers' ``SemanticSegmentationPostProcessorOutput``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error


def semantic_segmentation(outputs: Any, target_sizes: Any = None, chunk_values: int = CHUNK_VALUES,
                          return_scores: bool = False) -> list[Any]:
    """Per image a (T_h, T_w) int64 map: argmax over classes k of sum_q softmax(class_q)[k] * sigmoid(mask_q).

    The "no object" class is left out of the softmax's result (not of its normalisation). Class scores are computed
    in chunks of pixels holding at most ``chunk_values`` values; with ``return_scores`` they are kept, and each image
    gives a :class:`SemanticSegmentationResult`.
    """
    results: list[Any] = []
    for b, geometry in enumerate(batch_geometry(outputs, target_sizes)):
        class_probs = outputs.class_queries_logits[b].float().softmax(-1)[:, :-1]  # (Q, K)
        probs = mask_probabilities(outputs.masks_queries_logits[b], geometry, chunk_values)  # (Q, P)
        weights = class_probs.T.contiguous()  # (K, Q)
        classes = torch.empty(probs.shape[1], dtype=torch.int64, device=probs.device)  # (P,)
        scores = torch.empty(len(weights), probs.shape[1], device=probs.device) if return_scores else None  # (K, P)
        for part in chunks(probs.shape[1], len(weights), chunk_values):
            part_scores = weights @ probs[:, part]  # (K, P')
            classes[part] = part_scores.argmax(0)  # (P',)
            if scores is not None:
                scores[:, part] = part_scores
        segmentation = classes.view(geometry.target)
        if scores is None:
            results.append(segmentation)
        else:
            results.append(SemanticSegmentationResult(segmentation=segmentation,
                                                      segmentation_scores=scores.view(-1, *geometry.target)))
    return results
