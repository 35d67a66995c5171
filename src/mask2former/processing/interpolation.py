"""Mask logits at output resolution, block by block, without resizing every query to every pixel.

Post-processing resizes mask logits (n, h, w) bilinearly (``align_corners=False``) to the padded input size, crops
the image's valid region and resizes that to the target size. Each step is linear and separable, so the chain is one
(T, low) matrix per axis (:func:`axis_operator`). The output is cut into square blocks of ``BLOCK`` pixels; each
block row reads a short range of low-resolution rows (:class:`AxisBlocks`), so one block of one query is two tiny
matrix products (:func:`evaluate_blocks`). The weights are non-negative and sum to one, so every output value lies
between the minimum and maximum of the low-resolution logits the block reads (:func:`block_bounds`): the
post-processors settle most blocks from these bounds and evaluate exactly only the others. The ranges of
neighbouring blocks overlap; their extremes are taken over aligned groups of rows first (:func:`_range_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .buffers import empty

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
    group, group_steps, row_steps: how :func:`block_bounds` reduces each block's range, see :func:`_range_plan`.
    """

    out_len: Tensor
    low_first: Tensor
    low_last: Tensor
    weights: Tensor
    size: int
    group: int
    group_steps: Tensor
    row_steps: Tensor

    @property
    def count(self) -> int:
        return len(self.out_len)

    @property
    def reach(self) -> int:
        return self.weights.shape[2]

    def inside(self, blocks: Tensor) -> Tensor:
        """(P, BLOCK) bool: which output positions of the given blocks (P,) exist (the last block may be partial)."""
        return torch.arange(BLOCK, device=blocks.device) < self.out_len[blocks][:, None]


def _range_plan(first: Tensor, last: Tensor) -> tuple[int, Tensor, Tensor]:
    """How to take the min/max over each range first[b]..last[b] (inclusive) of a sequence: (g, group_steps, row_steps).

    The sequence is first reduced over aligned groups of ``g`` elements (g = 1: not at all). Each range is then the
    union of the whole groups it contains (indices ``group_steps`` (S_g, nb) into the reduced sequence) and of the
    elements left over at its two ends (indices ``row_steps`` (S_r, nb) into the sequence). Steps beyond what a range
    needs repeat an index inside the range, which leaves a min or max unchanged. ``g`` minimises the work.
    """
    length = last - first + 1
    size, count = int(last.max()) + 1, len(first)
    best: tuple[int, tuple[int, Tensor, Tensor]] | None = None
    for g in range(1, int(length.max()) + 1):
        if g == 1:
            every = first + torch.minimum(torch.arange(int(length.max()))[:, None], length - 1)  # (S_r, nb)
            plan, cost = (1, first.new_zeros(0, count), every), 2 * count * len(every)
        else:
            group_first, group_end = -(-first // g), (last + 1) // g  # whole groups: group_first .. group_end - 1
            groups = group_end - group_first
            if int(groups.min()) < 1:  # a range without a whole group: this g cannot serve every block
                continue
            front, back = group_first * g - first, last + 1 - group_end * g  # elements left over at each end
            group_steps = group_first + torch.minimum(torch.arange(int(groups.max()))[:, None], groups - 1)
            fronts = first + torch.minimum(torch.arange(int(front.max()))[:, None], (front - 1).clamp(min=0))
            backs = last - torch.minimum(torch.arange(int(back.max()))[:, None], (back - 1).clamp(min=0))
            plan = (g, group_steps, torch.cat([fronts, backs]))
            cost = size * (g - 1) // g + 2 * count * (len(group_steps) + len(fronts) + len(backs))
        if best is None or cost < best[0]:
            best = (cost, plan)
    assert best is not None
    return best[1]


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
    group, group_steps, row_steps = _range_plan(low_first, low_last)
    parts = (out_len, low_first, low_last, weights.float())
    return AxisBlocks(*(part.to(device) for part in parts), size, group, group_steps.to(device), row_steps.to(device))


def _range_extremes(for_min: Tensor, for_max: Tensor, axis: AxisBlocks) -> tuple[Tensor, Tensor]:
    """Min of ``for_min`` and max of ``for_max`` over the range of the leading axis that each block of ``axis`` reads:
    (L, ...) -> (nb, ...) each. The two inputs have the same shape and may be the same tensor."""
    sources = [(for_min, for_max, axis.row_steps)]  # what to pick from, (steps, nb) indices into its leading axis
    if axis.group > 1:  # min and max over aligned groups first, from strided views
        g, usable = axis.group, len(for_min) // axis.group * axis.group
        group_low = torch.minimum(for_min[0:usable:g], for_min[1:usable:g])  # (L // g, ...)
        group_high = torch.maximum(for_max[0:usable:g], for_max[1:usable:g])
        for offset in range(2, g):
            torch.minimum(group_low, for_min[offset:usable:g], out=group_low)
            torch.maximum(group_high, for_max[offset:usable:g], out=group_high)
        sources.insert(0, (group_low, group_high, axis.group_steps))
    low = high = None
    for source_low, source_high, steps in sources:
        for index in steps:
            picked_low = source_low.index_select(0, index)
            picked_high = picked_low if source_high is source_low else source_high.index_select(0, index)
            if low is None or high is None:
                low, high = picked_low, picked_high.clone() if picked_high is picked_low else picked_high
            else:
                torch.minimum(low, picked_low, out=low)
                torch.maximum(high, picked_high, out=high)
    assert low is not None and high is not None
    return low, high


def block_bounds(logits: Tensor, rows: AxisBlocks, cols: AxisBlocks, slack: float = 1e-5) -> tuple[Tensor, Tensor]:
    """Bounds of the output logits in each block: (n, h, w) -> lower, upper, each (n, nb_y * nb_x).

    Exactly the min and max of the low-resolution logits each block reads, widened by ``slack`` (relative) so that
    rounding in the exact evaluation cannot leave them. Each pass reduces the leading axis of a contiguous tensor,
    where the element-wise kernels run fastest.
    """
    n, height, width = logits.shape
    by_row = empty((height, n, width), logits.dtype, logits.device).copy_(logits.transpose(0, 1))  # (h, n, w)
    row_low, row_high = _range_extremes(by_row, by_row, rows)  # (nb_y, n, w) each
    by_col_low, by_col_high = (empty((width, rows.count, n), t.dtype, t.device).copy_(t.permute(2, 0, 1))
                               for t in (row_low, row_high))  # (w, nb_y, n)
    low, high = _range_extremes(by_col_low, by_col_high, cols)  # (nb_x, nb_y, n) each
    low, high = (t.permute(2, 1, 0).reshape(n, -1) for t in (low, high))  # (n, nb_y * nb_x)
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
    row_weights = rows.weights.index_select(0, by)  # (P, B, Ry)
    col_weights = cols.weights.transpose(1, 2).contiguous().index_select(0, bx)  # (P, Rx, B)
    count, reach_y, reach_x = len(blocks), rows.reach, cols.reach
    if queries is None:  # two batched products per block: columns (all queries at once), then rows
        chosen = torch.arange(len(logits), device=blocks.device) if subset is None else subset  # (A,)
        window = logits[chosen[None, :, None, None], low_rows[:, None, :, None], low_cols[:, None, None, :]]
        half = torch.bmm(window.view(count, -1, reach_x), col_weights)  # (P, A * Ry, B)
        return torch.matmul(row_weights[:, None], half.view(count, len(chosen), reach_y, BLOCK))  # (P, A, B, B)
    # One window per pair, read by flat position: (P, Ry, Rx). Columns first: the cheaper order of the products.
    flat = logits.contiguous().view(-1)
    position = (queries * height)[:, None, None] + low_rows[:, :, None]
    window = flat.take(position * width + low_cols[:, None, :])  # (P, Ry, Rx)
    return torch.bmm(row_weights, torch.bmm(window, col_weights))  # (P, B, B)
