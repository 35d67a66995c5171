"""Multi-scale deformable attention (Deformable DETR), as used by the Mask2Former pixel decoder.

Every query looks at a handful of points per feature level, placed around its reference point by learned offsets, and
mixes the bilinearly sampled values with learned softmax weights.

Two functions compute the same thing. :func:`multi_scale_deformable_attention` is the readable reference: one
``grid_sample`` per level, then a weighted sum. :func:`multi_scale_deformable_attention_fast` turns every sample into
four weighted table rows and sums all of a query's rows (levels x points x corners) in one ``F.embedding_bag`` call: no
per-level round trip, no (B*nh, hd, Q, P) intermediate, the output already in (B, Q, nh*hd) order. Both give the
gradients of ``grid_sample`` for the values, the locations and the weights; the tests hold them together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .fast_paths import use_fast_paths


def small_constant(values: Sequence, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """``torch.tensor(values, device=device, dtype=dtype)`` for a handful of numbers (per-level sizes, offsets).

    Off the CPU each number is written by a fill on the device instead of a copy from host memory: a forward that
    makes its constants this way can be captured in a CUDA graph (a capture refuses host-to-device copies).
    """
    if torch.device(device).type == "cpu":
        return torch.tensor(values, dtype=dtype)
    host = torch.tensor(values, dtype=torch.float64)  # the shape and the numbers, exact for ints below 2**53
    out = torch.empty(host.numel(), device=device, dtype=dtype)
    for i, number in enumerate(host.flatten().tolist()):
        out[i].fill_(int(number) if not dtype.is_floating_point else number)  # a kernel with the number as argument
    return out.view(host.shape)


def multi_scale_deformable_attention(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Sample every level of ``value`` at the given points and sum the samples with the given weights.

    Args:
        value: (B, S, nh, hd), the flattened maps of all levels one after the other, S = sum of H_l * W_l.
        spatial_shapes: (H_l, W_l) of each of the L levels, in the order they appear in ``value``.
        sampling_locations: (B, Q, nh, L, P, 2), normalised (x, y) positions, (0, 0) the top-left corner of the map
            and (1, 1) its bottom-right corner. Points outside [0, 1] see zeros beyond the border.
        attention_weights: (B, Q, nh, L, P), the weight of each sampled point.

    Returns:
        (B, Q, nh * hd): for each query and head, the weighted sum of its L * P samples; heads concatenated.

    Sampling is bilinear with pixel centres at ((j + 0.5) / W_l, (i + 0.5) / H_l), i.e. the same as
    ``grid_sample(align_corners=False, padding_mode="zeros")``.
    """
    batch, seq_len, num_heads, head_dim = value.shape
    _, num_queries, _, num_levels, num_points, _ = sampling_locations.shape
    level_sizes = [height * width for height, width in spatial_shapes]
    if sum(level_sizes) != seq_len:
        raise ValueError(f"spatial_shapes {list(spatial_shapes)} cover {sum(level_sizes)} positions, not {seq_len}")

    grids = 2 * sampling_locations - 1  # (B, Q, nh, L, P, 2) in grid_sample's [-1, 1] convention
    weights = attention_weights.transpose(1, 2).reshape(batch * num_heads, 1, num_queries, num_levels, num_points)
    output = value.new_zeros(batch * num_heads, head_dim, num_queries)  # (B*nh, hd, Q)
    for level, ((height, width), value_level) in enumerate(zip(spatial_shapes, value.split(level_sizes, dim=1))):
        value_level = value_level.permute(0, 2, 3, 1)  # (B, nh, hd, H*W)
        value_level = value_level.reshape(batch * num_heads, head_dim, height, width)  # (B*nh, hd, H, W)
        grid = grids[:, :, :, level].transpose(1, 2)  # (B, nh, Q, P, 2)
        grid = grid.reshape(batch * num_heads, num_queries, num_points, 2)  # (B*nh, Q, P, 2)
        samples = F.grid_sample(
            value_level, grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )  # (B*nh, hd, Q, P)
        output = output + (samples * weights[..., level, :]).sum(dim=-1)  # (B*nh, hd, Q)
    output = output.view(batch, num_heads * head_dim, num_queries)  # (B, nh*hd, Q)
    return output.transpose(1, 2).contiguous()  # (B, Q, nh*hd)


def _padded_value_table(value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]], row_width: int) -> torch.Tensor:
    """The levels of ``value`` as zero-bordered maps of one common width, flattened into one table of head vectors.

    value (B, S, nh, hd) -> (B * S' * nh, hd), S' = sum of (H_l + 3) * ``row_width``: level l becomes a map of
    H_l + 3 rows (one zero row above, two below) and ``row_width`` >= W_l + 3 columns (one zero column left, the rest
    right). Row r of the table holds head r % nh of position (r // nh) % S' of image r // (S' * nh).
    """
    batch, _, num_heads, head_dim = value.shape
    levels = value.split([height * width for height, width in spatial_shapes], dim=1)
    padded = [
        F.pad(level.reshape(batch, height, width, num_heads * head_dim), (0, 0, 1, row_width - width - 1, 1, 2))
        for level, (height, width) in zip(levels, spatial_shapes)
    ]  # each (B, H_l + 3, row_width, nh*hd)
    return torch.cat([level.flatten(1, 2) for level in padded], dim=1).view(-1, head_dim)  # (B*S'*nh, hd)


def multi_scale_deformable_attention_fast(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    sampling_locations: torch.Tensor,
    attention_weights: torch.Tensor,
) -> torch.Tensor:
    """Same inputs, output and gradients as :func:`multi_scale_deformable_attention`, computed as one weighted gather
    by :func:`sample_at_pixels` after turning the normalised locations into pixel coordinates."""
    batch, num_queries, num_heads, num_levels, num_points, _ = sampling_locations.shape
    dtype = torch.promote_types(sampling_locations.dtype, torch.float32)  # coordinates never in half precision
    level_size = small_constant([[w, h] for h, w in spatial_shapes], device=value.device, dtype=dtype)  # (L, 2)
    pixels = torch.addcmul(
        torch.full((), -0.5, device=value.device, dtype=dtype), sampling_locations.to(dtype), level_size[:, None, :]
    )  # (B, Q, nh, L, P, 2), pixel centres at integers
    pixels = pixels.view(batch, num_queries, num_heads, num_levels * num_points, 2)
    weights = attention_weights.reshape(batch, num_queries, num_heads, num_levels * num_points)
    return sample_at_pixels(value, spatial_shapes, num_points, pixels[..., 0], pixels[..., 1], weights)


class ValueTable(NamedTuple):
    """The values of every level as one table of head vectors (:func:`_padded_value_table`), with its layout."""

    table: torch.Tensor  # (B * S' * nh, hd)
    batch: int
    num_heads: int
    spatial_shapes: tuple[tuple[int, int], ...]
    row_width: int  # columns of every padded level


def value_table(value: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]]) -> ValueTable:
    """value (B, S, nh, hd) -> the :class:`ValueTable` that :func:`sample_table` reads."""
    batch, seq_len, num_heads, _ = value.shape
    if sum(height * width for height, width in spatial_shapes) != seq_len:
        raise ValueError(f"spatial_shapes {list(spatial_shapes)} do not cover the {seq_len} positions of value")
    row_width = max(width for _, width in spatial_shapes) + 3
    table = _padded_value_table(value, spatial_shapes, row_width)
    return ValueTable(table, batch, num_heads, tuple(map(tuple, spatial_shapes)), row_width)


def sample_at_pixels(
    value: torch.Tensor,
    spatial_shapes: Sequence[tuple[int, int]],
    num_points: int,
    x: torch.Tensor,
    y: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """The fast path: x, y, weights (B, Q, nh, L*P) -> (B, Q, nh*hd), points ordered level-major.

    ``x``, ``y`` are pixel coordinates on each point's level with pixel centres at integers (normalised x times W_l,
    minus 0.5). A bilinear sample is the sum of its four corner pixels, each weighted by the area of the opposite
    sub-rectangle. Folding the attention weight into those four weights makes the output of a (query, head) the
    weighted sum of L * P * 4 rows of a value table, computed in one ``F.embedding_bag(mode="sum",
    per_sample_weights=...)`` call (:func:`weighted_row_sums`, differentiable for the table and the weights). Corners
    outside a map must read zeros: every level is given a zero border in the table (:func:`_padded_value_table`) and
    coordinates are clamped to [-1, W_l] x [-1, H_l], so every corner index is valid and out-of-map corners land on
    zeros. Clamping changes nothing inside that range and, beyond it, only points whose four corners are all outside
    (zero output and zero gradient, as with ``grid_sample``). All levels share one table width, so the four corner
    offsets are the same on every level.
    Every step works on (B, Q, nh, L*P) tensors with per-column constants, which vectorise well on CPU.
    """
    return sample_table(value_table(value, spatial_shapes), num_points, x, y, weights)


def sample_table(source: ValueTable, num_points: int, x: torch.Tensor, y: torch.Tensor, weights: torch.Tensor
                 ) -> torch.Tensor:
    """:func:`sample_at_pixels` on a table made once: any queries (all of them, or a slab) may read it."""
    table, batch, num_heads, spatial_shapes, row_width = source
    head_dim = table.shape[1]
    _, num_queries, _, lp = x.shape
    device, dtype = table.device, x.dtype
    padded_len = table.shape[0] // (batch * num_heads)  # S'
    level_starts = [0]
    for height, _ in spatial_shapes[:-1]:
        level_starts.append(level_starts[-1] + (height + 3) * row_width)

    def per_column(values: list[float], kind: torch.dtype) -> torch.Tensor:  # one value per level -> (L*P,)
        return small_constant(values, device=device, dtype=kind).repeat_interleave(num_points)

    x = torch.clamp(x, min=per_column([-1.0] * len(spatial_shapes), dtype), max=per_column(
        [float(w) for _, w in spatial_shapes], dtype))
    y = torch.clamp(y, min=per_column([-1.0] * len(spatial_shapes), dtype), max=per_column(
        [float(h) for h, _ in spatial_shapes], dtype))
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0  # (B, Q, nh, L*P): distance from the top-left corner, in [0, 1)

    # Table row of the top-left corner: image b, head h, padded row y0 + 1, padded column x0 + 1 of level l. Integer
    # arithmetic in floating point is exact below 2**24 (float32) or 2**53 (float64).
    index_dtype = torch.float32 if table.shape[0] < 2**24 else torch.float64
    level_offset = per_column([float(start + row_width + 1) for start in level_starts], index_dtype)
    position = (x0.detach().to(index_dtype) + level_offset).add_(y0.detach().to(index_dtype), alpha=row_width)
    image_head = (
        torch.arange(batch, device=device, dtype=index_dtype)[:, None] * (padded_len * num_heads)
        + torch.arange(num_heads, device=device, dtype=index_dtype)
    )[:, None, :, None]  # (B, 1, nh, 1)
    index_kind = torch.int64 if table.shape[0] >= 2**31 else torch.int32
    row = torch.add(image_head, position, alpha=num_heads).to(index_kind)  # (B, Q, nh, L*P)
    corner_step = small_constant([0, 1, row_width, row_width + 1], device=device, dtype=index_kind) * num_heads
    rows = row.view(-1, 1, lp) + corner_step[:, None]  # (N, 4, L*P): corners (0,0), (0,1), (1,0), (1,1) as (dy, dx)

    weights = weights.to(dtype).reshape(-1, lp)  # (N, L*P)
    fx, fy = fx.reshape(-1, lp), fy.reshape(-1, lp)
    bottom = fy * weights  # rows y0 + 1
    top = weights - bottom  # rows y0
    left = 1 - fx  # columns x0; fx for columns x0 + 1
    corner_weights = torch.stack((top * left, top * fx, bottom * left, bottom * fx), dim=1)  # (N, 4, L*P), as rows

    output = weighted_row_sums(
        rows.view(-1, 4 * lp), table, corner_weights.view(-1, 4 * lp).to(table.dtype)
    )  # (N, hd), N in (B, Q, nh) order
    return output.view(batch, num_queries, num_heads * head_dim)


def weighted_row_sums(rows: torch.Tensor, table: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """``out[n] = sum_k weights[n, k] * table[rows[n, k]]``: rows, weights (N, K), table (T, D) -> (N, D).

    ``F.embedding_bag(mode="sum", per_sample_weights=...)``; when a gradient is recorded on CPU in eager mode,
    through :class:`_WeightedRowSums`, whose backward for the table is about 3x faster than torch's (under
    ``torch.compile`` torch's own backward is traced instead).
    """
    records = torch.is_grad_enabled() and (table.requires_grad or weights.requires_grad)
    if records and table.device.type == "cpu" and not torch.compiler.is_compiling():
        return _WeightedRowSums.apply(rows, table, weights)
    if records and table.dtype in (torch.float16, torch.bfloat16):
        # CUDA has no half-precision kernel for the gradient of per-sample weights (mixed-precision training): sum in
        # float32 and hand back the table's dtype
        return F.embedding_bag(rows, table.float(), mode="sum", per_sample_weights=weights.float()).to(table.dtype)
    return F.embedding_bag(rows, table, mode="sum", per_sample_weights=weights)


def transposed_row_sums(rows: torch.Tensor, weights: torch.Tensor, grad: torch.Tensor, num_rows: int) -> torch.Tensor:
    """The table gradient of :func:`weighted_row_sums`: ``out[r] = sum over (n, k) with rows[n, k] = r of
    weights[n, k] * grad[n]`` -> (num_rows, D).

    The same sum turned around: sorted by table row, the (n, k) pairs form one bag per table row whose entries are the
    rows of ``grad`` that read it, with the same weights; one ``F.embedding_bag`` over those bags sums them. torch's
    own backward scatters the N*K weighted rows into the table one at a time instead.
    """
    num_per_bag = rows.shape[1]
    sorted_rows, order = torch.sort(rows.reshape(-1))  # (N*K,): pairs grouped by table row
    table_rows = torch.arange(num_rows, device=rows.device, dtype=sorted_rows.dtype)
    offsets = torch.searchsorted(sorted_rows, table_rows)  # (num_rows,) start of each table row's bag
    sorted_weights = weights.reshape(-1).index_select(0, order)
    return F.embedding_bag(order // num_per_bag, grad, offsets=offsets, mode="sum", per_sample_weights=sorted_weights)


class _WeightedRowSums(torch.autograd.Function):
    """:func:`weighted_row_sums` with :func:`transposed_row_sums` as the table's gradient (the weights' gradient is
    torch's own, from a recomputed ``embedding_bag``). Differentiable once."""

    @staticmethod
    def forward(ctx, rows: torch.Tensor, table: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(rows, table, weights)
        return F.embedding_bag(rows, table, mode="sum", per_sample_weights=weights)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor) -> tuple[None, torch.Tensor | None, torch.Tensor | None]:
        rows, table, weights = ctx.saved_tensors
        grad_table = grad_weights = None
        if ctx.needs_input_grad[1]:
            grad_table = transposed_row_sums(rows, weights, grad.contiguous(), table.shape[0])
        if ctx.needs_input_grad[2]:
            with torch.enable_grad():
                leaf = weights.detach().requires_grad_()
                out = F.embedding_bag(rows, table.detach(), mode="sum", per_sample_weights=leaf)
                (grad_weights,) = torch.autograd.grad(out, leaf, grad)
        return None, grad_table, grad_weights


class MultiScaleDeformableAttention(nn.Module):
    """Deformable self-attention over a flattened sequence of L feature levels.

    Each position predicts, from its query (features + position embedding), ``num_points`` offsets per head and level
    around its reference point, plus one softmax weight per sampled point (normalised over levels x points).
    Offsets are in pixels of the level they sample: they are divided by that level's (W, H).

    One computation, :meth:`values` then :meth:`attend`; only the sampler differs: the gather of
    :func:`sample_table` when :func:`~mask2former.modeling.fast_paths.use_fast_paths`, otherwise the ``grid_sample``
    reference :func:`multi_scale_deformable_attention` (inside ``exportable()`` and while exporting).
    """

    def __init__(self, *, embed_dim: int, num_heads: int, num_levels: int, num_points: int) -> None:
        super().__init__()
        if embed_dim % num_heads != 0:
            raise ValueError(f"embed_dim ({embed_dim}) must be divisible by num_heads ({num_heads})")
        self.embed_dim = embed_dim
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points

        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Deformable DETR's init: each head starts looking along its own direction, at 1..P pixels, uniformly."""
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.num_heads, dtype=torch.float32) * (2.0 * math.pi / self.num_heads)  # (nh,)
        directions = torch.stack([angles.cos(), angles.sin()], dim=-1)  # (nh, 2)
        # scale so that the larger of |x|, |y| is 1: the first point lands on a neighbouring pixel
        directions = directions / directions.abs().max(dim=-1, keepdim=True).values
        distances = torch.arange(1, self.num_points + 1, dtype=torch.float32)  # (P,)
        grid = directions[:, None, None, :] * distances[None, None, :, None]  # (nh, 1, P, 2)
        grid = grid.expand(self.num_heads, self.num_levels, self.num_points, 2)  # (nh, L, P, 2)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.reshape(-1))

        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: torch.Tensor | None,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attend from every position of ``hidden_states`` to sampled points of ``hidden_states`` itself.

        Args:
            hidden_states: (B, S, D), the L levels flattened and concatenated; also the source of the values.
            position_embeddings: (B or 1, S, D), added to the queries only; or None.
            reference_points: (B or 1, S, L or 1, 2), normalised (x, y) centre of each query's sampling pattern on
                each level.
            spatial_shapes: (H_l, W_l) of each level, in sequence order.

        Returns:
            The output (B, S, D) and the attention weights (B, S, nh, L, P).
        """
        if len(spatial_shapes) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} levels, got spatial_shapes {list(spatial_shapes)}")
        queries = hidden_states if position_embeddings is None else hidden_states + position_embeddings  # (B, S, D)
        return self.attend(queries, reference_points, self.values(hidden_states, spatial_shapes))

    def values(self, hidden_states: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]]) -> Values:
        """The projected values of ``hidden_states`` (B, S, D), in the form :meth:`attend` samples: a
        :class:`ValueTable` on the fast path, the (B, S, nh, hd) values with their level sizes otherwise."""
        batch, seq_len, _ = hidden_states.shape
        value = self.value_proj(hidden_states).view(batch, seq_len, self.num_heads, self.embed_dim // self.num_heads)
        if use_fast_paths():
            return value_table(value, spatial_shapes)
        return ValueMaps(value, tuple(tuple(shape) for shape in spatial_shapes))

    def attend(self, queries: torch.Tensor, reference_points: torch.Tensor, values: Values
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """Queries (B, Q, D) with their reference points (B or 1, Q, L or 1, 2) sample ``values`` (made once by
        :meth:`values`, so all queries at once or a slab at a time give the same rows): output (B, Q, D) and weights
        (B, Q, nh, L, P)."""
        batch, num_queries, _ = queries.shape
        nh, nl, npt = self.num_heads, self.num_levels, self.num_points
        weights = self._weights(queries)  # (B, Q, nh, L*P), at least float32
        locations, size = self._locations(queries, reference_points, values.spatial_shapes)  # (B, Q, 2*nh*L*P)
        if isinstance(values, ValueTable):
            dtype = torch.promote_types(locations.dtype, torch.float32)  # coordinates never in half precision
            # pixel coordinates of their level, centres at integers, as multi_scale_deformable_attention_fast
            pixels = torch.addcmul(torch.full((), -0.5, device=queries.device, dtype=dtype), locations.to(dtype),
                                   size.to(dtype))
            pixels = pixels.view(batch, num_queries, 2, nh, nl * npt)  # (B, Q, 2, nh, L*P)
            output = sample_table(values, npt, pixels[:, :, 0], pixels[:, :, 1], weights)  # (B, Q, D)
        else:
            locations = locations.view(batch, num_queries, 2, nh, nl, npt).permute(0, 1, 3, 4, 5, 2)  # (B,Q,nh,L,P,2)
            output = multi_scale_deformable_attention(
                values.value, values.spatial_shapes, locations.to(values.value.dtype),
                weights.view(batch, num_queries, nh, nl, npt).to(values.value.dtype),
            )  # (B, Q, D)
        weights = weights.view(batch, num_queries, nh, nl, npt)
        return self.output_proj(output), weights

    def _weights(self, queries: torch.Tensor) -> torch.Tensor:
        """Softmax over each head's L*P points: (B, Q, D) -> (B, Q, nh, L*P), at least float32."""
        batch, num_queries, _ = queries.shape
        logits = self.attention_weights(queries).view(batch, num_queries, self.num_heads, -1)
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        return softmax_short_rows(logits) if use_fast_paths() else logits.softmax(dim=-1)

    def _locations(
        self, queries: torch.Tensor, reference_points: torch.Tensor, spatial_shapes: Sequence[tuple[int, int]]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised sampling locations ``reference + offset / (W_l, H_l)``, all x then all y: (B, S, 2*nh*L*P) in
        (2, nh, L, P) order; and the (W_l, H_l) of every column, (2*nh*L*P,).

        The rows of ``sampling_offsets`` are taken x-block then y-block, so each coordinate comes out of the
        projection as a contiguous (B, S, nh*L*P) block and every step is a plain vectorised operation.
        """
        batch, seq_len, _ = queries.shape
        nh, nl, npt = self.num_heads, self.num_levels, self.num_points
        count = nh * nl * npt
        order = torch.arange(2 * count, device=queries.device).view(count, 2).t().reshape(-1)  # all x, then all y
        offsets = F.linear(queries, self.sampling_offsets.weight[order], self.sampling_offsets.bias[order])
        offsets = offsets.view(batch, seq_len, 2, nh, nl, npt)  # (B, S, 2, nh, L, P)
        # (W_l, H_l) and the reference point of every output column, materialised over (2, nh, L, P): a broadcast over
        # the short head and point dimensions vectorises poorly on CPU, a contiguous operand of 2*nh*L*P does well.
        size = level_sizes(spatial_shapes, device=queries.device, dtype=offsets.dtype)  # (2, L)
        size = size[:, None, :, None].expand(2, nh, nl, npt).reshape(2 * count)
        reference = reference_points.transpose(2, 3)[:, :, :, None, :, None]  # (B|1, S, 2, 1, L|1, 1)
        reference = reference.expand(-1, -1, 2, nh, nl, npt).reshape(reference.shape[0], seq_len, 2 * count)
        return reference + offsets.view(batch, seq_len, 2 * count) / size, size


class ValueMaps(NamedTuple):
    """The values of every level as they are, for the ``grid_sample`` reference."""

    value: torch.Tensor  # (B, S, nh, hd)
    spatial_shapes: tuple[tuple[int, int], ...]


Values = ValueTable | ValueMaps


def level_sizes(spatial_shapes: Sequence[tuple[int, int]], *, device: torch.device, dtype: torch.dtype
                ) -> torch.Tensor:
    """(2, L): the widths of the L levels, then their heights.

    On the fast path a :func:`small_constant`; otherwise stacked from the sizes one by one, which is how an exported
    graph keeps them symbolic (they are the input image's size divided by the level's stride).
    """
    if use_fast_paths():
        return small_constant([[w for _, w in spatial_shapes], [h for h, _ in spatial_shapes]], device=device,
                              dtype=dtype)
    sides = [side for index in (1, 0) for side in (shape[index] for shape in spatial_shapes)]
    return torch.stack([torch.scalar_tensor(side, device=device, dtype=dtype) for side in sides]).view(2, -1)


def softmax_short_rows(logits: torch.Tensor) -> torch.Tensor:
    """``logits.softmax(-1)`` for a short last dimension (12 weights per head here), where torch's CPU kernel is about
    5x slower than these four vectorised passes. The shift by the row maximum is a constant for the gradient."""
    shifted = logits - logits.detach().amax(dim=-1, keepdim=True)
    if shifted.requires_grad:
        exp = shifted.exp()
        return exp / exp.sum(dim=-1, keepdim=True)
    exp = shifted.exp_()
    return exp.div_(exp.sum(dim=-1, keepdim=True))
