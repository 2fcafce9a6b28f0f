"""Plain 2-D blocks shared by HOFFR and JFFRA (FMA-Net's own blocks are in ``blocks``).

All take and return ``[N, C, H, W]``.
"""

from __future__ import annotations

import torch
import torch.nn as nn
from torch import Tensor

from .blocks import lrelu

__all__ = ["conv3x3", "ResidualBlock", "ChannelAttention", "RCAB", "Upsampler"]


def conv3x3(c_in: int, c_out: int, *, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)


class ResidualBlock(nn.Module):
    """conv-ReLU-conv plus the input (EDSR-style, no batch norm)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(dim, dim), nn.ReLU(inplace=True), conv3x3(dim, dim))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention of RCAN (Zhang et al., ECCV 2018)."""

    def __init__(self, dim: int, reduction: int) -> None:
        super().__init__()
        mid = max(1, dim // reduction)
        squeeze = nn.Conv2d(dim, mid, 1)
        # The squeeze sees the frame's mean features, which barely differ between inputs, so a
        # unit whose random weights make it negative at the start is negative for every input:
        # its ReLU never passes a gradient and it never learns (with 4 units, 1 gate in 16 is
        # wholly dead that way). Small weights and a positive bias start every unit alive.
        with torch.no_grad():
            squeeze.weight.mul_(0.1)
            squeeze.bias.fill_(0.1)  # type: ignore[union-attr]  # Conv2d's bias: set (bias=True)
        self.gate = nn.Sequential(nn.AdaptiveAvgPool2d(1), squeeze, nn.ReLU(inplace=True),
                                  nn.Conv2d(mid, dim, 1), nn.Sigmoid())

    def forward(self, x: Tensor) -> Tensor:
        return x * self.gate(x)


class RCAB(nn.Module):
    """Residual channel attention block: conv-ReLU-conv, channel attention, plus the input."""

    def __init__(self, dim: int, reduction: int = 16) -> None:
        super().__init__()
        self.body = nn.Sequential(conv3x3(dim, dim), nn.ReLU(inplace=True), conv3x3(dim, dim),
                                  ChannelAttention(dim, reduction))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Upsampler(nn.Sequential):
    """x4 by two (conv, pixel shuffle x2, LeakyReLU) steps, then a conv to ``out_channels``."""

    def __init__(self, dim: int, out_channels: int = 3) -> None:
        super().__init__(conv3x3(dim, 4 * dim), nn.PixelShuffle(2), lrelu(),
                         conv3x3(dim, 4 * dim), nn.PixelShuffle(2), lrelu(),
                         conv3x3(dim, out_channels))
