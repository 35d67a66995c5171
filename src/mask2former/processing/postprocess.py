"""Model outputs -> semantic maps, instances and panoptic segments (the original Mask2Former inference).

Every post-processor works on each image's masks as the original does: logits upsampled to the padded input size,
the image's padding cropped off, then resized to the target size (bilinear, ``align_corners=False``). The padded
size and each image's valid size come from the outputs (``padded_size``, ``image_sizes``); outputs without them
(e.g. transformers' own) are read as unpadded images of 4x the mask resolution.

Speed comes from :mod:`.interpolation`: decisions are first taken per output block from bounds on the logits, and
exact values are computed only on blocks that the bounds leave open (semantic, panoptic) or where a candidate
instance may be (instance). Results equal the plain full-resolution algorithm up to float rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
from torch import Tensor

from . import rle
from .interpolation import BLOCK as BLOCK_SIZE
from .interpolation import AxisBlocks, axis_blocks, axis_operator, block_bounds, evaluate_blocks

TOP_K_INSTANCES = 100  # (query, class) pairs scored per image, as the original's test_topk_per_image
_CHUNK_VALUES = 1 << 23  # output values evaluated at once (blocks x queries x pixels per block)
_SCORE_MARGIN = 1e-5  # relative margin before a bound decides an argmax: covers float rounding of the sums
_ACTIVE_SPREAD = 1e-3  # queries moving class scores less than this over a block are bounded, not evaluated
_LIKELY_MASS = 0.05  # semantic: classes whose probabilities summed over queries reach this are evaluated first
_SEMANTIC_CHUNK = 64  # open blocks per step: small steps keep the sets of active queries small
_DENSE_PAIRS = 0.5  # panoptic: above this fraction of (query, block) pairs, evaluate all queries on all blocks


@dataclass
class _Frame:
    """One image's geometry: the output size and how each axis maps onto the low-resolution masks."""

    rows: AxisBlocks
    cols: AxisBlocks
    low_h: int  # low-resolution rows / columns that any output pixel reads
    low_w: int

    @property
    def size(self) -> tuple[int, int]:
        return self.rows.size, self.cols.size

    @property
    def num_blocks(self) -> int:
        return self.rows.count * self.cols.count

    def block_pixels(self) -> Tensor:
        """(nb,) number of output pixels in each block."""
        return (self.rows.out_len[:, None] * self.cols.out_len[None, :]).reshape(-1)

    def exists(self, blocks: Tensor) -> Tensor:
        """(P, B*B) bool: which pixels of the given blocks lie inside the output (edge blocks are partial)."""
        y_ok = self.rows.inside(torch.div(blocks, self.cols.count, rounding_mode="floor"))
        x_ok = self.cols.inside(blocks % self.cols.count)
        return (y_ok[:, :, None] & x_ok[:, None, :]).flatten(1)

    def untile(self, tiles: Tensor, transposed: bool = False) -> Tensor:
        """(..., nb, B*B) values laid out block by block -> (..., T_h, T_w) image, or (..., T_w, T_h)."""
        lead, dims = tiles.shape[:-2], len(tiles.shape) - 2
        grid = tiles.reshape(*lead, self.rows.count, self.cols.count, BLOCK_SIZE, BLOCK_SIZE)
        order = (1, 3, 0, 2) if transposed else (0, 2, 1, 3)  # (by, bx, y, x) -> (bx, x, by, y) or (by, y, bx, x)
        grid = grid.permute(*range(dims), *(dims + axis for axis in order))
        image = grid.reshape(*lead, grid.shape[-4] * BLOCK_SIZE, grid.shape[-2] * BLOCK_SIZE)
        size = (self.cols.size, self.rows.size) if transposed else (self.rows.size, self.cols.size)
        return image[..., : size[0], : size[1]].contiguous()


def _frames(outputs: Any, target_sizes: Any) -> list[_Frame]:
    masks = outputs.masks_queries_logits
    batch, _, low_h, low_w = masks.shape
    padded = getattr(outputs, "padded_size", None)
    padded = (4 * low_h, 4 * low_w) if padded is None else (int(padded[0]), int(padded[1]))
    image_sizes = getattr(outputs, "image_sizes", None)
    valid = [padded] * batch if image_sizes is None else [tuple(int(v) for v in s) for s in image_sizes.tolist()]
    if len(valid) != batch:
        raise ValueError(f"outputs.image_sizes has {len(valid)} entries for a batch of {batch}.")
    if target_sizes is None:
        targets = valid
    else:
        listed = target_sizes.tolist() if isinstance(target_sizes, Tensor) else list(target_sizes)
        if len(listed) != batch:
            raise ValueError(
                f"Got {len(listed)} target_sizes for a batch of {batch} images; pass one (height, width) per image."
            )
        targets = [(int(size[0]), int(size[1])) for size in listed]
    frames: dict[tuple[int, int, int, int], _Frame] = {}  # images of one size share their geometry
    for (valid_h, valid_w), (target_h, target_w) in zip(valid, targets):
        if not (0 < valid_h <= padded[0] and 0 < valid_w <= padded[1]) or min(target_h, target_w) <= 0:
            raise ValueError(f"Bad sizes: image {valid_h}x{valid_w}, padded {padded}, target {target_h}x{target_w}.")
        if (valid_h, valid_w, target_h, target_w) not in frames:
            rows = axis_blocks(axis_operator(low_h, padded[0], valid_h, target_h), masks.device)
            cols = axis_blocks(axis_operator(low_w, padded[1], valid_w, target_w), masks.device)
            frame = _Frame(rows, cols, int(rows.low_last.max()) + 1, int(cols.low_last.max()) + 1)
            frames[valid_h, valid_w, target_h, target_w] = frame
    return [frames[size + target] for size, target in zip(valid, targets)]


def _chunks(blocks: Tensor, values_per_block: int, most: int | None = None) -> Iterator[Tensor]:
    step = max(1, min(_CHUNK_VALUES // max(values_per_block, 1), most or len(blocks)))
    for begin in range(0, len(blocks), step):
        yield blocks[begin : begin + step]


# ----------------------------------------------------------------------------------------------------------- semantic


def semantic_segmentation(outputs: Any, target_sizes: Any = None) -> list[Tensor]:
    """Per image (T_h, T_w) int64 class map: argmax over classes of sum_q softmax(class_q)[:-1] * sigmoid(mask_q)."""
    results = []
    for b, frame in enumerate(_frames(outputs, target_sizes)):
        class_probs = outputs.class_queries_logits[b].float().softmax(-1)[:, :-1]  # (Q, K)
        logits = outputs.masks_queries_logits[b, :, : frame.low_h, : frame.low_w].float()  # (Q, h, w)
        low, high = (bound.sigmoid() for bound in block_bounds(logits, frame.rows, frame.cols))  # (Q, nb)
        score_low, score_high = class_probs.T @ low, class_probs.T @ high  # (K, nb)
        best_low, best = score_low.max(0)  # (nb,)
        rival = score_high.scatter_(0, best[None], float("-inf")).amax(0)
        settled = best_low > rival + _SCORE_MARGIN * (1.0 + rival.abs())
        tiles = best[:, None].repeat(1, BLOCK_SIZE**2)  # (nb, B*B) class of every pixel, block by block
        # Open blocks: evaluate the classes with real probability mass; every other class c scores at most
        # mass[c] = sum_q p(c | q), which is checked against each pixel's winner below.
        mass = class_probs.sum(0)  # (K,)
        is_likely = mass >= torch.clamp(mass.max(), max=_LIKELY_MASS)  # at least the class with the most mass
        likely = torch.nonzero(is_likely).reshape(-1)
        unlikely_mass = mass.masked_fill(is_likely, 0.0).amax()
        reach = class_probs[:, likely].amax(1)[:, None]  # (Q, 1) how much a query moves those classes' scores
        open_blocks = torch.nonzero(~settled).reshape(-1)
        for chunk in _chunks(open_blocks, max(logits.shape[0], len(likely)) * BLOCK_SIZE**2, _SEMANTIC_CHUNK):
            tiles[chunk] = _semantic_blocks(frame, logits, class_probs, likely, unlikely_mass, chunk, low[:, chunk],
                                            high[:, chunk], reach)
        results.append(frame.untile(tiles))
    return results


def _semantic_blocks(frame: _Frame, logits: Tensor, class_probs: Tensor, likely: Tensor, unlikely_mass: Tensor,
                     blocks: Tensor, low: Tensor, high: Tensor, reach: Tensor) -> Tensor:
    """Class ids (P, B*B) of the pixels of open blocks (P,).

    Among the ``likely`` classes, queries whose probability varies little over these blocks enter as their bounds
    ``low``/``high`` (Q, P); the other queries are evaluated exactly. A pixel is decided when its best likely class
    beats the upper bounds of all other classes; the rest get every query and every class exactly.
    """
    active = (reach * (high - low)).amax(1) > _ACTIVE_SPREAD  # (Q,)
    exact_q, bounded_q = torch.nonzero(active).reshape(-1), torch.nonzero(~active).reshape(-1)
    probs = evaluate_blocks(logits, frame.rows, frame.cols, blocks, subset=exact_q).sigmoid().flatten(2)  # (P, A, BB)
    weights = class_probs[:, likely]  # (Q, K')
    exact = weights[exact_q].T @ probs  # (P, K', B*B)
    best_low, best = (exact + (weights[bounded_q].T @ low[bounded_q]).T[:, :, None]).max(1)  # (P, B*B)
    rival = (exact + (weights[bounded_q].T @ high[bounded_q]).T[:, :, None]).scatter_(1, best[:, None], -1.0)
    rival = torch.maximum(rival.amax(1), unlikely_mass)
    decided = best_low > rival + _SCORE_MARGIN * (1.0 + rival.abs())
    classes = likely[best]
    pending = ~decided & frame.exists(blocks)  # (P, B*B)
    if bool(pending.any()):
        again = torch.nonzero(pending.any(1)).reshape(-1)
        probs = evaluate_blocks(logits, frame.rows, frame.cols, blocks[again]).sigmoid().flatten(2)  # (P', Q, B*B)
        full = (class_probs.T @ probs).argmax(1)  # (P', B*B) over every class
        classes[again] = torch.where(pending[again], full, classes[again])
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
        logits = outputs.masks_queries_logits[b, keep, : frame.low_h, : frame.low_w].float()  # (n, h, w)
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
        open_winner, open_painted = [], []  # (P, B*B) per chunk
        for chunk in _chunks(open_blocks, n * BLOCK_SIZE**2):
            counts, winner, on = _panoptic_blocks(frame, logits, scores, chunk, low[:, chunk], high[:, chunk],
                                                  unsure[:, chunk], mask_threshold)
            won, kept, original = won + counts[0], kept + counts[1], original + counts[2]
            open_winner.append(winner)
            open_painted.append(on)

        ids, segments = _panoptic_segments(won, kept, original, scores, labels, overlap_mask_area_threshold, fuse)
        ids = ids.to(low.device)
        tiles = torch.where(settled & painted, ids[best], 0)[:, None].repeat(1, BLOCK_SIZE**2)  # (nb, B*B)
        if open_winner:
            tiles[open_blocks] = torch.where(torch.cat(open_painted), ids[torch.cat(open_winner)], 0)
        results.append({"segmentation": frame.untile(tiles.to(torch.int32)), "segments_info": segments})
    return results


def _panoptic_blocks(frame: _Frame, logits: Tensor, scores: Tensor, blocks: Tensor, low: Tensor, high: Tensor,
                     unsure: Tensor, mask_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """Exact panoptic decisions on open blocks (P,), evaluating per block only the queries that matter there.

    Those are the queries that may win a pixel (upper bound of score x probability reaching the block's best lower
    bound) and those whose probability crosses ``mask_threshold`` in the block (``unsure`` (n, P)). Returns the
    (3, n) counts to add (pixels won, pixels kept, unsure pixels above threshold) and, per pixel (P, B*B), the
    winning query and whether it is painted.
    """
    n = len(scores)
    weighted_low, weighted_high = scores[:, None] * low, scores[:, None] * high  # (n, P)
    contender = weighted_high >= weighted_low.amax(0)[None]  # (n, P)
    needed = contender | unsure
    exists = frame.exists(blocks)  # (P, B*B)
    if int(needed.sum()) > _DENSE_PAIRS * needed.numel():  # most queries matter everywhere: evaluate them all
        return _panoptic_blocks_dense(frame, logits, scores, blocks, unsure, exists, mask_threshold)
    block, query = torch.nonzero(needed.T, as_tuple=True)  # pairs, grouped by block, queries ascending
    probs = evaluate_blocks(logits, frame.rows, frame.cols, blocks[block], query).sigmoid().flatten(1)  # (N, B*B)

    counts = torch.zeros(3, n, dtype=torch.float64, device=probs.device)
    above = ((probs >= mask_threshold) & exists[block]).sum(1) * unsure[query, block]  # (N,)
    counts[2].index_add_(0, query, above.to(torch.float64))

    # Per pixel: the largest score x probability among the block's contenders, then the lowest query reaching it
    # (the first maximum, as a plain argmax over all queries would pick), then that query's probability test.
    where = block[:, None].expand_as(probs)  # (N, B*B) the block of each pair's pixels
    weighted = torch.where(contender[query, block][:, None], probs * scores[query][:, None], -1.0)  # (N, B*B)
    best = probs.new_full((len(blocks), probs.shape[1]), -1.0).scatter_reduce_(0, where, weighted, "amax")
    reaching = torch.where(weighted == best[block], query[:, None], n)
    winner = torch.full_like(best, n, dtype=torch.int64).scatter_reduce_(0, where, reaching, "amin")  # (P, B*B)
    local = torch.arange(len(blocks), device=block.device)[:, None]
    pair = torch.searchsorted(block * (n + 1) + query, local * (n + 1) + winner)  # (P, B*B) pair of each winner
    on = probs.take(pair * probs.shape[1] + torch.arange(probs.shape[1], device=pair.device)) >= mask_threshold
    counts[0] += torch.bincount(winner[exists], minlength=n)
    counts[1] += torch.bincount(winner[exists & on], minlength=n)
    return counts, winner, on


def _panoptic_blocks_dense(frame: _Frame, logits: Tensor, scores: Tensor, blocks: Tensor, unsure: Tensor,
                           exists: Tensor, mask_threshold: float) -> tuple[Tensor, Tensor, Tensor]:
    """:func:`_panoptic_blocks` evaluating every query on every open block, for outputs where bounds settle little."""
    n = len(scores)
    probs = evaluate_blocks(logits, frame.rows, frame.cols, blocks).sigmoid().flatten(2)  # (P, n, B*B)
    winner = (probs * scores[None, :, None]).argmax(1)  # (P, B*B)
    on = probs.gather(1, winner[:, None])[:, 0] >= mask_threshold
    counts = torch.zeros(3, n, dtype=torch.float64, device=probs.device)
    counts[0] += torch.bincount(winner[exists], minlength=n)
    counts[1] += torch.bincount(winner[exists & on], minlength=n)
    above = ((probs >= mask_threshold) & exists[:, None]).sum(2) * unsure.T  # (P, n) only unsure pairs count here
    counts[2] += above.sum(0)
    return counts, winner, on


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
        tiles = torch.zeros(count + 1, frame.num_blocks, BLOCK_SIZE**2, dtype=torch.bool, device=self.mask.device)
        tiles[rank[self.owner], self.block] = self.mask  # dropped candidates land in the spare row ``count``
        return frame.untile(tiles[:count], transposed)

    def paint_map(self, frame: _Frame, rank: Tensor, area: Tensor, info: list[dict],
                  overlap_threshold: float) -> tuple[Tensor, list[dict]]:
        """(T_h, T_w) int32 map: each pixel goes to the best-ranked kept instance covering it (-1 none). Instances
        left with less than ``overlap_threshold`` of their mask are dropped and the map is painted without them."""
        count, device = len(info), self.mask.device
        rows = rank[self.owner].to(torch.int16)  # (N,) ranks < TOP_K_INSTANCES: small integers suffice
        exists = frame.exists(torch.arange(frame.num_blocks, device=device))  # (nb, B*B)

        def paint(alive: Tensor) -> Tensor:  # alive: (count + 1,) bool, the last entry (dropped) False
            owner = torch.full((frame.num_blocks, BLOCK_SIZE**2), count, dtype=torch.int16, device=device)
            value = torch.where(self.mask & alive[rows.long()][:, None], rows[:, None], count)  # (N, B*B)
            return owner.scatter_reduce_(0, self.block[:, None].expand_as(value), value, "amin").long()

        alive = torch.ones(count + 1, dtype=torch.bool, device=device)
        alive[count] = False
        owner = paint(alive)
        visible = torch.bincount(owner[exists], minlength=count + 1)[:count].to(area.dtype)
        alive[:count] = visible >= overlap_threshold * area
        if not bool(alive[:count].all()):
            owner = paint(alive)
        survivors = torch.nonzero(alive[:count]).reshape(-1)
        new_id = torch.full((count + 1,), -1, dtype=torch.int32, device=device)
        new_id[survivors] = torch.arange(len(survivors), dtype=torch.int32, device=device)
        segments = [dict(info[i], id=new) for new, i in enumerate(survivors.tolist())]
        return frame.untile(new_id[owner]), segments
