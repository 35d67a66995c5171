"""The machinery that the post-processors of :mod:`.postprocess` share: output images laid out in B x B blocks.

:class:`_Frame` is one image's geometry (output size, and how each axis of output blocks maps onto the low-resolution
masks: upsampled to the padded size, cropped to the image, resized to the target size) and paints per-block values
and per-pixel tiles into images; :func:`_frames` builds the frames of a batch from the outputs (``padded_size``,
``image_sizes``) and the target sizes. :func:`_exact_pairs` evaluates chosen (block, query) pairs exactly,
:func:`_pair_chunks` and :func:`_chunks` bound how many values are evaluated at once, and :func:`_first_max` finds
the first maximum over a middle dimension with plain reductions. The per-axis operators, block bounds and block
evaluation themselves come from :mod:`.interpolation`.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Iterator

import torch
from torch import Tensor

from .buffers import empty
from .interpolation import BLOCK as BLOCK_SIZE
from .interpolation import AxisBlocks, axis_blocks, axis_operator, evaluate_blocks

_CHUNK_VALUES = 1 << 23  # output values evaluated at once (blocks x queries x pixels per block)


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

    @property
    def ragged(self) -> bool:
        """Whether the last block row or column reaches past the image (its size is no multiple of the block)."""
        return self.rows.size % BLOCK_SIZE != 0 or self.cols.size % BLOCK_SIZE != 0

    def exists(self, blocks: Tensor) -> Tensor:
        """(P, B*B) bool: which pixels of the given blocks lie inside the output (edge blocks are partial)."""
        y_ok = self.rows.inside(torch.div(blocks, self.cols.count, rounding_mode="floor"))
        x_ok = self.cols.inside(blocks % self.cols.count)
        return (y_ok[:, :, None] & x_ok[:, None, :]).flatten(1)

    def paint(self, block_values: Tensor, blocks: Tensor, tiles: Tensor | None) -> Tensor:
        """(T_h, T_w) image: every block filled with its value from ``block_values`` (nb,), then the blocks (P,)
        overwritten pixel by pixel with ``tiles`` (P, B*B)."""
        rows, cols = self.rows.count, self.cols.count
        canvas = empty((rows, BLOCK_SIZE, cols, BLOCK_SIZE), block_values.dtype, block_values.device)
        canvas.copy_(block_values.view(rows, 1, cols, 1).expand_as(canvas))
        if tiles is not None and len(blocks):
            by, bx = torch.div(blocks, cols, rounding_mode="floor"), blocks % cols
            canvas.permute(0, 2, 1, 3)[by, bx] = tiles.view(-1, BLOCK_SIZE, BLOCK_SIZE).to(canvas.dtype)
        image = canvas.view(rows * BLOCK_SIZE, cols * BLOCK_SIZE)
        if image.shape != self.size:
            image = image[: self.size[0], : self.size[1]].contiguous()
        return image

    def untile(self, tiles: Tensor, transposed: bool = False) -> Tensor:
        """(..., nb, B*B) values laid out block by block -> (..., T_h, T_w) image, or (..., T_w, T_h)."""
        lead, dims = tiles.shape[:-2], len(tiles.shape) - 2
        grid = tiles.reshape(*lead, self.rows.count, self.cols.count, BLOCK_SIZE, BLOCK_SIZE)
        order = (1, 3, 0, 2) if transposed else (0, 2, 1, 3)  # (by, bx, y, x) -> (bx, x, by, y) or (by, y, bx, x)
        grid = grid.permute(*range(dims), *(dims + axis for axis in order))
        size = (self.cols.size, self.rows.size) if transposed else (self.rows.size, self.cols.size)
        image = empty((*lead, *size), tiles.dtype, tiles.device)
        if size == (grid.shape[-4] * BLOCK_SIZE, grid.shape[-2] * BLOCK_SIZE):  # one pass, straight from the blocks
            image.view(grid.shape).copy_(grid)
            return image
        full = grid.reshape(*lead, grid.shape[-4] * BLOCK_SIZE, grid.shape[-2] * BLOCK_SIZE)
        return image.copy_(full[..., : size[0], : size[1]])

    def scatter(self, count: int, image: Tensor, blocks: Tensor, tiles: Tensor, transposed: bool = False) -> Tensor:
        """(count, T_h, T_w) images (or (count, T_w, T_h)), zero except the tiles (P, B*B), each placed in image
        ``image[p]`` at block ``blocks[p]``."""
        rows, cols, device = self.rows.count, self.cols.count, tiles.device
        by, bx = torch.div(blocks, cols, rounding_mode="floor"), blocks % cols
        tiles = tiles.view(-1, BLOCK_SIZE, BLOCK_SIZE)
        if transposed:  # canvas (count, bx, x, by, y)
            canvas = empty((count, cols, BLOCK_SIZE, rows, BLOCK_SIZE), tiles.dtype, device).zero_()
            canvas.permute(0, 1, 3, 4, 2)[image, bx, by] = tiles
        else:  # canvas (count, by, y, bx, x)
            canvas = empty((count, rows, BLOCK_SIZE, cols, BLOCK_SIZE), tiles.dtype, device).zero_()
            canvas.permute(0, 1, 3, 2, 4)[image, by, bx] = tiles
        full = canvas.view(count, canvas.shape[1] * BLOCK_SIZE, canvas.shape[3] * BLOCK_SIZE)
        size = (self.cols.size, self.rows.size) if transposed else self.size
        return full if full.shape[1:] == size else full[:, : size[0], : size[1]].contiguous()


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
            rows = _axis(low_h, padded[0], valid_h, target_h, masks.device)
            cols = _axis(low_w, padded[1], valid_w, target_w, masks.device)
            frame = _Frame(rows, cols, int(rows.low_last.max()) + 1, int(cols.low_last.max()) + 1)
            frames[valid_h, valid_w, target_h, target_w] = frame
    return [frames[size + target] for size, target in zip(valid, targets)]


@functools.lru_cache(maxsize=64)
def _axis(low: int, padded: int, valid: int, target: int, device: torch.device) -> AxisBlocks:
    """One axis's blocks, kept for the next call: consecutive batches usually share their sizes."""
    return axis_blocks(axis_operator(low, padded, valid, target), device)


def _pair_chunks(pairs_per_block: Tensor) -> Iterator[Tensor]:
    """Consecutive ranges of block indices, each with at most ``_CHUNK_VALUES`` values of (block, query) pairs (or
    one block)."""
    total = torch.cumsum(pairs_per_block, 0) * BLOCK_SIZE**2  # (P,)
    begin, count = 0, len(pairs_per_block)
    while begin < count:
        before = int(total[begin - 1]) if begin else 0
        end = max(begin + 1, int(torch.searchsorted(total, before + _CHUNK_VALUES, right=True)))
        yield torch.arange(begin, end, device=pairs_per_block.device)
        begin = end


def _rows(tensor: Tensor | None, rows: Tensor) -> Tensor | None:
    return None if tensor is None else tensor[rows]


def _chunks(blocks: Tensor, values_per_block: int) -> Iterator[Tensor]:
    step = max(1, _CHUNK_VALUES // max(values_per_block, 1))
    for begin in range(0, len(blocks), step):
        yield blocks[begin : begin + step]


def _first_max(values: Tensor, codes: Tensor) -> tuple[Tensor, Tensor]:
    """The maximum over dim 1 of ``values`` (P, m, X) and the largest of ``codes`` (broadcast to (P, m, X)) among the
    slots that reach it, each (P, X). Plain reductions: on CPU they are much faster than index-returning ones."""
    best = values.amax(1, keepdim=True)  # (P, 1, X)
    return best[:, 0], ((values == best) * codes).amax(1)


def _exact_pairs(frame: _Frame, logits: Tensor, blocks: Tensor, needed: Tensor
                 ) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """Evaluate the (block, query) pairs marked in ``needed`` (P, n), grouped by the number c of queries per block.

    Yields per c: rows (P_c,) into ``blocks``, their queries (P_c, c) ascending, and the mask probabilities
    (P_c, c, B*B). Blocks without any query come as c = 0 with empty probabilities.
    """
    counts = needed.sum(1)  # (P,)
    order = counts.argsort(stable=True)
    sizes, group_counts = (part.tolist() for part in torch.unique_consecutive(counts[order], return_counts=True))
    pair_row, pair_query = torch.nonzero(needed[order], as_tuple=True)  # grouped by row, in ``order``
    probs = evaluate_blocks(logits, frame.rows, frame.cols, blocks[order][pair_row], pair_query)  # (N, B, B)
    probs = probs.sigmoid_().view(-1, BLOCK_SIZE**2)
    row_start = pair_start = 0
    for size, group in zip(sizes, group_counts):
        rows = order[row_start : row_start + group]
        queries = pair_query[pair_start : pair_start + group * size].view(group, size)
        yield rows, queries, probs[pair_start : pair_start + group * size].view(group, size, BLOCK_SIZE**2)
        row_start, pair_start = row_start + group, pair_start + group * size
