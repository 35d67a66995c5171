"""Mask logits at output resolution, block by block, without resizing every query to every pixel.

Post-processing resizes mask logits (n, h, w) bilinearly (``align_corners=False``) to the padded input size, crops
the image's valid region and resizes that to the target size. Each step is linear and separable, so the chain is one
(T, low) matrix per axis (:func:`axis_operator`). The output is cut into square blocks of ``BLOCK`` pixels; each
block row reads a short range of low-resolution rows (:class:`AxisBlocks`), so one block of one query is two tiny
matrix products (:func:`evaluate_blocks`). The weights are non-negative and sum to one, so every output value lies
between the minimum and maximum of the low-resolution logits the block reads (:func:`block_bounds`): the
post-processors settle most blocks from these bounds and evaluate exactly only the others.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

BLOCK = 16  # output pixels per block side


def bilinear_taps(in_size: int, out_size: int) -> tuple[Tensor, Tensor, Tensor]:
    """``F.interpolate(mode="bilinear", align_corners=False)`` along one axis as two taps per output position.

    Returns (low, high, frac), each (out_size,): output k = (1 - frac) * input[low] + frac * input[high].
    """
    dst = torch.arange(out_size, dtype=torch.float64)
    src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)  # (out,)
    low = src.floor().to(torch.int64).clamp(max=in_size - 1)
    high = (low + 1).clamp(max=in_size - 1)
    return low, high, src - low


def bilinear_matrix(in_size: int, out_size: int) -> Tensor:
    """(out_size, in_size) float64 matrix of the same interpolation."""
    low, high, frac = bilinear_taps(in_size, out_size)
    matrix = torch.zeros(out_size, in_size, dtype=torch.float64)
    rows = torch.arange(out_size)
    matrix.index_put_((rows, low), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, high), frac, accumulate=True)
    return matrix


def axis_operator(low: int, padded: int, valid: int, target: int) -> Tensor:
    """(target, low) float64: ``low`` -> ``padded`` (bilinear), keep the first ``valid``, ``valid`` -> ``target``."""
    combined = bilinear_matrix(low, padded)[:valid]  # (valid, low)
    if target != valid:  # each output row mixes two rows of the upsampled image
        first, second, frac = bilinear_taps(valid, target)
        combined = (1.0 - frac)[:, None] * combined[first] + frac[:, None] * combined[second]  # (target, low)
    return combined


@dataclass
class AxisBlocks:
    """One axis cut into blocks of ``BLOCK`` output positions, and the low-resolution range each block reads.

    out_len: (nb,) output positions in each block (``BLOCK`` except maybe the last).
    low_first, low_last: (nb,) first and last low-resolution index with a non-zero weight in the block.
    weights: (nb, BLOCK, R) float32, weight of low-resolution index ``low_first + r`` for each output position
    (0 past ``out_len`` or ``low_last``); R is the longest low-resolution range.
    size: number of output positions.
    """

    out_len: Tensor
    low_first: Tensor
    low_last: Tensor
    weights: Tensor
    size: int

    @property
    def count(self) -> int:
        return len(self.out_len)

    @property
    def reach(self) -> int:
        return self.weights.shape[2]

    def inside(self, blocks: Tensor) -> Tensor:
        """(P, BLOCK) bool: which output positions of the given blocks (P,) exist (the last block may be partial)."""
        return torch.arange(BLOCK, device=blocks.device) < self.out_len[blocks][:, None]


def axis_blocks(operator: Tensor, device: torch.device | str = "cpu") -> AxisBlocks:
    """Cut a (T, low) axis operator into blocks of ``BLOCK`` output positions."""
    size, low = operator.shape
    nonzero = operator > 0
    positions = torch.arange(low).expand(size, low)
    first_index = torch.where(nonzero, positions, low).min(dim=1).values  # (T,) non-decreasing
    last_index = torch.where(nonzero, positions, -1).max(dim=1).values  # (T,)
    count = -(-size // BLOCK)
    starts = torch.arange(count) * BLOCK
    out_len = (size - starts).clamp(max=BLOCK)
    low_first = first_index[starts]
    low_last = last_index[starts + out_len - 1]
    reach = int((low_last - low_first).max()) + 1
    rows = (starts[:, None] + torch.arange(BLOCK)).clamp(max=size - 1)  # (nb, BLOCK)
    cols = low_first[:, None] + torch.arange(reach)  # (nb, R)
    weights = operator[rows[:, :, None], cols.clamp(max=low - 1)[:, None, :]]  # (nb, BLOCK, R)
    exists = (torch.arange(BLOCK)[None, :, None] < out_len[:, None, None]) & (cols <= low_last[:, None])[:, None, :]
    weights = torch.where(exists, weights, 0.0)
    parts = (out_len, low_first, low_last, weights.float())
    return AxisBlocks(*(part.to(device) for part in parts), size)


def _range_bounds(values: Tensor, axis: AxisBlocks) -> tuple[Tensor, Tensor]:
    """Min and max of ``values`` (L, X) over the rows each block reads -> two (nb, X) tensors.

    Blocks are grouped by their first row; the rows from one first row to the next form disjoint segments, reduced
    in one pass. A block may read a few rows past its segment: those are folded in afterwards.
    """
    firsts, segment_of_block = torch.unique_consecutive(axis.low_first, return_inverse=True)
    index = torch.arange(len(values), device=values.device)
    segment = torch.bucketize(index, firsts, right=True) - 1
    outside = (index < firsts[0]) | (index > axis.low_last.max())
    segment = torch.where(outside, len(firsts), segment)  # read by no block: a spare slot
    shape = (len(firsts) + 1, values.shape[1])
    with warnings.catch_warnings():  # "index_reduce is in beta"
        warnings.simplefilter("ignore", UserWarning)
        low = values.new_full(shape, float("inf")).index_reduce_(0, segment, values, "amin")[segment_of_block]
        high = values.new_full(shape, float("-inf")).index_reduce_(0, segment, values, "amax")[segment_of_block]
    following = torch.cat([firsts[1:], firsts.new_full((1,), len(values))])[segment_of_block]  # (nb,)
    for extra in range(max(0, int((axis.low_last - following + 1).max()))):
        row = following + extra
        inside = (row <= axis.low_last)[:, None]
        taken = values.index_select(0, row.clamp(max=len(values) - 1))  # (nb, X)
        low = torch.where(inside, torch.minimum(low, taken), low)
        high = torch.where(inside, torch.maximum(high, taken), high)
    return low, high


def block_bounds(logits: Tensor, rows: AxisBlocks, cols: AxisBlocks, slack: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Bounds of the output logits in each block: (n, h, w) -> lower, upper, each (n, nb_y * nb_x).

    Widened by ``slack`` (relative) so that rounding in the exact evaluation cannot leave them.
    """
    n, height, width = logits.shape
    row_low, row_high = _range_bounds(logits.transpose(0, 1).reshape(height, n * width), rows)  # (nb_y, n * w)
    by_col = lambda t: t.reshape(rows.count, n, width).permute(2, 1, 0).reshape(width, n * rows.count)  # noqa: E731
    low, _ = _range_bounds(by_col(row_low), cols)  # (nb_x, n * nb_y)
    _, high = _range_bounds(by_col(row_high), cols)
    low = low.reshape(cols.count, n, rows.count).permute(1, 2, 0).reshape(n, -1)  # (n, nb_y * nb_x)
    high = high.reshape(cols.count, n, rows.count).permute(1, 2, 0).reshape(n, -1)
    return low - slack * (1.0 + low.abs()), high + slack * (1.0 + high.abs())


def evaluate_blocks(logits: Tensor, rows: AxisBlocks, cols: AxisBlocks, blocks: Tensor,
                    queries: Tensor | None = None, subset: Tensor | None = None) -> Tensor:
    """Exact output logits on whole blocks (flat block indices ``blocks`` (P,), row-major over (nb_y, nb_x)).

    Without ``queries``: every query (or the queries ``subset`` (A,)) on every block, (P, n or A, BLOCK, BLOCK).
    With ``queries`` (P,): query ``queries[p]`` on block ``blocks[p]``, (P, BLOCK, BLOCK). Positions past the image
    edge hold 0.
    """
    by, bx = torch.div(blocks, cols.count, rounding_mode="floor"), blocks % cols.count
    height, width = logits.shape[-2:]
    low_rows = (rows.low_first[by][:, None] + torch.arange(rows.reach, device=blocks.device)).clamp(max=height - 1)
    low_cols = (cols.low_first[bx][:, None] + torch.arange(cols.reach, device=blocks.device)).clamp(max=width - 1)
    row_weights, col_weights = rows.weights[by], cols.weights[bx].transpose(1, 2)  # (P, B, Ry), (P, Rx, B)
    count, reach_y, reach_x = len(blocks), rows.reach, cols.reach
    if queries is None:  # two batched products, one matrix per block: columns, then rows
        if subset is None:
            window = logits[:, low_rows[:, :, None], low_cols[:, None, :]]  # (n, P, Ry, Rx)
        else:
            window = logits[subset[:, None, None, None], low_rows[None, :, :, None], low_cols[None, :, None, :]]
        n = window.shape[0]
        window = window.permute(1, 2, 0, 3).reshape(count, reach_y * n, reach_x)  # (P, Ry * n, Rx)
        half = torch.bmm(window, col_weights)  # (P, Ry * n, B)
        out = torch.bmm(row_weights, half.view(count, reach_y, n * BLOCK))  # (P, B, n * B)
        return out.view(count, BLOCK, n, BLOCK).permute(0, 2, 1, 3)  # (P, n, B, B)
    window = logits[queries[:, None, None], low_rows[:, :, None], low_cols[:, None, :]]  # (P, Ry, Rx)
    return torch.bmm(torch.bmm(row_weights, window), col_weights)  # (P, B, B)
