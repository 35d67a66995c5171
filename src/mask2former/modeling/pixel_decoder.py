"""Mask2Former's pixel decoder: a deformable-attention encoder over the coarse backbone maps, then a small FPN.

The three coarsest backbone maps (strides 32, 16, 8) are projected to ``feature_dim`` channels, flattened into one
sequence and refined by multi-scale deformable self-attention; they become the memory of the transformer decoder.
FPN levels then upsample the stride-8 result down to ``common_stride``, adding laterally projected finer backbone maps,
and a 1x1 projection of the finest result gives the per-pixel mask features.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import FeatureInfo
from .recompute import call_layer
from .chunked import by_slabs, slab_edges, slabs_pay
from .deformable_attention import MultiScaleDeformableAttention
from .inplace import add_into, relu_into
from .position_encoding import sine_position_embedding

NUM_LEVELS = 3  # backbone maps seen by the deformable encoder (and by the transformer decoder)
# Tokens (batch x positions) per slab of a whole encoder layer in CPU inference: Swin-T 800x1088, one layer on 2 cores
# took 239 ms in one call, 240 / 220 / 217 / 217 / 233 ms in slabs of 1024 / 2048 / 3072 / 4096 / 6144 positions
# (batch 1), and 487 ms against 421 / 415 / 419 / 427 / 460 ms for a batch of 2.
LAYER_SLAB_TOKENS = 4096

# Applied to a fresh fc1 output, so ReLU may work in place in inference.
_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {"relu": relu_into, "gelu": F.gelu}


class PixelDecoderOutput(NamedTuple):
    """What the pixel decoder hands to the transformer decoder and the mask head."""

    mask_features: torch.Tensor
    """(B, mask_dim, H / common_stride, W / common_stride): per-pixel embeddings the mask logits are made from."""
    multi_scale_features: tuple[torch.Tensor, ...]
    """The encoder's output per level, coarsest first (strides 32, 16, 8), each (B, feature_dim, H_l, W_l)."""
    attentions: tuple[torch.Tensor, ...] | None
    """When asked for: the sampling weights of each encoder layer, each (B, S, nh, L, P)."""


def pixel_centre_reference_points(
    spatial_shapes: Sequence[tuple[int, int]], *, device: torch.device | str | None, dtype: torch.dtype
) -> torch.Tensor:
    """Normalised (x, y) = ((j + 0.5) / W_l, (i + 0.5) / H_l) of every position of every level, row-major.

    Returns (1, S, 2), S = sum of H_l * W_l. Without padding each point means the same place on every level.
    """
    points = []
    for height, width in spatial_shapes:
        y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height  # (H,)
        x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width  # (W,)
        grid_y, grid_x = torch.meshgrid(y, x, indexing="ij")  # (H, W) each
        points.append(torch.stack([grid_x, grid_y], dim=-1).reshape(height * width, 2))  # (H*W, 2)
    return torch.cat(points, dim=0).to(dtype)[None]  # (1, S, 2)


def _c2_xavier_fill(conv: nn.Conv2d) -> None:
    """detectron2's conv init: kaiming uniform with a=1, zero bias."""
    nn.init.kaiming_uniform_(conv.weight, a=1)
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


class DeformableEncoderLayer(nn.Module):
    """Post-norm encoder layer: x = LN(x + MSDeformAttn(x + pos, x)); x = LN(x + FFN(x))."""

    def __init__(
        self,
        *,
        embed_dim: int,
        num_heads: int,
        num_levels: int,
        num_points: int,
        ffn_dim: int,
        dropout: float,
        activation: str,
        slab_tokens: int = LAYER_SLAB_TOKENS,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.self_attn = MultiScaleDeformableAttention(
            embed_dim=embed_dim, num_heads=num_heads, num_levels=num_levels, num_points=num_points
        )
        self.self_attn_layer_norm = nn.LayerNorm(embed_dim)
        self.fc1 = nn.Linear(embed_dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, embed_dim)
        self.final_layer_norm = nn.LayerNorm(embed_dim)
        self.dropout = nn.Dropout(dropout)
        self.activation = _ACTIVATIONS[activation]
        self.slab_tokens = slab_tokens
        """Tokens (over the batch) per slab in CPU inference; a plain attribute, so tests can force slabs."""
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """The original's encoder init: xavier uniform on the FFN weights (PyTorch's default biases)."""
        for linear in (self.fc1, self.fc2):
            linear.reset_parameters()
            nn.init.xavier_uniform_(linear.weight)
        self.self_attn.reset_parameters()
        self.self_attn_layer_norm.reset_parameters()
        self.final_layer_norm.reset_parameters()

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(B, S, D) -> (B, S, D), plus the attention's sampling weights (B, S, nh, L, P) (None in a slab-wise
        evaluation that does not ``need_weights``)."""
        if not self.training and slabs_pay(hidden_states, self.slab_tokens):
            return self._forward_by_slabs(hidden_states, position_embeddings, reference_points, spatial_shapes,
                                          need_weights)
        attended, weights = self.self_attn(hidden_states, position_embeddings, reference_points, spatial_shapes)
        hidden_states = self.self_attn_layer_norm(add_into(self.dropout(attended), hidden_states))  # (B, S, D)
        ffn = by_slabs(self._feed_forward, hidden_states)  # (B, S, D)
        hidden_states = self.final_layer_norm(add_into(self.dropout(ffn), hidden_states))  # (B, S, D)
        return hidden_states, weights

    def _forward_by_slabs(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        need_weights: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`forward` in CPU inference, a slab of at most ``slab_tokens`` tokens (over the batch) at a time.

        Only the values need every position; everything after them (sampling offsets and weights, the sampling, the
        output projection, both residual sums and norms, the feed-forward block) maps each query on its own. So the
        value table is made once, then each slab goes through the whole layer with megabyte-sized intermediates that
        stay in cache, instead of a dozen full-length (S, ...) tensors per layer. The same products on the same rows:
        the output is bit-identical to the one-call path (tested)."""
        batch, seq_len, _ = hidden_states.shape
        values = self.self_attn.values(hidden_states, spatial_shapes)
        out = torch.empty_like(hidden_states)  # (B, S, D)
        weights = None
        edges = slab_edges(seq_len, max(1, self.slab_tokens // batch))
        for start, stop in zip(edges, edges[1:]):
            x = hidden_states[:, start:stop]  # (B, q, D)
            queries = x + position_embeddings[:, start:stop]
            attended, slab_weights = self.self_attn.attend(queries, reference_points[:, start:stop], values)
            x = self.self_attn_layer_norm(attended.add_(x))  # (B, q, D)
            x = self.final_layer_norm(self._feed_forward(x).add_(x))
            out[:, start:stop] = x
            if need_weights:
                if weights is None:
                    weights = slab_weights.new_empty(batch, seq_len, *slab_weights.shape[2:])  # (B, S, nh, L, P)
                weights[:, start:stop] = slab_weights
        return out, weights

    def _feed_forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., D) through the (..., ffn_dim) intermediate, token by token."""
        return self.fc2(self.dropout(self.activation(self.fc1(tokens))))


class DeformableEncoder(nn.Module):
    """A stack of :class:`DeformableEncoderLayer` over the flattened levels.

    With ``gradient_checkpointing`` each layer is recomputed in backward instead of keeping its activations.
    """

    gradient_checkpointing: bool = False

    def __init__(self, layers: Sequence[DeformableEncoderLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)

    def forward(
        self,
        hidden_states: torch.Tensor,
        position_embeddings: torch.Tensor,
        reference_points: torch.Tensor,
        spatial_shapes: Sequence[tuple[int, int]],
        need_weights: bool = True,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
        """(B, S, D) -> (B, S, D), plus each layer's sampling weights (B, S, nh, L, P) (see the layer for None)."""
        all_weights = []
        for layer in self.layers:
            hidden_states, weights = call_layer(
                layer, self.gradient_checkpointing, hidden_states, position_embeddings, reference_points,
                spatial_shapes, need_weights,
            )
            all_weights.append(weights)
        return hidden_states, tuple(all_weights)


class PixelDecoder(nn.Module):
    """Multi-scale deformable-attention pixel decoder (MSDeformAttnPixelDecoder in the original code).

    ``in_features`` describes the backbone maps, finest first; the last three go through the encoder and the first
    log2(stride of the finest encoder level / common_stride) feed the FPN levels ``adapter_1``/``layer_1``, ...
    (``adapter_1`` on the finest map).
    """

    def __init__(
        self,
        *,
        in_features: Sequence[FeatureInfo],
        feature_dim: int = 256,
        mask_dim: int = 256,
        num_heads: int = 8,
        num_encoder_layers: int = 6,
        encoder_ffn_dim: int = 1024,
        dropout: float = 0.0,
        activation: str = "relu",
        num_points: int = 4,
        common_stride: int = 4,
    ) -> None:
        super().__init__()
        in_features = list(in_features)
        if len(in_features) < NUM_LEVELS:
            raise ValueError(f"need at least {NUM_LEVELS} backbone maps, got {len(in_features)}")
        if [f.stride for f in in_features] != sorted(f.stride for f in in_features):
            raise ValueError(f"in_features must be ordered finest first, got strides {[f.stride for f in in_features]}")
        self.in_features = in_features
        self.feature_dim = feature_dim
        min_encoder_stride = in_features[-NUM_LEVELS].stride
        self.num_fpn_levels = int(math.log2(min_encoder_stride) - math.log2(common_stride))
        if not 0 <= self.num_fpn_levels <= len(in_features):
            raise ValueError(f"common_stride {common_stride} does not fit backbone strides {in_features}")

        # encoder levels, coarsest first: projections of the maps with strides 32, 16, 8
        self.input_projections = nn.ModuleList(
            nn.Sequential(nn.Conv2d(info.channels, feature_dim, kernel_size=1), nn.GroupNorm(32, feature_dim))
            for info in reversed(in_features[-NUM_LEVELS:])
        )
        self.level_embed = nn.Parameter(torch.empty(NUM_LEVELS, feature_dim))  # (L, D), added to the positions
        self.encoder = DeformableEncoder(
            [
                DeformableEncoderLayer(
                    embed_dim=feature_dim,
                    num_heads=num_heads,
                    num_levels=NUM_LEVELS,
                    num_points=num_points,
                    ffn_dim=encoder_ffn_dim,
                    dropout=dropout,
                    activation=activation,
                )
                for _ in range(num_encoder_layers)
            ]
        )
        # FPN levels: adapter_{i+1} projects backbone map i, layer_{i+1} smooths the sum; run coarse to fine
        for index, info in enumerate(in_features[: self.num_fpn_levels]):
            adapter = nn.Sequential(
                nn.Conv2d(info.channels, feature_dim, kernel_size=1, bias=False), nn.GroupNorm(32, feature_dim)
            )
            output_layer = nn.Sequential(
                nn.Conv2d(feature_dim, feature_dim, kernel_size=3, padding=1, bias=False),
                nn.GroupNorm(32, feature_dim),
                nn.ReLU(inplace=True),
            )
            self.add_module(f"adapter_{index + 1}", adapter)
            self.add_module(f"layer_{index + 1}", output_layer)
        self.mask_projection = nn.Conv2d(feature_dim, mask_dim, kernel_size=1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise as the original Mask2Former does (detectron2 conv init, xavier input projections)."""
        for projection in self.input_projections:
            nn.init.xavier_uniform_(projection[0].weight)
            nn.init.zeros_(projection[0].bias)
            projection[1].reset_parameters()
        nn.init.normal_(self.level_embed)
        for layer in self.encoder.layers:
            layer.reset_parameters()
        for index in range(self.num_fpn_levels):
            adapter, output_layer = self._fpn_level(index)
            _c2_xavier_fill(adapter[0])
            adapter[1].reset_parameters()
            _c2_xavier_fill(output_layer[0])
            output_layer[1].reset_parameters()
        _c2_xavier_fill(self.mask_projection)

    def _fpn_level(self, index: int) -> tuple[nn.Sequential, nn.Sequential]:
        """The (adapter, output layer) of the FPN level on backbone map ``index`` (0 = finest)."""
        return getattr(self, f"adapter_{index + 1}"), getattr(self, f"layer_{index + 1}")

    def forward(self, features: Sequence[torch.Tensor], output_attentions: bool = False) -> PixelDecoderOutput:
        """Backbone maps, finest first, each (B, C_i, H_i, W_i) as described by ``in_features``."""
        if len(features) != len(self.in_features):
            raise ValueError(f"expected {len(self.in_features)} feature maps, got {len(features)}")
        batch = features[0].shape[0]
        coarse_maps = list(features[-NUM_LEVELS:])[::-1]  # strides 32, 16, 8
        # On contiguous NCHW maps, as transformers' backbone hands them over: on the backbone's channels-last views
        # the 1x1 convolutions and GroupNorms round differently (~4e-6 here), one more source of flipped
        # masked-attention bits downstream; contiguous, they give transformers' bits at no measurable cost.
        projected = [proj(x.contiguous()) for proj, x in zip(self.input_projections, coarse_maps)]  # (B, D, H_l, W_l)
        spatial_shapes = [(x.shape[2], x.shape[3]) for x in projected]
        hidden_states = torch.cat([x.permute(0, 2, 3, 1).flatten(1, 2) for x in projected], dim=1)  # (B, S, D)
        device, dtype = hidden_states.device, hidden_states.dtype

        positions = []
        for level, (height, width) in enumerate(spatial_shapes):
            pos = sine_position_embedding(height, width, self.feature_dim // 2, device=device, dtype=dtype)
            pos = pos.flatten(2).transpose(1, 2)  # (1, H_l*W_l, D)
            positions.append(pos + self.level_embed[level])
        position_embeddings = torch.cat(positions, dim=1)  # (1, S, D)
        reference_points = pixel_centre_reference_points(spatial_shapes, device=device, dtype=dtype)  # (1, S, 2)
        reference_points = reference_points[:, :, None, :]  # (1, S, 1, 2): same point on every level

        hidden_states, attentions = self.encoder(
            hidden_states, position_embeddings, reference_points, spatial_shapes, need_weights=output_attentions
        )

        level_sizes = [height * width for height, width in spatial_shapes]
        multi_scale_features = tuple(
            x.transpose(1, 2).reshape(batch, self.feature_dim, height, width)  # (B, D, H_l, W_l)
            for x, (height, width) in zip(hidden_states.split(level_sizes, dim=1), spatial_shapes)
        )

        # NCHW: bilinear upsampling is ~7x slower on CPU on a channels-last map (what the encoder output and the
        # backbone maps are); the convolutions would be ~15% faster channels-last, but their different rounding
        # moves the mask features 2x further from transformers' and can flip an attention-mask bit downstream.
        out = multi_scale_features[-1]  # (B, D, H/8, W/8)
        for index in reversed(range(self.num_fpn_levels)):
            adapter, output_layer = self._fpn_level(index)
            lateral = adapter(features[index].contiguous())  # (B, D, H_i, W_i)
            upsampled = F.interpolate(out.contiguous(), size=lateral.shape[-2:], mode="bilinear", align_corners=False)
            out = output_layer(upsampled.add_(lateral))  # (B, D, H_i, W_i)

        return PixelDecoderOutput(
            mask_features=self.mask_projection(out),  # (B, mask_dim, H/4, W/4)
            multi_scale_features=multi_scale_features,
            attentions=attentions if output_attentions else None,
        )
