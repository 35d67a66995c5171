"""Model outputs -> semantic maps, instances and panoptic segments (the original Mask2Former inference).

Every post-processor works on each image's masks as the original does: logits upsampled to the padded input size,
the image's padding cropped off, then resized to the target size (bilinear, ``align_corners=False``). The padded
size and each image's valid size come from the outputs (``padded_size``, ``image_sizes``); outputs without them
(e.g. transformers' own) are read as unpadded images of 4x the mask resolution. This module holds the decisions of
the three post-processors; the images' geometry in output blocks, the painting of blocks into images and the exact
evaluation of (block, query) pairs that they share are in :mod:`.output_blocks`.

Speed comes from :mod:`.interpolation`: decisions are first taken per output block from bounds on the logits, and
exact values are computed only on blocks that the bounds leave open (semantic, panoptic) or where a candidate
instance may be (instance), and there only for the (block, query) pairs that can change the answer. Results equal
the plain full-resolution algorithm up to float rounding.

On CPU, torch's plain reductions (``amax``, ``sum``) and arithmetic are many times faster than index-returning
reductions (``max``/``argmax`` over a middle dimension), ``torch.where``, boolean indexing and integer division;
the per-pixel code therefore finds "the first maximum" with ``amax`` and codes (:func:`.output_blocks._first_max`)
and decodes small integers in floating point.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from . import rle
from .interpolation import BLOCK as BLOCK_SIZE
from .interpolation import block_bounds, evaluate_blocks
from .output_blocks import _CHUNK_VALUES, _chunks, _exact_pairs, _first_max, _Frame, _frames, _pair_chunks, _rows

TOP_K_INSTANCES = 100  # (query, class) pairs scored per image, as the original's test_topk_per_image
_SCORE_MARGIN = 1e-5  # relative margin before a bound decides an argmax: covers float rounding of the sums
_ACTIVE_SPREAD = 3e-4  # queries moving class scores less than this over a block are bounded, not evaluated
_STRONG_FRACTION = 0.1  # semantic: contending classes scored per pixel reach this fraction of the best upper bound
_LIKELY_MASS = 0.05  # semantic: classes whose probabilities summed over queries reach this are evaluated first
_DENSE_PAIRS = 0.5  # above this fraction of (block, query) pairs evaluated, evaluate every query on every open block


# ----------------------------------------------------------------------------------------------------------- semantic


def semantic_segmentation(outputs: Any, target_sizes: Any = None) -> list[Tensor]:
    """Per image (T_h, T_w) int64 class map: argmax over classes of sum_q softmax(class_q)[:-1] * sigmoid(mask_q)."""
    results = []
    for b, frame in enumerate(_frames(outputs, target_sizes)):
        class_probs = outputs.class_queries_logits[b].float().softmax(-1)[:, :-1]  # (Q, K)
        logits = outputs.masks_queries_logits[b, :, : frame.low_h, : frame.low_w].float().contiguous()  # (Q, h, w)
        # Classes with little probability mass summed over queries are bounded by that mass everywhere: every
        # class outside ``likely`` scores at most ``unlikely``; only the likely ones are scored per block.
        mass = class_probs.sum(0)  # (K,)
        is_likely = mass >= torch.clamp(mass.max(), max=_LIKELY_MASS)  # at least the class with the most mass
        likely = torch.nonzero(is_likely).reshape(-1)  # (K',)
        unlikely = mass.masked_fill(is_likely, 0.0).amax()
        weights = class_probs[:, likely]  # (Q, K')
        low, high = (bound.sigmoid() for bound in block_bounds(logits, frame.rows, frame.cols))  # (Q, nb)
        score_low, score_high = weights.T @ low, weights.T @ high  # (K', nb)
        best_low, best = score_low.max(0)  # (nb,)
        # Contenders: likely classes whose upper bound reaches the best lower bound somewhere in the block.
        contender = score_high + _margin(score_high) >= best_low  # (K', nb), the best class included
        settled = (contender.sum(0) == 1) & (best_low > unlikely + _margin(unlikely))
        open_blocks = torch.nonzero(~settled).reshape(-1)
        tiles = None
        if len(open_blocks):
            scores = _SemanticScores(class_probs, likely, unlikely)
            tiles = _semantic_blocks(frame, logits, scores, open_blocks, low[:, open_blocks], high[:, open_blocks],
                                     contender[:, open_blocks], best[open_blocks], score_high[:, open_blocks])
        results.append(frame.paint(likely[best], open_blocks, tiles))
    return results


def _margin(score: Tensor) -> Tensor:
    """How far apart two summed scores must be for their order to survive float rounding."""
    return _SCORE_MARGIN * (1.0 + score.abs())


@dataclass
class _SemanticScores:
    """Class probabilities (Q, K), the likely classes (K',) among them, and the bound on every other class's score."""

    class_probs: Tensor
    likely: Tensor
    unlikely: Tensor

    @property
    def weights(self) -> Tensor:
        return self.class_probs[:, self.likely]  # (Q, K')


def _semantic_blocks(frame: _Frame, logits: Tensor, scores: _SemanticScores, blocks: Tensor, low: Tensor,
                     high: Tensor, contender: Tensor, best: Tensor, score_high: Tensor) -> Tensor:
    """Class ids (P, B*B) of the pixels of open blocks (P,).

    Each block scores per pixel only its strong contenders: the contending classes (``contender`` (K', P)) whose upper
    bound (``score_high``) reaches ``_STRONG_FRACTION`` of the block's highest, and the class ``best`` (P,) with the
    best lower bound; the weaker ones enter by their upper bound. Queries that move the strong scores by more than
    ``_ACTIVE_SPREAD`` over a block are evaluated exactly there, the others enter by their bounds ``low``/``high``
    (Q, P). Where most queries would be exact (outputs without structure), every query is evaluated instead.
    """
    count, num_queries, device = len(blocks), len(logits), blocks.device
    score_high = score_high.masked_fill(~contender, float("-inf"))  # (K', P)
    strong = contender & (score_high >= _STRONG_FRACTION * score_high.amax(0))
    strong[best, torch.arange(count, device=device)] = True
    weak_bound = score_high.masked_fill_(strong, float("-inf")).amax(0).clamp_(min=scores.unlikely)  # (P,)
    order = strong.T.to(torch.int8).sort(dim=1, descending=True, stable=True)  # strong classes first, by class
    slots = strong.sum(0)  # (P,)
    slot_class = order.indices[:, : int(slots.max())]  # (P, M) index into likely; slots past ``slots`` unused
    weights_t = scores.weights.T  # (K', Q)
    reach = weights_t[slot_class[:, 0]]  # (P, Q) largest weight of each query over the strong classes
    for m in range(1, slot_class.shape[1]):
        reach = torch.maximum(reach, weights_t[slot_class[:, m]] * (m < slots)[:, None])
    exact = reach * (high - low).T > _ACTIVE_SPREAD  # (P, Q)

    classes = torch.empty(count, BLOCK_SIZE**2, dtype=torch.int64, device=device)
    if int(exact.sum()) > _DENSE_PAIRS * exact.numel():  # most queries matter: evaluate all of them
        for chunk in _chunks(torch.arange(count, device=device), num_queries * BLOCK_SIZE**2):
            classes[chunk] = _semantic_dense(frame, logits, scores, blocks[chunk], contender[:, chunk])
        return classes
    for chunk in _chunks(torch.arange(count, device=device), slot_class.shape[1] * num_queries):
        used = torch.arange(slot_class.shape[1], device=device) < slots[chunk, None]  # (P', M)
        slot_weights = weights_t[slot_class[chunk]] * used[:, :, None]  # (P', M, Q), unused slots: 0
        classes[chunk], decided = _semantic_pairs(frame, logits, scores, blocks[chunk], low[:, chunk], high[:, chunk],
                                                  exact[chunk], slot_class[chunk], slot_weights, used,
                                                  weak_bound[chunk])
        pending = ~decided if not frame.ragged else ~decided & frame.exists(blocks[chunk])  # (P', B*B)
        local = torch.nonzero(pending.any(1)).reshape(-1)
        if len(local):  # score those blocks again, exactly with every query
            again = chunk[local]
            exact_classes = _semantic_dense(frame, logits, scores, blocks[again], contender[:, again])
            classes[again] = torch.where(pending[local], exact_classes, classes[again])
    return classes


def _semantic_pairs(frame: _Frame, logits: Tensor, scores: _SemanticScores, blocks: Tensor, low: Tensor, high: Tensor,
                    exact: Tensor, slot_class: Tensor, slot_weights: Tensor, used: Tensor, weak_bound: Tensor
                    ) -> tuple[Tensor, Tensor]:
    """Classes (P, B*B) of the strong slots and whether they are certain, from the ``exact`` (P, Q) queries evaluated
    per pixel and the others' bounds. Slots: ``slot_class`` (P, M) into likely, ``slot_weights`` (P, M, Q) of each
    query, ``used`` (P, M); ``weak_bound`` (P,) bounds every other class."""
    count, slots, device = len(blocks), slot_class.shape[1], blocks.device
    base_low = torch.bmm(slot_weights, low.T.masked_fill(exact, 0.0)[:, :, None])[:, :, 0]  # (P, M) bounded queries
    gap = (torch.bmm(slot_weights, high.T.masked_fill(exact, 0.0)[:, :, None])[:, :, 0] - base_low).amax(1)  # (P,)
    base_low.masked_fill_(~used, float("-inf"))  # unused slots never win
    # Slot codes: the first slot reaching the maximum (the lowest class, as slots go by class) has the largest code.
    num_likely = len(scores.likely)
    codes = ((slots - torch.arange(slots, device=device)) * num_likely + slot_class).float()  # (P, M)
    reach = gap + _SCORE_MARGIN  # (P,) a rival within this of the best may beat it (with the relative margin below)
    weak_reach = weak_bound * (1.0 + _SCORE_MARGIN) + _SCORE_MARGIN  # (P,) the best must exceed this
    count_used = used.sum(1)  # (P,)

    best_class = torch.empty(count, BLOCK_SIZE**2, device=device)  # index into likely, as float
    decided = torch.empty(count, BLOCK_SIZE**2, dtype=torch.bool, device=device)
    for rows, queries, probs in _exact_pairs(frame, logits, blocks, exact):  # blocks with c exact queries each
        m = int(count_used[rows].max())
        if queries.shape[1]:
            lower = torch.bmm(slot_weights[rows, :m].gather(2, queries[:, None, :].expand(-1, m, -1)), probs)
            lower.add_(base_low[rows, :m, None])  # (P_c, M_c, B*B)
        else:
            lower = base_low[rows, :m, None].expand(-1, -1, BLOCK_SIZE**2)
        value, code = _first_max(lower, codes[rows, :m, None])  # (P_c, B*B)
        best_class[rows] = code - num_likely * torch.floor(code / num_likely)  # float: exact, faster than %
        # Decided: the best slot is the only one within reach of the value, and it beats the weak classes' bound.
        cutoff = value * (1.0 - _SCORE_MARGIN) - reach[rows, None]
        alone = (lower >= cutoff[:, None, :]).sum(1) == 1
        decided[rows] = alone & (value > weak_reach[rows, None])
    return scores.likely[best_class.long()], decided


def _semantic_dense(frame: _Frame, logits: Tensor, scores: _SemanticScores, blocks: Tensor, contender: Tensor
                    ) -> Tensor:
    """Class ids (P, B*B) of the blocks (P,) with every query evaluated: the best of the ``contender`` (K', P) likely
    classes, or of every class where one outside ``likely`` may win."""
    probs = evaluate_blocks(logits, frame.rows, frame.cols, blocks).sigmoid().flatten(2)  # (P, Q, B*B)
    weights_t = scores.weights.T  # (K', Q)
    class_scores = torch.bmm(weights_t.expand(len(blocks), -1, -1), probs)  # (P, K', B*B)
    class_scores.add_(torch.where(contender.T, 0.0, float("-inf"))[:, :, None])  # non-contenders never win
    codes = (len(weights_t) - torch.arange(len(weights_t), device=blocks.device)).float()  # lowest class: largest
    value, code = _first_max(class_scores, codes[None, :, None])
    classes = scores.likely[(len(weights_t) - code).long()]
    beaten = value <= scores.unlikely + _margin(scores.unlikely)  # a class outside ``likely`` may win: score all
    if bool(beaten.any()):
        rows = torch.nonzero(beaten.any(1)).reshape(-1)
        every = (scores.class_probs.T @ probs[rows]).argmax(1)  # (P', B*B)
        classes[rows] = torch.where(beaten[rows], every, classes[rows])
    return classes


# ----------------------------------------------------------------------------------------------------------- panoptic


def panoptic_segmentation(
    outputs: Any,
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    overlap_mask_area_threshold: float = 0.8,
    label_ids_to_fuse: set[int] | None = None,
    target_sizes: Any = None,
) -> list[dict]:
    """Per image ``{"segmentation": (T_h, T_w) int32 ids, 0 = no segment, "segments_info": [...]}``."""
    fuse = set() if label_ids_to_fuse is None else {int(label) for label in label_ids_to_fuse}
    results = []
    for b, frame in enumerate(_frames(outputs, target_sizes)):
        probs = outputs.class_queries_logits[b].float().softmax(-1)  # (Q, K + 1)
        scores, labels = probs.max(-1)
        keep = (labels != probs.shape[-1] - 1) & (scores > threshold)
        if not bool(keep.any()):
            results.append({"segmentation": torch.zeros(frame.size, dtype=torch.int32, device=probs.device),
                            "segments_info": []})
            continue
        scores, labels = scores[keep], labels[keep]  # (n,)
        logits = outputs.masks_queries_logits[b, keep, : frame.low_h, : frame.low_w].float().contiguous()  # (n, h, w)
        n = len(scores)

        # Per block: does one query win everywhere, and is each query surely above / below mask_threshold?
        low, high = (bound.sigmoid() for bound in block_bounds(logits, frame.rows, frame.cols))  # (n, nb)
        best = (scores[:, None] * low).argmax(0)  # (nb,)
        rival = (scores[:, None] * high).scatter(0, best[None], float("-inf")).max(0).values
        winner_low, winner_high = low.gather(0, best[None])[0], high.gather(0, best[None])[0]
        painted = winner_low >= mask_threshold
        above = low >= mask_threshold  # (n, nb)
        unsure = (high >= mask_threshold) & ~above
        settled = (scores[best] * winner_low > rival) & (painted | (winner_high < mask_threshold)) & ~unsure.any(0)

        pixels = frame.block_pixels().to(torch.float64)  # (nb,)
        won = torch.bincount(best[settled], weights=pixels[settled], minlength=n)  # (n,) pixels won
        kept = torch.bincount(best[settled & painted], weights=pixels[settled & painted], minlength=n)
        original = above.to(torch.float64) @ pixels  # (n,) pixels with prob >= mask_threshold, unsure ones below
        open_blocks = torch.nonzero(~settled).reshape(-1)
        winner = on = None
        if len(open_blocks):
            counts, winner, on = _panoptic_blocks(frame, logits, scores, open_blocks, low[:, open_blocks],
                                                  high[:, open_blocks], unsure[:, open_blocks], mask_threshold)
            won, kept, original = won + counts[0], kept + counts[1], original + counts[2]

        ids, segments = _panoptic_segments(won, kept, original, scores, labels, overlap_mask_area_threshold, fuse)
        ids = ids.to(device=low.device, dtype=torch.int32)
        block_ids = torch.where(settled & painted, ids[best], 0)  # (nb,)
        tiles = None if winner is None or on is None else ids[winner] * on  # (P, B*B)
        results.append({"segmentation": frame.paint(block_ids, open_blocks, tiles), "segments_info": segments})
    return results


def _panoptic_blocks(frame: _Frame, logits: Tensor, scores: Tensor, blocks: Tensor, low: Tensor, high: Tensor,
                     unsure: Tensor, mask_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Exact panoptic decisions on open blocks (P,), evaluating per block only the queries that matter there.

    Those are the queries whose probability crosses ``mask_threshold`` in the block (``unsure`` (n, P)) and those
    that may win a pixel: first the query with the best lower bound of score x probability, then any other whose
    upper bound reaches the smallest per-pixel maximum found so far (blocks with such queries are evaluated again
    with them). Where most queries matter (outputs without structure), every query is evaluated instead. Returns
    the (3, n) counts to add (pixels won, pixels kept, unsure pixels above threshold) and, per pixel (P, B*B), the
    winning query and whether it is painted.
    """
    n, count, device = len(scores), len(blocks), blocks.device
    weighted_low, weighted_high = scores[:, None] * low, scores[:, None] * high  # (n, P)
    best_low, best = weighted_low.max(0)  # (P,)
    contender = (weighted_high >= best_low).T  # (P, n)
    exists = frame.exists(blocks) if frame.ragged else None  # (P, B*B)
    counts = torch.zeros(3, n, dtype=torch.float64, device=device)
    codes = torch.empty(count, BLOCK_SIZE**2, device=device)
    crossing = unsure.T  # (P, n)
    if int((contender | crossing).sum()) > _DENSE_PAIRS * contender.numel():  # most queries matter everywhere
        every = torch.ones_like(contender)
        for chunk in _chunks(torch.arange(count, device=device), n * BLOCK_SIZE**2):
            _, codes[chunk] = _panoptic_winners(frame, logits, scores, blocks[chunk], every[chunk], every[chunk],
                                                mask_threshold, _rows(exists, chunk), crossing[chunk], counts[2])
    else:
        first = crossing.clone()  # (P, n)
        first[torch.arange(count, device=device), best] = True
        for chunk in _pair_chunks(first.sum(1)):
            largest, codes[chunk] = _panoptic_winners(frame, logits, scores, blocks[chunk], first[chunk],
                                                      contender[chunk], mask_threshold, _rows(exists, chunk),
                                                      crossing[chunk], counts[2])
            if exists is not None:
                largest.masked_fill_(~exists[chunk], float("inf"))
            # Queries left out may still win a pixel if their upper bound reaches the block's smallest maximum.
            late = contender[chunk] & ~first[chunk] & (weighted_high.T[chunk] >= largest.amin(1, keepdim=True))
            local = torch.nonzero(late.any(1)).reshape(-1)
            if len(local):
                again = chunk[local]
                _, codes[again] = _panoptic_winners(frame, logits, scores, blocks[again], first[again] | late[local],
                                                    contender[again], mask_threshold, _rows(exists, again))
    # Decode in floating point (exact for these small integers): integer division is slow on CPU.
    half = torch.floor(codes * 0.5)
    on = codes - 2.0 * half  # (P, B*B) 1.0 where the winner is painted
    winner = n - half  # (P, B*B) query
    winner_index = winner.long()
    if exists is not None:  # pixels past the image edge go to a spare bin
        winner = winner + (n - winner) * (~exists).float()
    # one count of (winner, painted) pairs: bin 2q + 1 holds query q's painted pixels, 2q its unpainted ones
    pairs = torch.bincount((winner * 2.0 + on).long().reshape(-1), minlength=2 * n + 2).view(n + 1, 2)[:n]
    counts[0] += pairs.sum(1)
    counts[1] += pairs[:, 1]
    return counts, winner_index, on.bool()


def _panoptic_winners(frame: _Frame, logits: Tensor, scores: Tensor, blocks: Tensor, needed: Tensor,
                      contender: Tensor, mask_threshold: float, exists: Tensor | None, crossing: Tensor | None = None,
                      above_count: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """Evaluate the ``needed`` (P, n) queries on the blocks (P,): per pixel (P, B*B) the largest score x probability
    among the ``contender`` queries and the code 2 * (n - query) + painted of the first query reaching it (the one a
    plain argmax picks). With ``crossing`` (P, n), adds to ``above_count`` (n,) the pixels above ``mask_threshold`` of
    each crossing pair."""
    n, device = len(scores), blocks.device
    largest = torch.empty(len(blocks), BLOCK_SIZE**2, device=device)
    codes = torch.empty(len(blocks), BLOCK_SIZE**2, device=device)
    for rows, queries, probs in _exact_pairs(frame, logits, blocks, needed):  # probs (P_c, c, B*B)
        above = probs >= mask_threshold  # (P_c, c, B*B)
        if crossing is not None and above_count is not None:
            inside = (above if exists is None else above & exists[rows, None, :]).sum(2)  # (P_c, c)
            above_count.index_add_(0, queries.reshape(-1), (inside * crossing[rows].gather(1, queries)).reshape(-1)
                                   .to(above_count.dtype))
        pair_codes = torch.add(above, (2.0 * (n - queries)).float()[:, :, None])  # the lowest query: the largest
        if queries.shape[1] == 1:  # the block's only query is its best one, a contender
            largest[rows], codes[rows] = probs[:, 0] * scores[queries], pair_codes[:, 0]
            continue
        # Non-contenders get -2, below any contender (which lie above every non-contender anyway).
        competing = contender[rows].gather(1, queries).float()  # (P_c, c)
        weighted = torch.addcmul((competing - 1.0)[:, :, None] * 2.0, probs, (scores[queries] * competing)[:, :, None])
        largest[rows], codes[rows] = _first_max(weighted, pair_codes)
    return largest, codes


def _panoptic_segments(won: Tensor, kept: Tensor, original: Tensor, scores: Tensor, labels: Tensor,
                       overlap_threshold: float, fuse: set[int]) -> tuple[Tensor, list[dict]]:
    """Segment id per kept query (0 = dropped) and ``segments_info``, in query order: scalar work only."""
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


# ----------------------------------------------------------------------------------------------------------- instance


def instance_segmentation(
    outputs: Any,
    threshold: float = 0.5,
    mask_threshold: float = 0.5,
    overlap_mask_area_threshold: float = 0.8,
    target_sizes: Any = None,
    return_coco_annotation: bool = False,
    return_binary_maps: bool = False,
) -> list[dict]:
    """Per image ``{"segmentation": ..., "segments_info": [...]}``; see ``Mask2FormerImageProcessor``."""
    if return_coco_annotation and return_binary_maps:
        raise ValueError("Choose one of return_coco_annotation and return_binary_maps, not both.")
    results = []
    for b, frame in enumerate(_frames(outputs, target_sizes)):
        class_probs = outputs.class_queries_logits[b].float().softmax(-1)[:, :-1]  # (Q, K)
        num_classes = class_probs.shape[1]
        top_scores, flat = class_probs.reshape(-1).topk(min(TOP_K_INSTANCES, class_probs.numel()))  # best first
        # final score = class score * mean mask probability <= class score: the others cannot reach threshold
        candidates = torch.nonzero(top_scores >= threshold).reshape(-1)
        chosen = flat[candidates]
        queries, labels = torch.div(chosen, num_classes, rounding_mode="floor"), chosen % num_classes
        logits = outputs.masks_queries_logits[b, queries, : frame.low_h, : frame.low_w].float()  # (m, h, w)
        tiles = _InstanceTiles.build(frame, logits, mask_threshold)
        final = top_scores[candidates] * tiles.prob_sum / (tiles.area + 1e-6)  # (m,)
        keep = torch.nonzero((tiles.area > 0) & (final >= threshold)).reshape(-1)
        keep = keep[final[keep].argsort(descending=True, stable=True)]  # best first
        rank = torch.full((len(queries),), len(keep), dtype=torch.int64, device=final.device)  # len(keep): dropped
        rank[keep] = torch.arange(len(keep), device=final.device)
        info = [{"id": i, "label_id": int(labels[k]), "was_fused": False, "score": round(float(final[k]), 6)}
                for i, k in enumerate(keep.tolist())]
        if return_coco_annotation or return_binary_maps:
            if return_coco_annotation:  # column-major masks: RLE runs straight from their non-zero positions
                maps = tiles.paint_masks(frame, rank, len(keep), transposed=True).cpu().numpy()  # (N, T_w, T_h)
                segmentation: Any = [rle.from_positions(np.flatnonzero(mask), *frame.size) for mask in maps]
            else:
                segmentation = tiles.paint_masks(frame, rank, len(keep))  # (N, T_h, T_w)
        else:
            segmentation, info = tiles.paint_map(frame, rank, tiles.area[keep], info, overlap_mask_area_threshold)
        results.append({"segmentation": segmentation, "segments_info": info})
    return results


@dataclass
class _InstanceTiles:
    """Binary masks (probability > mask_threshold) of candidate queries, kept as (B x B) tiles where not empty.

    owner: (N,) candidate of each tile; block: (N,) its block; mask: (N, B*B) bool; area, prob_sum: (m,) mask area
    and the sum of probabilities over the mask of each candidate.
    """

    owner: Tensor
    block: Tensor
    mask: Tensor
    area: Tensor
    prob_sum: Tensor

    @classmethod
    def build(cls, frame: _Frame, logits: Tensor, mask_threshold: float) -> "_InstanceTiles":
        """Evaluate each candidate (m, h, w) only on the blocks where its upper bound passes the threshold."""
        m, device = len(logits), logits.device
        area, prob_sum = torch.zeros(m, device=device), torch.zeros(m, device=device)
        if m == 0:
            empty = torch.zeros(0, dtype=torch.int64, device=device)
            return cls(empty, empty, torch.zeros(0, BLOCK_SIZE**2, dtype=torch.bool, device=device), area, prob_sum)
        _, high = block_bounds(logits, frame.rows, frame.cols)  # (m, nb)
        owners, blocks = torch.nonzero(high.sigmoid() > mask_threshold, as_tuple=True)  # (candidate, block) pairs
        parts = []
        step = max(1, _CHUNK_VALUES // BLOCK_SIZE**2)
        for begin in range(0, len(blocks), step):
            owner, block = owners[begin : begin + step], blocks[begin : begin + step]
            probs = evaluate_blocks(logits, frame.rows, frame.cols, block, owner).sigmoid().flatten(1)  # (P, B*B)
            mask = (probs > mask_threshold) & frame.exists(block)
            area.index_add_(0, owner, mask.sum(1).to(area.dtype))
            prob_sum.index_add_(0, owner, (probs * mask).sum(1))
            nonempty = mask.any(1)
            parts.append((owner[nonempty], block[nonempty], mask[nonempty]))
        if not parts:
            return cls(owners, blocks, torch.zeros(0, BLOCK_SIZE**2, dtype=torch.bool, device=device), area, prob_sum)
        owner, block, mask = (torch.cat(column) for column in zip(*parts))
        return cls(owner, block, mask, area, prob_sum)

    def paint_masks(self, frame: _Frame, rank: Tensor, count: int, transposed: bool = False) -> Tensor:
        """(count, T_h, T_w) bool (or transposed): the full mask of each kept instance (``rank`` < count)."""
        image = rank[self.owner]  # (N,) the instance each tile belongs to; ``count`` or more: dropped
        kept = torch.nonzero(image < count).reshape(-1)
        return frame.scatter(count, image[kept], self.block[kept], self.mask[kept], transposed)

    def paint_map(self, frame: _Frame, rank: Tensor, area: Tensor, info: list[dict],
                  overlap_threshold: float) -> tuple[Tensor, list[dict]]:
        """(T_h, T_w) int32 map: each pixel goes to the best-ranked kept instance covering it (-1 none). Instances
        left with less than ``overlap_threshold`` of their mask are dropped and the map is painted without them."""
        count, device = len(info), self.mask.device
        ranks = rank[self.owner]  # (N,)
        # float32 holds these small integers exactly, and its scatter-min is ~10x faster on CPU than an integer one's
        rank_values = ranks.to(torch.float32)

        def paint(alive: Tensor) -> Tensor:  # alive: (count + 1,) bool, the last entry (dropped) False
            owner = torch.full((frame.num_blocks, BLOCK_SIZE**2), float(count), device=device)
            value = torch.where(self.mask & alive[ranks][:, None], rank_values[:, None], float(count))  # (N, B*B)
            return owner.scatter_reduce_(0, self.block[:, None].expand_as(value), value, "amin").long()

        alive = torch.ones(count + 1, dtype=torch.bool, device=device)
        alive[count] = False
        owner = paint(alive)
        # the tiles' masks leave out the pixels of edge blocks beyond the image, so those stay ``count`` (none)
        visible = torch.bincount(owner.reshape(-1), minlength=count + 1)[:count].to(area.dtype)
        alive[:count] = visible >= overlap_threshold * area
        if not bool(alive[:count].all()):
            owner = paint(alive)
        survivors = torch.nonzero(alive[:count]).reshape(-1)
        new_id = torch.full((count + 1,), -1, dtype=torch.int32, device=device)
        new_id[survivors] = torch.arange(len(survivors), dtype=torch.int32, device=device)
        segments = [dict(info[i], id=new) for new, i in enumerate(survivors.tolist())]
        return frame.untile(new_id[owner]), segments
