"""Semantic segmentation: one class id per pixel.

The reference scores every class at every pixel. The default path scores first only the classes that carry
probability mass (on a trained model's outputs, the few classes present), together with one bound on every other
class, and scores all classes only at the pixels where that bound does not rule them out; the result is the same.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .geometry import CHUNK_VALUES, batch_geometry, chunks, mask_probabilities

LIKELY_MASS = 0.05  # classes whose probabilities summed over queries reach this share of the largest sum go first


class SemanticSegmentationResult(dict):
    """One image's semantic result with its scores, as keys and attributes: ``segmentation`` (T_h, T_w) int64 and
    ``segmentation_scores`` (K, T_h, T_w) float32 (transformers' ``SemanticSegmentationPostProcessorOutput``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError as error:
            raise AttributeError(name) from error


def semantic_segmentation(outputs: Any, target_sizes: Any = None, chunk_values: int = CHUNK_VALUES,
                          fast: bool = True, return_scores: bool = False) -> list[Any]:
    """Per image a (T_h, T_w) int64 map: argmax over classes k of sum_q softmax(class_q)[k] * sigmoid(mask_q).

    The "no object" class is left out of the softmax's result (not of its normalisation). Scores are computed in
    chunks of pixels holding at most ``chunk_values`` values. ``fast=False`` scores every class everywhere
    (:func:`class_map`); ``fast=True`` (:func:`class_map_likely_first`) gives the same map. With ``return_scores``
    every class is scored and kept, and each image gives a :class:`SemanticSegmentationResult`.
    """
    results: list[Any] = []
    for b, geometry in enumerate(batch_geometry(outputs, target_sizes)):
        class_probs = outputs.class_queries_logits[b].float().softmax(-1)[:, :-1]  # (Q, K)
        probs = mask_probabilities(outputs.masks_queries_logits[b], geometry, chunk_values)  # (Q, P)
        if return_scores:
            scores = class_scores(class_probs, probs, chunk_values)  # (K, P)
            results.append(SemanticSegmentationResult(segmentation=scores.max(0).indices.view(geometry.target),
                                                      segmentation_scores=scores.view(-1, *geometry.target)))
            continue
        classes = class_map_likely_first(class_probs, probs, chunk_values) if fast else class_map(
            class_probs, probs, chunk_values)
        results.append(classes.view(geometry.target))
    return results


def class_scores(class_probs: Tensor, probs: Tensor, chunk_values: int = CHUNK_VALUES) -> Tensor:
    """(Q, K) class probabilities, (Q, P) mask probabilities -> (K, P) score of every class at every pixel."""
    weights = class_probs.T.contiguous()  # (K, Q)
    scores = torch.empty(len(weights), probs.shape[1], device=probs.device)  # (K, P)
    for part in chunks(probs.shape[1], len(weights), chunk_values):
        scores[:, part] = weights @ probs[:, part]
    return scores


def class_map(class_probs: Tensor, probs: Tensor, chunk_values: int = CHUNK_VALUES) -> Tensor:
    """The reference: (Q, K) class probabilities, (Q, P) mask probabilities -> (P,) best class per pixel."""
    weights = class_probs.T.contiguous()  # (K, Q)
    classes = torch.empty(probs.shape[1], dtype=torch.int64, device=probs.device)  # (P,)
    for part in chunks(probs.shape[1], len(weights), chunk_values):
        classes[part] = (weights @ probs[:, part]).max(0).indices  # (K, P') -> (P',), the first best class
    return classes


def class_map_likely_first(class_probs: Tensor, probs: Tensor, chunk_values: int = CHUNK_VALUES) -> Tensor:
    """:func:`class_map`, scoring the likely classes first.

    Every class k outside the likely set S scores at most U = sum_q max_{k' not in S} p_qk' * sigmoid(mask_q), one
    more row of the product. Where the best likely class beats U, it is the answer; elsewhere every class is scored.
    """
    mass = class_probs.sum(0)  # (K,)
    likely = torch.nonzero(mass >= LIKELY_MASS * mass.max()).reshape(-1)  # (S,)
    if 2 * len(likely) >= len(mass):  # most classes are likely: nothing to gain
        return class_map(class_probs, probs, chunk_values)
    others = class_probs.clone()
    others[:, likely] = 0.0
    weights = torch.cat([class_probs[:, likely], others.amax(1, keepdim=True)], 1).T.contiguous()  # (S + 1, Q)
    classes = torch.empty(probs.shape[1], dtype=torch.int64, device=probs.device)  # (P,)
    for part in chunks(probs.shape[1], len(weights), chunk_values):
        scores = weights @ probs[:, part]  # (S + 1, P')
        best, index = scores[:-1].max(0)  # (P',)
        classes[part] = likely[index]
        # A class outside S may reach the best score: score every class there (1e-6: float rounding of the sums)
        open_pixels = torch.nonzero(scores[-1] >= best * (1.0 - 1e-6)).reshape(-1)
        if len(open_pixels):
            classes[part][open_pixels] = class_map(class_probs, probs[:, part][:, open_pixels], chunk_values)
    return classes
