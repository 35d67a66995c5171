"""2-D sine position embedding shared by the pixel decoder and the transformer decoder."""

from __future__ import annotations

import math

import torch


def sine_position_embedding(
    height: int,
    width: int,
    num_features: int,
    *,
    temperature: float = 10000.0,
    scale: float = 2 * math.pi,
    eps: float = 1e-6,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """Normalised sine/cosine embedding of pixel positions, without a padding mask.

    Row and column indices run 1..H and 1..W, are divided by their last value (plus ``eps``) and scaled by ``scale``
    (no -0.5 offset), then encoded with ``num_features`` interleaved sin/cos frequencies per axis.

    Returns a tensor of shape (1, 2 * num_features, H, W): the y features first, then the x features.
    """
    y = torch.arange(1, height + 1, device=device, dtype=dtype)  # (H,)
    x = torch.arange(1, width + 1, device=device, dtype=dtype)  # (W,)
    y = y / (y[-1:] + eps) * scale
    x = x / (x[-1:] + eps) * scale

    index = torch.arange(num_features, device=device, dtype=torch.int64).to(dtype)  # (F,)
    freq = temperature ** (2 * torch.div(index, 2, rounding_mode="floor") / num_features)  # (F,)

    pos_y = y[:, None] / freq  # (H, F)
    pos_x = x[:, None] / freq  # (W, F)
    # even features take sin, odd features cos, interleaved: (N, F/2, 2) -> (N, F)
    pos_y = torch.stack((pos_y[:, 0::2].sin(), pos_y[:, 1::2].cos()), dim=2).flatten(1)
    pos_x = torch.stack((pos_x[:, 0::2].sin(), pos_x[:, 1::2].cos()), dim=2).flatten(1)

    pos_y = pos_y[:, None, :].expand(height, width, num_features)  # (H, W, F)
    pos_x = pos_x[None, :, :].expand(height, width, num_features)  # (H, W, F)
    return torch.cat((pos_y, pos_x), dim=2).permute(2, 0, 1).unsqueeze(0)  # (1, 2F, H, W)
