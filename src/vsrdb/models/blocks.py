"""Building blocks of FMA-Net: RDB/RRDB, Restormer-style attention and feed-forward, FRMA.

Layout: sequences are frames-major ``[B, T, C, H, W]`` inside the model, so a "2D-per-frame"
convolution is a plain conv2d over ``B*T`` frames (about 3x faster on CPU than the
release's ``Conv3d`` with a ``(1, k, k)`` kernel). Parameters keep the release's 5-D shapes
so its checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops.warp import multi_flow_warp

__all__ = [
    "FrameConv",
    "lrelu",
    "DenseLayer",
    "RDB",
    "RRDB",
    "LayerNorm2d",
    "GuidedTransposedAttention",
    "GatedFeedForward",
    "MultiAttention",
    "FRMA",
    "seq_to_channels",
    "channels_to_seq",
]


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


class FrameConv(nn.Conv3d):
    """The same k x k 2D convolution applied to every frame of ``[B, T, C, H, W]``.

    A ``Conv3d`` with kernel ``(1, k, k)`` in the release; stored with that weight shape.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool) -> None:
        super().__init__(in_channels, out_channels, (1, kernel_size, kernel_size),
                         padding=(0, kernel_size // 2, kernel_size // 2), bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, T, Cin, H, W] -> [B, T, Cout, H, W]
        b, t = x.shape[:2]
        y = F.conv2d(x.flatten(0, 1), self.weight.squeeze(2), self.bias, padding=self.padding[1:])
        return y.unflatten(0, (b, t))


def seq_to_channels(x: Tensor) -> Tensor:
    """``[B, T, C, H, W]`` -> ``[B, C*T, H, W]`` with channel index c*T + t (the paper's r_4->3)."""
    b, t, c, h, w = x.shape
    return x.transpose(1, 2).reshape(b, c * t, h, w)


def channels_to_seq(x: Tensor, t: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, T, C/T, H, W]``, the inverse channel order of ``seq_to_channels``."""
    b, c, h, w = x.shape
    return x.reshape(b, c // t, t, h, w).transpose(1, 2)


class DenseLayer(nn.Module):
    """Per-frame conv + LeakyReLU whose output is concatenated after its input."""

    def __init__(self, in_channels: int, growth_rate: int, *, bias: bool) -> None:
        super().__init__()
        self.conv = FrameConv(in_channels, growth_rate, 3, bias=bias)
        self.act = lrelu()

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat((x, self.act(self.conv(x))), dim=2)


class RDB(nn.Module):
    """Residual dense block [Zhang et al. 2018] on ``[B, T, dim, H, W]``."""

    def __init__(self, dim: int, growth_rate: int, num_layers: int, *, bias: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DenseLayer(dim + i * growth_rate, growth_rate, bias=bias)
                                      for i in range(num_layers)])
        # The release gives this 1x1 fusion a bias whatever the bias flag says.
        self.fuse = FrameConv(dim + num_layers * growth_rate, dim, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(self.layers(x)) + x


class RRDB(nn.Module):
    """Chain of RDBs whose concatenated outputs are fused back to dim, plus the input."""

    def __init__(self, dim: int, growth_rate: int, num_layers: int, num_rdb: int, *, bias: bool) -> None:
        super().__init__()
        self.rdbs = nn.ModuleList([RDB(dim, growth_rate, num_layers, bias=bias) for _ in range(num_rdb)])
        self.fuse = FrameConv(dim * num_rdb, dim, 1, bias=bias)
        self.conv = FrameConv(dim, dim, 3, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        outs = []
        h = x
        for rdb in self.rdbs:
            h = rdb(h)
            outs.append(h)
        return self.conv(self.fuse(torch.cat(outs, dim=2))) + x


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at each pixel of ``[B, C, H, W]`` (Restormer's two types).

    ``with_bias``: (x - mean) / sqrt(var + eps) * w + b. Bias-free: x / sqrt(var + eps) * w,
    where x is not centred but the variance still is (Restormer's BiasFree_LayerNorm).
    """

    def __init__(self, dim: int, *, with_bias: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = x.permute(0, 2, 3, 1)
        if self.bias is not None:
            y = F.layer_norm(y, y.shape[-1:], self.weight, self.bias, self.eps)
        else:
            y = y * torch.rsqrt(y.var(dim=-1, keepdim=True, unbiased=False) + self.eps) * self.weight
        return y.permute(0, 3, 1, 2)


class GuidedTransposedAttention(nn.Module):
    """Restormer's MDTA with queries from a guide: the paper's CO and DA attention (Eq. 3).

    Attention is across channels (a C/heads x C/heads map per head), so its cost is linear
    in the number of pixels.

    Args (forward):
        x: ``[B, C, H, W]``, gives keys and values (the normalised warped feature).
        guide: ``[B, C, H, W]``, gives queries (F0_c for CO, k^D for DA).
    Returns:
        ``[B, C, H, W]``.
    """

    def __init__(self, dim: int, num_heads: int, *, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.kv_conv = nn.Conv2d(dim, 2 * dim, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor, guide: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q = self.q_dwconv(self.q(guide))
        k, v = self.kv_dwconv(self.kv_conv(x)).chunk(2, dim=1)
        q, k, v = (z.reshape(b, self.num_heads, c // self.num_heads, h * w) for z in (q, k, v))
        q = F.normalize(q, dim=-1)
        k = F.normalize(k, dim=-1)
        attn = torch.softmax((q @ k.transpose(-2, -1)) * self.temperature, dim=-1)
        return self.project_out((attn @ v).reshape(b, c, h, w))


class GatedFeedForward(nn.Module):
    """Restormer's GDFN: 1x1 up, depthwise 3x3, gelu(x1) * x2, 1x1 down. ``[B,C,H,W]``."""

    def __init__(self, dim: int, expansion: float, *, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class MultiAttention(nn.Module):
    """Fig. 4(b): CO attention + FFN, and in NetR also DA attention + FFN, pre-norm residuals.

    Args (forward):
        fw: ``[B, C, H, W]`` warped feature F_w.
        f0c: ``[B, C, H, W]`` centre initial feature F0_c (CO queries; not normalised).
        kd: ``[B, C, H, W]`` degradation feature k^D (DA queries), NetR only.
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion: float, *, bias: bool,
                 layernorm_bias: bool, degradation_aware: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim, with_bias=layernorm_bias)
        self.co_attn = GuidedTransposedAttention(dim, num_heads, bias=bias)
        self.norm2 = LayerNorm2d(dim, with_bias=layernorm_bias)
        self.ffn1 = GatedFeedForward(dim, ffn_expansion, bias=bias)
        self.degradation_aware = degradation_aware
        if degradation_aware:
            self.norm3 = LayerNorm2d(dim, with_bias=layernorm_bias)
            self.da_attn = GuidedTransposedAttention(dim, num_heads, bias=bias)
            self.norm4 = LayerNorm2d(dim, with_bias=layernorm_bias)
            self.ffn2 = GatedFeedForward(dim, ffn_expansion, bias=bias)

    def forward(self, fw: Tensor, f0c: Tensor, kd: Tensor | None = None) -> Tensor:
        fw = fw + self.co_attn(self.norm1(fw), f0c)
        fw = fw + self.ffn1(self.norm2(fw))
        if self.degradation_aware:
            fw = fw + self.da_attn(self.norm3(fw), kd)
            fw = fw + self.ffn2(self.norm4(fw))
        return fw


class FRMA(nn.Module):
    """Iterative feature refinement with multi-attention (Sec. 3.2, Fig. 4(a), Eqs. 1-3).

    Refines the unwarped feature F, the warped feature F_w and the multi-flow-mask pairs f.

    Args:
        has_flow_in: an f comes in (all blocks except NetD's first, which starts f from F).
        has_fw_in: an F_w comes in (all blocks except each network's first).
        degradation_aware: NetR's blocks: DA attention on k^D from the NetD kernels.
    """

    def __init__(self, *, dim: int, num_seq: int, num_flow: int, growth_rate: int,
                 num_dense_layer: int, num_transformer_block: int, num_heads: int,
                 ffn_expansion: float, bias: bool, layernorm_bias: bool,
                 has_flow_in: bool, has_fw_in: bool, degradation_aware: bool) -> None:
        super().__init__()
        self.has_flow_in = has_flow_in
        self.has_fw_in = has_fw_in
        self.degradation_aware = degradation_aware
        self.rdb = RDB(dim, growth_rate, num_dense_layer, bias=bias)
        if degradation_aware:
            self.rdb_kd = RDB(dim, growth_rate, num_dense_layer, bias=bias)
            self.conv_kd = nn.Conv2d(dim * num_seq, dim, 1, bias=bias)
        self.conv_fw = nn.Conv2d(dim * num_seq + (dim if has_fw_in else 0), dim, 1, bias=bias)
        f_in = dim + (3 * num_flow + dim if has_flow_in else dim)
        self.conv_f = nn.Sequential(FrameConv(f_in, 3 * num_flow, 3, bias=bias), lrelu(),
                                    FrameConv(3 * num_flow, 3 * num_flow, 3, bias=bias))
        self.attn_blocks = nn.ModuleList([
            MultiAttention(dim, num_heads, ffn_expansion, bias=bias, layernorm_bias=layernorm_bias,
                           degradation_aware=degradation_aware)
            for _ in range(num_transformer_block)])

    def forward(self, feat: Tensor, fw: Tensor | None, flow: Tensor | None, f0c: Tensor,
                kd_feat: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            feat: F ``[B, T, C, H, W]``.
            fw: F_w ``[B, C, H, W]`` or None.
            flow: f ``[B, T, 3n, H, W]`` or None.
            f0c: F0_c ``[B, C, H, W]``.
            kd_feat: NetR's embedded K^D ``[B, T, C, H, W]``.
        Returns:
            (F, F_w, f) with the shapes above.
        """
        t = feat.shape[1]
        feat = self.rdb(feat)
        f0c_seq = f0c.unsqueeze(1).expand(-1, t, -1, -1, -1)
        if self.has_flow_in:
            flow = flow + self.conv_f(torch.cat((f0c_seq, flow, multi_flow_warp(feat, flow)), dim=2))  # Eq. 1
        else:
            flow = self.conv_f(torch.cat((f0c_seq, feat), dim=2))
        warped = seq_to_channels(multi_flow_warp(feat, flow))
        fw = self.conv_fw(torch.cat((fw, warped), dim=1) if self.has_fw_in else warped)  # Eq. 2
        kd = self.conv_kd(seq_to_channels(self.rdb_kd(kd_feat))) if self.degradation_aware else None
        for block in self.attn_blocks:
            fw = block(fw, f0c, kd)
        return feat, fw, flow
