"""MATLAB-compatible bicubic resizing (``imresize(x, scale, 'bicubic')``).

REDS and GoPro LR frames were made with MATLAB's imresize: Keys cubic with a = -0.5,
antialiased when shrinking (the kernel is stretched by 1/scale), symmetric padding at the
borders. This is that, as two matrix products per image so it runs on any device.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["imresize", "cubic", "resample"]


def cubic(x: Tensor) -> Tensor:
    """Keys' cubic kernel with a = -0.5."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    return ((1.5 * ax3 - 2.5 * ax2 + 1) * (ax <= 1)
            + (-0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2) * ((ax > 1) & (ax <= 2)))


@lru_cache(maxsize=64)
def _weights(in_len: int, out_len: int, scale: float) -> Tensor:
    """``[out_len, in_len]`` float64 matrix: out = W @ in along one axis."""
    width = 4.0
    antialias = scale < 1
    kernel_width = width / scale if antialias else width
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output pixel centre in input coordinates (1-based)
    left = torch.floor(u - kernel_width / 2)
    taps = int(math.ceil(kernel_width)) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None, :]  # 1-based input indices
    dist = u[:, None] - idx
    w = scale * cubic(dist * scale) if antialias else cubic(dist)
    w = w / w.sum(dim=1, keepdim=True)
    # Symmetric (mirror) padding: index 0 -> 1, -1 -> 2, in_len + 1 -> in_len, ...
    i0 = idx.long() - 1
    period = 2 * in_len
    i0 = torch.remainder(i0, period)
    i0 = torch.where(i0 >= in_len, period - 1 - i0, i0)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, i0, w)
    return mat


def imresize(x: Tensor, scale: float | None = None, size: tuple[int, int] | None = None) -> Tensor:
    """Resize the last two dims of ``x [..., H, W]`` like MATLAB's bicubic imresize.

    Args:
        scale: e.g. 0.25 for x4 downsampling (output size ceil(H * scale)).
        size: (H_out, W_out) instead of scale; the scale per axis is then out/in.
    Returns:
        ``[..., H_out, W_out]`` in x's dtype (not clipped: cubic can overshoot [0, 1]).
    """
    h, w = x.shape[-2:]
    if size is None:
        if scale is None:
            raise ValueError("imresize: give scale or size")
        size = (int(math.ceil(h * scale)), int(math.ceil(w * scale)))
        sy = sx = float(scale)
    else:
        sy, sx = size[0] / h, size[1] / w
    wy = _weights(h, size[0], sy).to(x.device, torch.float32 if x.dtype != torch.float64 else torch.float64)
    wx = _weights(w, size[1], sx).to(wy.device, wy.dtype)
    y = torch.matmul(wy, torch.matmul(x.to(wy.dtype), wx.t()))
    return y.to(x.dtype) if x.is_floating_point() else y


def resample(img: Tensor, size: tuple[int, int]) -> Tensor:
    """``img [..., C, H, W]`` to ``size`` (height, width) for display, not for degradation:
    area averaging when both sides shrink (each output pixel the mean of the input pixels it
    covers: no ringing, no aliasing), antialiased bicubic otherwise."""
    import torch.nn.functional as F

    h, w = img.shape[-2:]
    if (h, w) == tuple(size):
        return img
    flat = img.reshape(-1, *img.shape[-3:])
    if size[0] <= h and size[1] <= w:
        out = F.interpolate(flat, size=size, mode="area")
    else:
        out = F.interpolate(flat, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
    return out.reshape(*img.shape[:-2], *size)
