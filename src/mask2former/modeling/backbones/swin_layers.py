"""The layers of the Swin Transformer backbone (``swin.py``): window helpers, blocks, patch merging, stages.

Every map is kept channels-last, (B, H, W, C), inside the backbone. Module and attribute names follow the checkpoint
layout (``attention.self.query``, ``intermediate.dense``, ...) so that state dicts load without renaming.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mask2former.modeling.recompute import call_layer
from mask2former.modeling.chunked import by_slabs, slab_edges, slabs_pay
from mask2former.modeling.fast_paths import use_fast_paths
from mask2former.modeling.inplace import add_into, gelu_into

ACTIVATIONS = {
    "gelu": lambda: nn.GELU(),
    "gelu_new": lambda: nn.GELU(approximate="tanh"),
    "gelu_pytorch_tanh": lambda: nn.GELU(approximate="tanh"),
    "relu": lambda: nn.ReLU(),
    "silu": lambda: nn.SiLU(),
    "swish": lambda: nn.SiLU(),
}


def round_up(size: int, multiple: int) -> int:
    """The smallest multiple of ``multiple`` that is at least ``size``.

    Written as a count of blocks times the block (not ``size + (-size % multiple)``): on the symbolic sizes of an
    export, a view by ``rounded // multiple`` then simplifies at once instead of through nested modulos.
    """
    return (size + multiple - 1) // multiple * multiple


def window_partition(x: Tensor, window_size: int) -> Tensor:
    """Cut a map whose sides are multiples of ``window_size`` into non-overlapping square windows.

    (B, H, W, C) -> (B, nW, N, C) with nW = (H / w) * (W / w) windows in row-major order and N = w * w tokens per
    window, also in row-major order. Always a copy (an explicit one, not a reshape that copies only when it must:
    an exported graph would keep that decision for one size).
    """
    B, H, W, C = x.shape
    w = window_size
    x = x.view(B, H // w, w, W // w, w, C)  # (B, H/w, w, W/w, w, C)
    x = x.permute(0, 1, 3, 2, 4, 5).clone(memory_format=torch.contiguous_format)  # (B, H/w, W/w, w, w, C)
    return x.view(B, -1, w * w, C)  # (B, nW, N, C)


def window_reverse(windows: Tensor, window_size: int, height: int, width: int) -> Tensor:
    """Inverse of :func:`window_partition`: (B, nW, N, C) -> (B, H, W, C) with H = ``height``, W = ``width``."""
    B, _, _, C = windows.shape
    w = window_size
    x = windows.view(B, height // w, width // w, w, w, C)  # (B, H/w, W/w, w, w, C)
    x = x.permute(0, 1, 3, 2, 4, 5).clone(memory_format=torch.contiguous_format)  # (B, H/w, w, W/w, w, C)
    return x.view(B, height, width, C)  # (B, H, W, C)


def relative_position_index(window_size: int) -> Tensor:
    """Row of the bias table used by each (query, key) token pair of a window.

    Returns a long tensor (N, N), N = w * w: for tokens at (y1, x1) and (y2, x2) the entry is
    (y1 - y2 + w - 1) * (2w - 1) + (x1 - x2 + w - 1), an index into a table of (2w - 1)^2 rows.
    """
    w = window_size
    ys, xs = torch.meshgrid(torch.arange(w), torch.arange(w), indexing="ij")  # (w, w) each
    coords = torch.stack((ys.flatten(), xs.flatten()))  # (2, N)
    delta = coords[:, :, None] - coords[:, None, :] + (w - 1)  # (2, N, N), each entry in [0, 2w - 2]
    return delta[0] * (2 * w - 1) + delta[1]  # (N, N)


def shifted_window_mask(
    height: int, width: int, window_size: int, shift_size: int, *, device: torch.device, dtype: torch.dtype
) -> Tensor:
    """Additive attention mask for windows cut from a map rolled up and left by ``shift_size``.

    After the roll, the last window row and column hold tokens from up to three separate regions per axis (the map's
    interior, its last ``window - shift`` rows or columns, and the ``shift`` rows or columns that wrapped around).
    Tokens of different regions must not attend to each other: such pairs get -100, the rest 0.

    ``height`` and ``width`` are the padded map size (multiples of the window). Returns (nW, N, N).
    """

    def regions(size: int) -> Tensor:
        index = torch.arange(size, device=device)
        return (index >= size - window_size).long() + (index >= size - shift_size).long()  # (size,) in {0, 1, 2}

    region = regions(height)[:, None] * 3 + regions(width)[None, :]  # (H, W)
    region = window_partition(region[None, :, :, None], window_size)[0, :, :, 0]  # (nW, N)
    different = region[:, :, None] != region[:, None, :]  # (nW, N, N)
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, -100.0)


def window_gather_indices(
    height: int, width: int, window_size: int, shift_size: int, *, device: torch.device
) -> tuple[Tensor, Tensor]:
    """Indices that cut a map into (shifted) windows and put it back, each as one gather.

    Equivalent to zero-padding the (H, W) map right and bottom to multiples of the window (Hp, Wp), rolling it up and
    left by ``shift_size``, then :func:`window_partition`; and back: :func:`window_reverse`, the opposite roll, cropping.

    Returns ``to_windows`` (nW * N,): the map token (row-major, in [0, H*W]) that each window token reads, H*W standing
    for a zero token (padding); and ``from_windows`` (H * W,): the window token (in [0, nW*N)) holding each map token.
    """
    w, s = window_size, shift_size
    padded_h, padded_w = height + (-height % w), width + (-width % w)
    # (row, column) of the padded map seen by each window token, windows and tokens row-major
    rows = (torch.arange(padded_h, device=device) + s) % padded_h  # (Hp,) rolled row -> padded row
    cols = (torch.arange(padded_w, device=device) + s) % padded_w  # (Wp,)
    rows = rows.view(padded_h // w, 1, w, 1)  # (Hp/w, 1, w, 1): window row, token row
    cols = cols.view(1, padded_w // w, 1, w)  # (1, Wp/w, 1, w): window column, token column
    inside = (rows < height) & (cols < width)  # (Hp/w, Wp/w, w, w)
    to_windows = torch.where(inside, rows * width + cols, height * width).flatten()  # (nW * N,)
    # map token (r, c) sits at rolled position (i, j) = ((r - s) mod Hp, (c - s) mod Wp): window (i // w, j // w),
    # token (i mod w, j mod w)
    i = ((torch.arange(height, device=device) - s) % padded_h)[:, None]  # (H, 1)
    j = ((torch.arange(width, device=device) - s) % padded_w)[None, :]  # (1, W)
    from_windows = ((i // w) * (padded_w // w) + j // w) * (w * w) + (i % w) * w + j % w  # (H, W)
    return to_windows, from_windows.flatten()  # (nW * N,), (H * W,)


class WindowLayout(NamedTuple):
    """How a stage's blocks of one shift cut their map into windows; computed once per stage and map size."""

    to_windows: Tensor | None
    """(nW * N,) map token read by each window token, H*W for padding (see :func:`window_gather_indices`); None
    off the fast paths, which pad, roll and partition instead."""
    from_windows: Tensor | None
    """(H * W,) window token holding each map token; None off the fast paths."""
    shift_mask: Tensor | None
    """(nW, N, N) additive mask of shifted windows, None without shift."""


QKV_BEFORE_WINDOWS = 1.2  # (window tokens) / (map tokens) from which a block computes q, k, v before windowing
WINDOW_SLAB_TOKENS = 4096  # window tokens per slab of the attention in CPU inference (see modeling/chunked.py)


def _gather_tokens(tokens: Tensor, index: Tensor) -> Tensor:
    """tokens (B, T, C), index (I,) into T -> (B, I, C): ``tokens[:, index]`` as one row gather over the whole batch."""
    B, T, C = tokens.shape
    index = (index[None] + torch.arange(B, device=index.device)[:, None] * T).flatten()  # (B*I,)
    return tokens.reshape(B * T, C).index_select(0, index).view(B, -1, C)


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a residual branch for a random subset of samples, rescaling the rest."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        if self.drop_prob == 0.0 or not self.training:
            return x
        keep_prob = 1.0 - self.drop_prob
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep_prob)  # (B, 1, ..., 1)
        return x * keep / keep_prob

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class PatchEmbeddings(nn.Module):
    """Non-overlapping patches projected by a strided convolution."""

    def __init__(self, num_channels: int, embed_dim: int, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.projection = nn.Conv2d(num_channels, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, C, ceil(H / p), ceil(W / p)); the image is zero-padded right and bottom first."""
        _, _, H, W = pixel_values.shape
        p = self.patch_size
        pixel_values = F.pad(pixel_values, (0, round_up(W, p) - W, 0, round_up(H, p) - H))  # (B, 3, H', W')
        return self.projection(pixel_values)


class Embeddings(nn.Module):
    """Patch embedding followed by a LayerNorm (the stem of the backbone)."""

    def __init__(self, num_channels: int, embed_dim: int, patch_size: int, dropout: float) -> None:
        super().__init__()
        self.patch_embeddings = PatchEmbeddings(num_channels, embed_dim, patch_size)
        self.norm = nn.LayerNorm(embed_dim)  # default eps, as in the reference (not layer_norm_eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, pixel_values: Tensor) -> Tensor:
        """(B, 3, H, W) -> (B, H/p, W/p, C)."""
        x = self.patch_embeddings(pixel_values).permute(0, 2, 3, 1)  # (B, H/p, W/p, C)
        return self.dropout(self.norm(x))


class DenseOutput(nn.Module):
    """A Linear layer followed by an optional activation and dropout; named ``dense`` as in the checkpoints."""

    def __init__(
        self, in_features: int, out_features: int, *, activation: str | None = None, dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.dense = nn.Linear(in_features, out_features)
        self.activation = ACTIVATIONS[activation]() if activation is not None else nn.Identity()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.dense(x)
        if isinstance(self.activation, nn.GELU):  # in place in inference: no second (tokens, 4C) buffer
            return self.dropout(gelu_into(hidden, self.activation.approximate))
        return self.dropout(self.activation(hidden))


class WindowSelfAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned bias per relative position and head."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, *, qkv_bias: bool, attention_dropout: float
    ) -> None:
        super().__init__()
        if dim % num_heads != 0:
            raise ValueError(f"channels ({dim}) must be divisible by the number of heads ({num_heads})")
        self.num_heads = num_heads
        self.window_size = window_size
        self.attention_dropout = attention_dropout
        self.query = nn.Linear(dim, dim, bias=qkv_bias)
        self.key = nn.Linear(dim, dim, bias=qkv_bias)
        self.value = nn.Linear(dim, dim, bias=qkv_bias)
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Derived from the window size alone: rebuilt here, never saved or loaded.
        self.register_buffer("relative_position_index", relative_position_index(window_size), persistent=False)

    def relative_position_bias(self) -> Tensor:
        """The bias added to the attention logits of every window: (nh, N, N)."""
        N = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.flatten()]  # (N * N, nh)
        return bias.view(N, N, self.num_heads).permute(2, 0, 1)  # (nh, N, N)

    def qkv(self, tokens: Tensor) -> Tensor:
        """(..., C) -> (..., 3C): query, key and value from one matrix product with the three checkpoint matrices
        stacked (they stay separate parameters)."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])  # (3C, C)
        bias = None if self.query.bias is None else torch.cat([self.query.bias, self.key.bias, self.value.bias])
        return F.linear(tokens, weight, bias)

    def forward(self, windows: Tensor, shift_mask: Tensor | None = None) -> Tensor:
        """Attend within each window: (B, nW, N, C) -> (B, nW, N, C), before the output projection.

        ``shift_mask`` is None or the additive (nW, N, N) mask of shifted windows.
        """
        return self.attend(self.qkv(windows), shift_mask)

    def attend(self, qkv: Tensor, shift_mask: Tensor | None = None) -> Tensor:
        """:meth:`forward` from the windows' query, key and value: (B, nW, N, 3C) -> (B, nW, N, C).

        Windows are the batch axis of the attention and heads its head axis, so q, k and v are strided views of the
        product and the output is already in token-major order: no copies around the kernel.
        """
        B, nW, N, C3 = qkv.shape
        C, nh = C3 // 3, self.num_heads
        qkv = qkv.reshape(B * nW, N, 3, nh, C // nh)  # (B*nW, N, 3, nh, hs)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B*nW, nh, N, hs)
        mask = self.relative_position_bias()[None]  # (1, nh, N, N), the same for every window
        if shift_mask is not None:
            mask = mask + shift_mask[:, None]  # (nW, nh, N, N)
            if not use_fast_paths() or B > 1:  # one copy per image (an exported graph copies for any B)
                mask = mask.repeat(B, 1, 1, 1)  # (B*nW, nh, N, N)
        dropout = self.attention_dropout if self.training else 0.0
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.to(q.dtype), dropout_p=dropout)  # (B*nW,nh,N,hs)
        return out.transpose(1, 2).reshape(B, nW, N, C)  # (B, nW, N, C)


class Attention(nn.Module):
    """Window self-attention (``self``) followed by its output projection (``output``), as the checkpoints name them."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, *, qkv_bias: bool, attention_dropout: float, dropout: float
    ) -> None:
        super().__init__()
        self.self = WindowSelfAttention(
            dim, num_heads, window_size, qkv_bias=qkv_bias, attention_dropout=attention_dropout
        )
        self.output = DenseOutput(dim, dim, dropout=dropout)

    def forward(self, windows: Tensor, shift_mask: Tensor | None = None) -> Tensor:
        """(B, nW, N, C) -> (B, nW, N, C)."""
        return self.output(self.self(windows, shift_mask))


class SwinBlock(nn.Module):
    """Pre-norm transformer block on (shifted) windows: x + attention(LN(x)), then x + MLP(LN(x)).

    The map is zero-padded right and bottom to a multiple of the window (after the first LayerNorm) and cropped back
    after the attention. Window and shift are used as given for every map size, however small: the reference backbone
    runs its blocks with ``always_partition=True``, which skips the clamping transformers' ``SwinModel`` applies when
    the map is not larger than the window, so tiny maps are padded up to one full (possibly shifted) window.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        *,
        mlp_ratio: float,
        qkv_bias: bool,
        hidden_act: str,
        layer_norm_eps: float,
        drop_path: float,
        dropout: float,
        attention_dropout: float,
        qkv_before_windows: float = QKV_BEFORE_WINDOWS,
        window_slab_tokens: int = WINDOW_SLAB_TOKENS,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = shift_size
        # Fast-path thresholds, plain attributes so that tests can force either side.
        self.qkv_before_windows = qkv_before_windows
        self.window_slab_tokens = window_slab_tokens
        hidden_dim = int(dim * mlp_ratio)
        self.layernorm_before = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attention = Attention(
            dim, num_heads, window_size, qkv_bias=qkv_bias, attention_dropout=attention_dropout, dropout=dropout
        )
        self.layernorm_after = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.intermediate = DenseOutput(dim, hidden_dim, activation=hidden_act)
        self.output = DenseOutput(hidden_dim, dim, dropout=dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: Tensor, windows: WindowLayout) -> Tensor:
        """(B, H, W, C) -> (B, H, W, C). ``windows``: the gathers and mask of this block's window layout."""
        B, H, W, C = x.shape
        y = self.layernorm_before(x)  # (B, H, W, C)
        if use_fast_paths():
            y = self._attend_gathered(y, windows)  # (B, H*W, C)
        else:
            y = self._attend_partitioned(y, windows.shift_mask)  # (B, H*W, C)
        y = self.attention.output(y).view(B, H, W, C)  # output projection of the map's tokens only
        x = add_into(self.drop_path(y), x)  # (B, H, W, C)

        # Stochastic depth on both residual branches, as in the original Swin that Mask2Former trained with
        # (transformers' Swin applies it to the attention branch only; the two agree in eval mode).
        return add_into(self.drop_path(by_slabs(self._feed_forward, x)), x)

    def _attend_partitioned(self, y: Tensor, shift_mask: Tensor | None) -> Tensor:
        """The window attention as written in the Swin paper: pad the map to multiples of the window, roll it by the
        shift, cut it into windows, attend, and undo the three. (B, H, W, C) -> (B, H*W, C), before the output
        projection. The plain path (:mod:`~mask2former.modeling.fast_paths`): every step is one tensor operation on
        symbolic sizes, so an exported graph takes any image size."""
        B, H, W, C = y.shape
        w, s = self.window_size, self.shift_size
        y = F.pad(y, (0, 0, 0, round_up(W, w) - W, 0, round_up(H, w) - H))  # (B, Hp, Wp, C), zeros right, bottom
        padded_h, padded_w = y.shape[1], y.shape[2]
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        qkv = self.attention.self.qkv(window_partition(y, w))  # (B, nW, N, 3C)
        y = window_reverse(self.attention.self.attend(qkv, shift_mask), w, padded_h, padded_w)  # (B, Hp, Wp, C)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        # cropped by a gather of the map's tokens: a fresh (B, H*W, C) whatever the padding
        keep = (torch.arange(H, device=y.device)[:, None] * padded_w + torch.arange(W, device=y.device)).flatten()
        return y.view(B, padded_h * padded_w, C).index_select(1, keep)  # (B, H*W, C)

    def _attend_gathered(self, y: Tensor, windows: WindowLayout) -> Tensor:
        """:meth:`_attend_partitioned` on the fast path: (B, H, W, C) -> (B, H*W, C).

        Padding, roll and partition are one gather of the map's tokens into window order (and one gather back);
        heavily padded maps project q, k, v before the gather; CPU inference attends a slab of windows at a time.
        """
        B, H, W, C = y.shape
        N = self.window_size**2
        y = y.reshape(B, H * W, C)  # (B, H*W, C)
        attention = self.attention.self
        window_tokens = windows.to_windows.numel()  # nW * N, H*W of them from the map and the rest padding
        if window_tokens >= self.qkv_before_windows * H * W:
            # Much padding (small maps, late stages): q, k, v of the map's tokens only, and padding takes those of a
            # zero token (the bias), placed after the map's; gathering 3C channels costs less than the products saved.
            qkv = attention.qkv(y)  # (B, H*W, 3C)
            zero = qkv.new_zeros(B, 1, 3 * C) if attention.query.bias is None else attention.qkv(y.new_zeros(B, 1, C))
            source, project = torch.cat([qkv, zero], dim=1), False  # (B, H*W + 1, 3C)
        else:
            if window_tokens != H * W:  # padding reads a zero token placed after the map's tokens
                y = torch.cat([y, y.new_zeros(B, 1, C)], dim=1)  # (B, H*W + 1, C)
            source, project = y, True

        def attend(first: int, last: int) -> Tensor:
            """Windows [first, last) of every image: (B, last - first, N, C)."""
            qkv = _gather_tokens(source, windows.to_windows[first * N:last * N])  # (B, (last-first)*N, C or 3C)
            qkv = attention.qkv(qkv) if project else qkv  # (B, (last-first)*N, 3C)
            mask = None if windows.shift_mask is None else windows.shift_mask[first:last]
            return attention.attend(qkv.view(B, -1, N, 3 * C), mask)

        num_windows = window_tokens // N
        edges = slab_edges(num_windows, max(1, self.window_slab_tokens // (B * N))) if slabs_pay(y) else [0, num_windows]
        if len(edges) == 2:
            y = attend(0, num_windows)  # (B, nW, N, C)
        else:  # CPU inference: windows a slab at a time, so q, k, v and the attention's mask stay small
            y = y.new_empty(B, num_windows, N, C)
            for first, last in zip(edges, edges[1:]):
                y[:, first:last] = attend(first, last)
        return _gather_tokens(y.view(B, -1, C), windows.from_windows)  # (B, H*W, C): back to the map, cropped

    def _feed_forward(self, tokens: Tensor) -> Tensor:
        """(..., C) -> (..., C): LayerNorm, then the MLP through (..., mlp_ratio * C), token by token."""
        return self.output(self.intermediate(self.layernorm_after(tokens)))


class PatchMerging(nn.Module):
    """2x2 neighbourhoods concatenated (4C), normalised and projected to 2C: halves the resolution."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)  # default eps, as in the reference
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """(B, H, W, C) -> (B, ceil(H / 2), ceil(W / 2), 2C); odd sides are zero-padded right and bottom."""
        _, H, W, _ = x.shape
        x = F.pad(x, (0, 0, 0, round_up(W, 2) - W, 0, round_up(H, 2) - H))  # (B, H', W', C), even sides
        # order of the concatenation: (row, col) = (0, 0), (1, 0), (0, 1), (1, 1)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x))  # (B, H'/2, W'/2, 2C)


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then (except in the last stage) a patch merging.

    With ``gradient_checkpointing`` each block is recomputed in backward instead of keeping its activations.
    """

    gradient_checkpointing: bool = False

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        *,
        mlp_ratio: float,
        qkv_bias: bool,
        hidden_act: str,
        layer_norm_eps: float,
        drop_paths: Sequence[float],
        dropout: float,
        attention_dropout: float,
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift_size = window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(
                dim,
                num_heads,
                window_size,
                shift_size=0 if i % 2 == 0 else self.shift_size,
                mlp_ratio=mlp_ratio,
                qkv_bias=qkv_bias,
                hidden_act=hidden_act,
                layer_norm_eps=layer_norm_eps,
                drop_path=drop_paths[i],
                dropout=dropout,
                attention_dropout=attention_dropout,
            )
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """(B, H, W, C) -> the stage's map (B, H, W, C) before merging, and the merged map (B, H/2, W/2, 2C) or None."""
        _, H, W, _ = x.shape
        w = self.window_size
        layouts = {}  # computed once per shift, shared by the blocks of that shift
        for shift in sorted({block.shift_size for block in self.blocks}):
            shift_mask = None
            if shift > 0:
                shift_mask = shifted_window_mask(
                    round_up(H, w), round_up(W, w), w, shift, device=x.device, dtype=x.dtype
                )  # (nW, N, N)
            gathers = window_gather_indices(H, W, w, shift, device=x.device) if use_fast_paths() else (None, None)
            layouts[shift] = WindowLayout(*gathers, shift_mask)
        for block in self.blocks:
            x = call_layer(block, self.gradient_checkpointing, x, layouts[block.shift_size])
        return x, (self.downsample(x) if self.downsample is not None else None)
