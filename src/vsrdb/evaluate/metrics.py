"""The paper's metrics: RGB PSNR on 8-bit rounded frames, MATLAB-equivalent SSIM, tOF.

PSNR: outputs clipped to [0, 1], times 255, rounded; no border crop.
SSIM: per channel, 11x11 Gaussian window (sigma 1.5), 'valid' region, C1 = (0.01*255)^2,
C2 = (0.03*255)^2, on 0-255 values, mean over pixels then channels.
tOF: Farneback flow (pyr_scale 0.5, levels 3, winsize 15, iterations 3, poly_n 5, poly_sigma
1.2, flags 0) between consecutive grey frames of the target and of the output; the flow fields
are cropped to the central region whose height and width are the largest multiples of 32 that
leave at least 8 pixels on each side; mean over pixels of the norm of the flow difference.
Zero for identical sequences; lower is better.

Other papers score the luma channel (MATLAB's rgb2ycbcr Y) with a border crop: ``to_y`` and
``crop_border`` give that variant; the defaults are the paper's.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["quantize", "psnr", "ssim", "to_y", "crop_border", "to_grey_u8", "farneback", "tof_crop",
           "flow_difference", "tof", "motion_magnitude"]

FARNEBACK = dict(pyr_scale=0.5, levels=3, winsize=15, iterations=3, poly_n=5, poly_sigma=1.2, flags=0)


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


def to_y(img: Tensor) -> Tensor:
    """``[3, H, W]`` RGB in [0, 1] -> ``[1, H, W]`` luma in [0, 1], as MATLAB's rgb2ycbcr (BT.601, 16..235).

    The input is 8-bit rounded first, as the other papers score stored frames.
    """
    q = quantize(img)
    y = 16.0 + (65.481 * q[0] + 128.553 * q[1] + 24.966 * q[2]) / 255.0
    return (y / 255.0)[None]


def crop_border(img: Tensor, border: int) -> Tensor:
    """Drop ``border`` pixels on each side of a ``[C, H, W]`` frame (0: unchanged)."""
    return img[..., border:img.shape[-2] - border, border:img.shape[-1] - border] if border else img


def to_grey_u8(img: Tensor) -> np.ndarray:
    """``[3, H, W]`` in [0, 1] -> ``[H, W]`` uint8 grey (OpenCV's RGB2GRAY of the 8-bit frame)."""
    import cv2

    rgb = quantize(img).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2GRAY)


def farneback(prev: np.ndarray, cur: np.ndarray) -> np.ndarray:
    """Farneback flow ``[H, W, 2]`` (float32, pixels) from grey frame ``prev`` to ``cur``, the paper's settings."""
    import cv2

    return cv2.calcOpticalFlowFarneback(prev, cur, None, **FARNEBACK)  # type: ignore[call-overload]  # cv2's stubs


def tof_crop(height: int, width: int) -> tuple[slice, slice]:
    """The centred tOF region: each side the largest multiple of 32 leaving >= 8 pixels per border.

    Frames too small for that (< 48 pixels) are used whole, since a crop would leave nothing.
    """
    def side(n: int) -> slice:
        m = (n - 16) // 32 * 32
        if m <= 0:
            return slice(0, n)
        start = (n - m) // 2
        return slice(start, start + m)

    return side(height), side(width)


def flow_difference(flow_pred: np.ndarray, flow_gt: np.ndarray) -> float:
    """Mean over the tOF crop of ``|flow_pred - flow_gt|_2`` for ``[H, W, 2]`` flows."""
    ys, xs = tof_crop(*flow_gt.shape[:2])
    diff = flow_pred[ys, xs].astype(np.float64) - flow_gt[ys, xs].astype(np.float64)
    return float(np.sqrt((diff ** 2).sum(-1)).mean())


def tof(pred: list[Tensor], target: list[Tensor]) -> float:
    """tOF of two equal-length sequences of ``[3, H, W]`` frames, averaged over consecutive pairs."""
    if len(pred) != len(target) or len(pred) < 2:
        raise ValueError(f"tOF needs two sequences of equal length >= 2, got {len(pred)} and {len(target)}")
    gp, gt = [to_grey_u8(f) for f in pred], [to_grey_u8(f) for f in target]
    return float(np.mean([flow_difference(farneback(gp[i - 1], gp[i]), farneback(gt[i - 1], gt[i]))
                          for i in range(1, len(pred))]))


def motion_magnitude(flow: np.ndarray) -> float:
    """Average absolute flow magnitude (pixels) of a ``[H, W, 2]`` flow: the paper's Table 3 binning key."""
    return float(np.sqrt((flow.astype(np.float64) ** 2).sum(-1)).mean())
