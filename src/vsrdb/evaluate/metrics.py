"""The paper's metrics: RGB PSNR on 8-bit rounded frames, MATLAB-equivalent SSIM.

PSNR: outputs clipped to [0, 1], times 255, rounded; no border crop.
SSIM: per channel, 11x11 Gaussian window (sigma 1.5), 'valid' region, C1 = (0.01*255)^2,
C2 = (0.03*255)^2, on 0-255 values, mean over pixels then channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["quantize", "psnr", "ssim"]


def quantize(img: Tensor) -> Tensor:
    """float [0, 1] -> float64 0..255 integers, as an 8-bit frame would be stored."""
    return img.detach().double().clamp(0, 1).mul(255).round()


def psnr(pred: Tensor, target: Tensor) -> float:
    """RGB PSNR in dB of ``[3, H, W]`` (or any equal shapes) frames in [0, 1], 8-bit rounded."""
    mse = (quantize(pred) - quantize(target)).pow(2).mean().item()
    return float("inf") if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def _gaussian(size: int = 11, sigma: float = 1.5) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(pred: Tensor, target: Tensor) -> float:
    """MATLAB-equivalent SSIM of ``[C, H, W]`` frames in [0, 1] (8-bit rounded), mean over channels."""
    x, y = quantize(pred), quantize(target)
    if x.dim() == 2:
        x, y = x[None], y[None]
    c = x.shape[0]
    win = _gaussian().to(x.device)[None, None].expand(c, 1, 11, 11)
    conv = lambda z: F.conv2d(z[None], win, groups=c)[0]  # noqa: E731 ('valid': no padding)
    mu_x, mu_y = conv(x), conv(y)
    sxx = conv(x * x) - mu_x ** 2
    syy = conv(y * y) - mu_y ** 2
    sxy = conv(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    smap = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x ** 2 + mu_y ** 2 + c1) * (sxx + syy + c2))
    return smap.mean(dim=(1, 2)).mean().item()
