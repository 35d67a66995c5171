"""Masked-attention transformer decoder of Mask2Former (the "transformer module").

Learned queries attend to one level of the pixel decoder's multi-scale memory per layer (coarsest first, cycling
through the three levels). Each layer's cross-attention is restricted to the foreground of the mask that the previous
prediction head produced for that query. A prediction head (LayerNorm -> mask MLP -> dot product with the per-pixel
mask features) runs before the first layer and after every layer.

Parameter names follow transformers' ``Mask2FormerTransformerModule`` so that its state dict (and the official
checkpoints, under the ``model.transformer_module.`` prefix) load without renaming.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mask2former.modeling.recompute import call_layer
from mask2former.modeling.position_encoding import sine_position_embedding

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu, "silu": F.silu}


# ---------------------------------------------------------------------------------------------------------------------
# Free functions
# ---------------------------------------------------------------------------------------------------------------------


def attention_mask_from_logits(mask_logits: Tensor, size: tuple[int, int]) -> Tensor:
    """Turn mask predictions into the mask of the next masked cross-attention.

    ``mask_logits`` (B, Q, H4, W4) are resized bilinearly (align_corners=False) to ``size`` = (H, W) of the memory level
    the next layer attends to. A position is blocked where the predicted probability is below 0.5. A query whose every
    position would be blocked attends everywhere instead. No gradient flows through the result.

    Returns a bool tensor (B, Q, H * W), True where attention is NOT allowed.
    """
    # float32 even under autocast: the 0.5 threshold is what decides which positions are seen
    logits = mask_logits.detach().float()
    if tuple(logits.shape[-2:]) != tuple(size):
        logits = F.interpolate(logits, size=size, mode="bilinear", align_corners=False)  # (B, Q, H, W)
    # Threshold the probability, not the logit: sigmoid rounds tiny negative logits to exactly 0.5 in float32.
    blocked = logits.sigmoid().flatten(2) < 0.5  # (B, Q, H*W)
    fully_blocked = blocked.all(dim=-1, keepdim=True)  # (B, Q, 1)
    return blocked & ~fully_blocked


def multi_head_attention(
    query: Tensor,
    key: Tensor,
    value: Tensor,
    num_heads: int,
    *,
    blocked: Tensor | None = None,
    dropout: float = 0.0,
    need_weights: bool = False,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention over already projected inputs, split into ``num_heads`` heads.

    query (B, Q, C), key and value (B, L, C); ``blocked`` (B, Q, L) bool, True where a query may not attend (every row
    must keep at least one allowed position). Returns the merged heads (B, Q, C) and, when ``need_weights``, the
    attention probabilities (B, num_heads, Q, L), computed explicitly; otherwise the fused kernel runs and the weights
    are None.
    """
    batch, num_q, channels = query.shape
    head_dim = channels // num_heads
    q = query.view(batch, num_q, num_heads, head_dim).transpose(1, 2)  # (B, h, Q, C/h)
    k = key.view(batch, -1, num_heads, head_dim).transpose(1, 2)  # (B, h, L, C/h)
    v = value.view(batch, -1, num_heads, head_dim).transpose(1, 2)  # (B, h, L, C/h)
    allowed = None if blocked is None else ~blocked[:, None]  # (B, 1, Q, L)

    if need_weights:
        scores = (q * head_dim**-0.5) @ k.transpose(-2, -1)  # (B, h, Q, L)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float("-inf"))
        weights = scores.softmax(dim=-1)  # (B, h, Q, L)
        out = F.dropout(weights, p=dropout, training=dropout > 0.0) @ v  # (B, h, Q, C/h)
    else:
        weights = None
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, dropout_p=dropout)  # (B, h, Q, C/h)
    return out.transpose(1, 2).reshape(batch, num_q, channels), weights  # (B, Q, C)


def flatten_memory_level(features: Tensor, projection: nn.Module, level_embedding: Tensor) -> tuple[Tensor, Tensor]:
    """One memory level for the cross-attention: projected features plus the level embedding, and their position.

    features (B, C_in, H, W), level_embedding (C,). Returns memory (B, H*W, C) and its sine position embedding
    (1, H*W, C).
    """
    height, width = features.shape[-2:]
    memory = projection(features).flatten(2).transpose(1, 2) + level_embedding  # (B, H*W, C)
    pos = sine_position_embedding(
        height, width, memory.shape[-1] // 2, device=features.device, dtype=features.dtype
    )  # (1, C, H, W)
    return memory, pos.flatten(2).transpose(1, 2)  # (1, H*W, C)


# ---------------------------------------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------------------------------------


class SelfAttention(nn.Module):
    """Multi-head self-attention among the queries; the query position is added to queries and keys, not values."""

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, pos: Tensor, need_weights: bool = False) -> tuple[Tensor, Tensor | None]:
        """x (B, Q, C), pos (1 or B, Q, C) -> (B, Q, C) and weights (B, heads, Q, Q) or None."""
        x_pos = x + pos  # (B, Q, C)
        out, weights = multi_head_attention(
            self.q_proj(x_pos),
            self.k_proj(x_pos),
            self.v_proj(x),
            self.num_heads,
            dropout=self.dropout if self.training else 0.0,
            need_weights=need_weights,
        )
        return self.out_proj(out), weights


class MaskedCrossAttention(nn.Module):
    """Multi-head attention from the queries to one memory level, restricted by a mask.

    The parameters are laid out as in ``torch.nn.MultiheadAttention`` (one packed input projection), the layout of the
    checkpoints.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"hidden_dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.dropout = dropout
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))  # rows: query, key, value
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, blocked: Tensor) -> Tensor:
        """query (B, Q, C), key and value (B, L, C), blocked (B, Q, L) bool -> (B, Q, C)."""
        w_q, w_k, w_v = self.in_proj_weight.chunk(3)  # (C, C) each
        b_q, b_k, b_v = self.in_proj_bias.chunk(3)  # (C,) each
        out, _ = multi_head_attention(
            F.linear(query, w_q, b_q),
            F.linear(key, w_k, b_k),
            F.linear(value, w_v, b_v),
            self.num_heads,
            blocked=blocked,
            dropout=self.dropout if self.training else 0.0,
        )
        return self.out_proj(out)


class MaskedAttentionDecoderLayer(nn.Module):
    """Masked cross-attention -> self-attention -> feed-forward, each with a residual and a LayerNorm.

    Post-norm (default): x = LN(x + block(x)). Pre-norm: x = x + block(LN(x)); the queries then leave the layer
    without a final normalisation (the decoder's shared LayerNorm is applied only for predictions).
    """

    def __init__(
        self,
        *,
        hidden_dim: int,
        num_heads: int,
        dim_feedforward: int,
        dropout: float = 0.0,
        activation: str = "relu",
        pre_norm: bool = False,
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unsupported activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}")
        self.pre_norm = pre_norm
        self.dropout = dropout
        self.activation = _ACTIVATIONS[activation]
        self.cross_attn = MaskedCrossAttention(hidden_dim, num_heads, dropout)
        self.cross_attn_layer_norm = nn.LayerNorm(hidden_dim)
        self.self_attn = SelfAttention(hidden_dim, num_heads, dropout)
        self.self_attn_layer_norm = nn.LayerNorm(hidden_dim)
        self.fc1 = nn.Linear(hidden_dim, dim_feedforward)
        self.fc2 = nn.Linear(dim_feedforward, hidden_dim)
        self.final_layer_norm = nn.LayerNorm(hidden_dim)

    def _residual(self, x: Tensor, update: Tensor, norm: nn.LayerNorm) -> Tensor:
        x = x + F.dropout(update, p=self.dropout, training=self.training)
        return x if self.pre_norm else norm(x)

    def forward(
        self,
        x: Tensor,
        query_pos: Tensor,
        memory: Tensor,
        memory_pos: Tensor,
        blocked: Tensor,
        need_weights: bool = False,
    ) -> tuple[Tensor, Tensor | None]:
        """Update the queries x (B, Q, C).

        query_pos (1, Q, C) positional query embedding; memory (B, L, C) and memory_pos (1, L, C) of this layer's level;
        blocked (B, Q, L) bool. Returns the new queries (B, Q, C) and, when ``need_weights``, the self-attention
        probabilities (B, heads, Q, Q).
        """
        # The query position goes on the cross-attention query, the sine position on its keys; values are plain.
        h = self.cross_attn_layer_norm(x) if self.pre_norm else x
        update = self.cross_attn(h + query_pos, memory + memory_pos, memory, blocked)  # (B, Q, C)
        x = self._residual(x, update, self.cross_attn_layer_norm)

        h = self.self_attn_layer_norm(x) if self.pre_norm else x
        update, weights = self.self_attn(h, query_pos, need_weights)  # (B, Q, C)
        x = self._residual(x, update, self.self_attn_layer_norm)

        h = self.final_layer_norm(x) if self.pre_norm else x
        hidden = F.dropout(self.activation(self.fc1(h)), p=self.dropout, training=self.training)  # (B, Q, F)
        x = self._residual(x, self.fc2(hidden), self.final_layer_norm)
        return x, weights


class MaskPredictor(nn.Module):
    """Mask embedding MLP (Linear-ReLU-Linear-ReLU-Linear) whose output is dotted with the per-pixel mask features.

    Each Linear sits at index 0 of its own block (``mask_embedder.{0,1,2}.0``), the checkpoint layout.
    """

    def __init__(self, hidden_dim: int, mask_dim: int) -> None:
        super().__init__()
        self.mask_embedder = nn.Sequential(
            nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU()),
            nn.Sequential(nn.Linear(hidden_dim, hidden_dim), nn.ReLU()),
            nn.Sequential(nn.Linear(hidden_dim, mask_dim)),
        )

    def forward(self, queries: Tensor, mask_features: Tensor) -> Tensor:
        """queries (B, Q, C), mask_features (B, M, H4, W4) -> mask logits (B, Q, H4, W4)."""
        mask_embed = self.mask_embedder(queries)  # (B, Q, M)
        return torch.einsum("bqc,bchw->bqhw", mask_embed, mask_features)


class MaskedAttentionDecoder(nn.Module):
    """Parameter container: the decoder layers, the shared prediction LayerNorm and the mask predictor.

    The loop that runs them lives in :class:`MaskedAttentionTransformer`.
    """

    def __init__(self, layers: list[MaskedAttentionDecoderLayer], hidden_dim: int, mask_dim: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self.layernorm = nn.LayerNorm(hidden_dim)
        self.mask_predictor = MaskPredictor(hidden_dim, mask_dim)

    def predict(self, x: Tensor, mask_features: Tensor) -> tuple[Tensor, Tensor]:
        """Prediction head: x (B, Q, C) -> normalised queries (Q, B, C) and mask logits (B, Q, H4, W4).

        The mask head reads the returned (Q, B, C) view, so that gradients of the masks reach it."""
        normed = self.layernorm(x).transpose(0, 1)  # (Q, B, C)
        return normed, self.mask_predictor(normed.transpose(0, 1), mask_features)


@dataclass
class TransformerDecoderOutput:
    """What the transformer decoder returns; layouts follow transformers' public output fields.

    last_hidden_state: (B, Q, C) queries after the last layer, not normalised (transformers'
        ``transformer_decoder_last_hidden_state``).
    hidden_states: num_layers + 1 tensors (Q, B, C), query-major: the initial query features, then each layer's output,
        not normalised (``transformer_decoder_hidden_states``). The last one is ``last_hidden_state`` transposed.
    intermediate_states: num_layers + 1 tensors (Q, B, C), query-major: the decoder LayerNorm of each entry of
        ``hidden_states``, the input of the class predictor (``transformer_decoder_intermediate_states``).
    masks_queries_logits: num_layers + 1 mask logits (B, Q, H4, W4), one per entry of ``intermediate_states``; the last
        is the final prediction, the others are auxiliary. Only the last one when the decoder ran with
        ``intermediate_masks=False``.
    attentions: with ``output_attentions``, num_layers SELF-attention probabilities (B, heads, Q, Q), one per layer
        (transformers' ``attentions``; it does not return the cross-attention weights); otherwise None.
    """

    last_hidden_state: Tensor
    hidden_states: tuple[Tensor, ...]
    intermediate_states: tuple[Tensor, ...]
    masks_queries_logits: tuple[Tensor, ...]
    attentions: tuple[Tensor, ...] | None = None


class MaskedAttentionTransformer(nn.Module):
    """Learned queries refined by ``num_layers`` masked-attention decoder layers over ``num_levels`` memory levels.

    ``num_layers`` is ``decoder_layers - 1`` of the config; together with the prediction before the first layer this
    gives ``decoder_layers`` predictions. Memory level i is the pixel decoder's map i (coarsest first), projected to
    ``hidden_dim`` by a 1x1 conv when ``in_channels != hidden_dim`` or ``enforce_input_projection``, plus the learned
    ``level_embed[i]``; its keys also get the sine position embedding. Layer i attends to level i % num_levels (3 in
    every released model).

    ``dropout`` applies to attention probabilities, residual branches and the FFN hidden layer. transformers also
    reuses it as a layer-drop probability during training; the original Mask2Former has no layer drop and neither
    does this module (no difference at the default 0.0).

    With ``gradient_checkpointing`` each decoder layer is recomputed in backward instead of keeping its activations
    (the prediction heads between layers are not: their mask logits are outputs that the loss needs anyway).
    """

    gradient_checkpointing: bool = False

    def __init__(
        self,
        *,
        in_channels: int,
        hidden_dim: int = 256,
        num_queries: int = 100,
        num_heads: int = 8,
        dim_feedforward: int = 2048,
        num_layers: int = 9,
        mask_dim: int = 256,
        pre_norm: bool = False,
        enforce_input_projection: bool = False,
        dropout: float = 0.0,
        activation: str = "relu",
        num_levels: int = 3,
        init_xavier_std: float = 1.0,
    ) -> None:
        super().__init__()
        self.num_levels = num_levels
        self.init_xavier_std = init_xavier_std
        self.queries_embedder = nn.Embedding(num_queries, hidden_dim)  # positional part of the queries
        self.queries_features = nn.Embedding(num_queries, hidden_dim)  # content part of the queries
        self.level_embed = nn.Embedding(num_levels, hidden_dim)
        project = in_channels != hidden_dim or enforce_input_projection
        self.input_projections = nn.ModuleList(
            nn.Conv2d(in_channels, hidden_dim, kernel_size=1) if project else nn.Identity() for _ in range(num_levels)
        )
        layers = [
            MaskedAttentionDecoderLayer(
                hidden_dim=hidden_dim,
                num_heads=num_heads,
                dim_feedforward=dim_feedforward,
                dropout=dropout,
                activation=activation,
                pre_norm=pre_norm,
            )
            for _ in range(num_layers)
        ]
        self.decoder = MaskedAttentionDecoder(layers, hidden_dim, mask_dim)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Initialise as transformers' ``Mask2FormerPreTrainedModel._init_weights`` leaves this module.

        Embeddings N(0, 1); input projections xavier-uniform (gain ``init_xavier_std``) with zero bias; in every decoder
        layer all matrices xavier-uniform (gain ``init_xavier_std``), all biases zero, LayerNorms (1, 0); the decoder
        LayerNorm (1, 0); the mask MLP keeps PyTorch's default Linear initialisation. The config's ``init_std`` plays no
        part here (in the reference it only reaches BatchNorm layers, of which this module has none).
        """
        for embedding in (self.queries_embedder, self.queries_features, self.level_embed):
            nn.init.normal_(embedding.weight, mean=0.0, std=1.0)
        for projection in self.input_projections:
            if isinstance(projection, nn.Conv2d):
                nn.init.xavier_uniform_(projection.weight, gain=self.init_xavier_std)
                nn.init.zeros_(projection.bias)
        for layer in self.decoder.layers:
            for name, param in layer.named_parameters():
                if param.dim() > 1:
                    nn.init.xavier_uniform_(param, gain=self.init_xavier_std)
                elif name.endswith("layer_norm.weight"):
                    nn.init.ones_(param)
                else:  # every bias, LayerNorm biases included
                    nn.init.zeros_(param)
        self.decoder.layernorm.reset_parameters()
        for block in self.decoder.mask_predictor.mask_embedder:
            block[0].reset_parameters()

    def forward(
        self,
        multi_scale_features: Sequence[Tensor],
        mask_features: Tensor,
        output_attentions: bool = False,
        intermediate_masks: bool = True,
    ) -> TransformerDecoderOutput:
        """Run the decoder.

        multi_scale_features: ``num_levels`` maps (B, C_in, H_l, W_l), coarsest first (strides 32, 16, 8 for three).
        mask_features: per-pixel embeddings (B, mask_dim, H4, W4) at stride 4.
        intermediate_masks: with False, the predictions before the last are made only where they are used, at the
            size of the memory level whose attention they mask, and only the last full-size mask is returned. Bilinear
            resizing is linear, so mask embeddings times resized ``mask_features`` equal the resized full-size logits
            up to float rounding; this skips ``num_layers`` products at stride 4 (inference without auxiliary
            outputs needs no more).
        """
        if len(multi_scale_features) != self.num_levels:
            raise ValueError(f"expected {self.num_levels} feature maps, got {len(multi_scale_features)}")
        memories, memory_pos, sizes = [], [], []
        for level, features in enumerate(multi_scale_features):
            memory, pos = flatten_memory_level(
                features, self.input_projections[level], self.level_embed.weight[level]
            )  # (B, L, C), (1, L, C)
            memories.append(memory)
            memory_pos.append(pos)
            sizes.append(tuple(features.shape[-2:]))

        level_features = None
        if not intermediate_masks:  # (B, mask_dim, H_l, W_l) per level
            level_features = [
                F.interpolate(mask_features, size=size, mode="bilinear", align_corners=False) for size in sizes
            ]
        num_layers = len(self.decoder.layers)

        def predict(x: Tensor, after_layer: int) -> tuple[Tensor, Tensor]:
            """Prediction after layer ``after_layer`` (-1: before the first): (Q, B, C), (B, Q, h, w)."""
            if level_features is None or after_layer == num_layers - 1:
                return self.decoder.predict(x, mask_features)
            return self.decoder.predict(x, level_features[(after_layer + 1) % self.num_levels])

        batch = mask_features.shape[0]
        query_pos = self.queries_embedder.weight.unsqueeze(0)  # (1, Q, C)
        x = self.queries_features.weight.unsqueeze(0).expand(batch, -1, -1)  # (B, Q, C)

        # The returned (Q, B, C) states are views that the computation goes on from (x is taken back from each), so
        # that a loss reaches them: ``h.retain_grad()`` on any of them gets its gradient.
        hidden_states, intermediate, masks = [x.transpose(0, 1)], [], []
        x = hidden_states[-1].transpose(0, 1)  # (B, Q, C)
        attentions: list[Tensor] = []
        normed, mask_logits = predict(x, -1)  # (Q, B, C), (B, Q, H4, W4) or (B, Q, H_0, W_0)
        intermediate.append(normed)
        masks.append(mask_logits)
        for index, layer in enumerate(self.decoder.layers):
            level = index % self.num_levels
            blocked = attention_mask_from_logits(mask_logits, sizes[level])  # (B, Q, H_l*W_l)
            x, weights = call_layer(
                layer, self.gradient_checkpointing, x, query_pos, memories[level], memory_pos[level], blocked,
                output_attentions,
            )
            hidden_states.append(x.transpose(0, 1))  # (Q, B, C)
            x = hidden_states[-1].transpose(0, 1)
            normed, mask_logits = predict(x, index)
            intermediate.append(normed)
            masks.append(mask_logits)
            if weights is not None:
                attentions.append(weights)
        if level_features is not None:
            masks = masks[-1:]

        return TransformerDecoderOutput(
            last_hidden_state=x,
            hidden_states=tuple(hidden_states),  # (Q, B, C) each
            intermediate_states=tuple(intermediate),  # (Q, B, C) each
            masks_queries_logits=tuple(masks),
            attentions=tuple(attentions) if output_attentions else None,
        )
