"""Pictures for people: flow fields, error maps and kernel mosaics as ``uint8 [H, W, 3]`` arrays.

Pure functions of arrays, so models (their diagnostic maps) and reports share them.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

__all__ = ["colorize_flow", "error_map", "kernel_mosaic", "detail_crop", "ERROR_RANGE"]

ERROR_RANGE = 0.2  # |output - target| mapped to the full colour scale; fixed so maps compare across methods


def colorize_flow(flow: np.ndarray, max_norm: float | None = None) -> np.ndarray:
    """``[2, H, W]`` flow -> ``[H, W, 3]`` uint8: hue is direction, saturation is magnitude (Middlebury style)."""
    import cv2

    u, v = flow[0].astype(np.float32), flow[1].astype(np.float32)
    mag, ang = cv2.cartToPolar(u, v, angleInDegrees=True)
    top = max_norm if max_norm else max(float(mag.max()), 1e-6)
    hsv = np.zeros((*u.shape, 3), np.uint8)
    hsv[..., 0] = (ang / 2).astype(np.uint8)
    hsv[..., 1] = np.clip(mag / top * 255, 0, 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def error_map(output: Tensor, target: Tensor) -> np.ndarray:
    """Per-pixel mean absolute error as an inferno-coloured ``[H, W, 3]`` uint8 (black = exact)."""
    import cv2

    err = (output.float() - target.float()).abs().mean(0).clamp(0, ERROR_RANGE) / ERROR_RANGE
    grey = (err.numpy() * 255).round().astype(np.uint8)
    return cv2.applyColorMap(grey, cv2.COLORMAP_INFERNO)[:, :, ::-1].copy()


def kernel_mosaic(kernels: np.ndarray, cell: int = 12, gap: int = 2) -> np.ndarray:
    """``[R, C, k, k]`` kernels -> one ``uint8 RGB`` picture; red positive, blue negative, white zero.

    Each kernel is scaled by the largest magnitude in the whole mosaic, so rows compare.
    """
    r, c, k, _ = kernels.shape
    top = max(float(np.abs(kernels).max()), 1e-12)
    size = k * cell
    out = np.full((r * (size + gap) + gap, c * (size + gap) + gap, 3), 96, np.uint8)
    for i in range(r):
        for j in range(c):
            a = np.clip(kernels[i, j] / top, -1, 1)
            rgb = np.empty((k, k, 3))
            rgb[..., 0] = np.where(a < 0, 1 + a, 1.0)
            rgb[..., 1] = 1 - np.abs(a)
            rgb[..., 2] = np.where(a > 0, 1 - a, 1.0)
            big = np.kron((rgb * 255).round().astype(np.uint8), np.ones((cell, cell, 1), np.uint8))
            y, x = gap + i * (size + gap), gap + j * (size + gap)
            out[y:y + size, x:x + size] = big
    return out


def detail_crop(target: Tensor, size: int) -> tuple[int, int, int]:
    """``(top, left, size)`` of the square with the most gradient energy in the target: where blur shows."""
    g = target.float().mean(0)
    h, w = g.shape
    size = max(8, min(size, h, w))
    energy = (g[1:, :-1] - g[:-1, :-1]).abs() + (g[:-1, 1:] - g[:-1, :-1]).abs()
    pooled = torch.nn.functional.avg_pool2d(energy[None, None], size - 1, stride=max(1, size // 4))[0, 0]
    idx = int(pooled.argmax())
    stride = max(1, size // 4)
    top, left = (idx // pooled.shape[1]) * stride, (idx % pooled.shape[1]) * stride
    return min(top, h - size), min(left, w - size), size
