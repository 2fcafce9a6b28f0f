"""Multi-head self-attention inside non-overlapping square windows (JFFRA's feature refinement)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ["window_attention"]


def window_attention(q: Tensor, k: Tensor, v: Tensor, *, window: int, heads: int) -> Tensor:
    """Self-attention among the pixels of each ``window`` x ``window`` tile, per head.

    Maps whose sides are not multiples of ``window`` are padded (replicate) and the result
    cropped, so any frame size works; padded pixels take part as keys only at the border.

    Args:
        q, k, v: ``[N, D, H, W]`` with D divisible by ``heads``.
    Returns:
        ``[N, D, H, W]``: for each pixel, the softmax(q k^T / sqrt(D/heads))-weighted sum of
        the values in its window.
    """
    n, d, h, w = q.shape
    if d % heads:
        raise ValueError(f"window_attention: {d} channels do not split into {heads} heads")
    ph, pw = -h % window, -w % window
    if ph or pw:
        q, k, v = (F.pad(z, (0, pw, 0, ph), mode="replicate") for z in (q, k, v))
    hh, ww = h + ph, w + pw
    ny, nx = hh // window, ww // window

    def tokens(z: Tensor) -> Tensor:  # [N, D, hh, ww] -> [N*ny*nx, heads, window^2, D/heads]
        z = z.reshape(n, heads, d // heads, ny, window, nx, window)
        return z.permute(0, 3, 5, 1, 4, 6, 2).reshape(n * ny * nx, heads, window * window, d // heads)

    out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))
    out = out.reshape(n, ny, nx, heads, window, window, d // heads).permute(0, 3, 6, 1, 4, 2, 5)
    return out.reshape(n, d, hh, ww)[..., :h, :w]
