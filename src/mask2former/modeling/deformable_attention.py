"""Multi-scale deformable attention (Deformable DETR), as used by the Mask2Former pixel decoder.

Every query looks at a handful of points per feature level, placed around its reference point by learned offsets, and
mixes the bilinearly sampled values with learned softmax weights. :func:`multi_scale_deformable_attention` is the one
place where the sampling happens; a faster kernel can sit beside it and be tested against it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


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


class MultiScaleDeformableAttention(nn.Module):
    """Deformable self-attention over a flattened sequence of L feature levels.

    Each position predicts, from its query (features + position embedding), ``num_points`` offsets per head and level
    around its reference point, plus one softmax weight per sampled point (normalised over levels x points).
    Offsets are in pixels of the level they sample: they are divided by that level's (W, H).
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
        batch, seq_len, _ = hidden_states.shape
        nh, nl, npt = self.num_heads, self.num_levels, self.num_points
        if len(spatial_shapes) != nl:
            raise ValueError(f"expected {nl} levels, got spatial_shapes {list(spatial_shapes)}")
        queries = hidden_states if position_embeddings is None else hidden_states + position_embeddings  # (B, S, D)

        value = self.value_proj(hidden_states)  # (B, S, D)
        value = value.view(batch, seq_len, nh, self.embed_dim // nh)  # (B, S, nh, hd)

        offsets = self.sampling_offsets(queries).view(batch, seq_len, nh, nl, npt, 2)  # (B, S, nh, L, P, 2)
        weights = self.attention_weights(queries).view(batch, seq_len, nh, nl * npt)  # (B, S, nh, L*P)
        weights = weights.softmax(dim=-1).view(batch, seq_len, nh, nl, npt)  # (B, S, nh, L, P)

        # (W, H) of each level turns pixel offsets into normalised ones
        level_sizes = torch.tensor(
            [(width, height) for height, width in spatial_shapes], dtype=offsets.dtype, device=offsets.device
        )  # (L, 2)
        locations = (
            reference_points[:, :, None, :, None, :]  # (B or 1, S, 1, L or 1, 1, 2)
            + offsets / level_sizes[None, None, None, :, None, :]
        )  # (B, S, nh, L, P, 2)

        output = multi_scale_deformable_attention(value, spatial_shapes, locations, weights)  # (B, S, D)
        return self.output_proj(output), weights
