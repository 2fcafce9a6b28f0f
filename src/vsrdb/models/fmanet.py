"""FMA-Net (Youk, Oh and Kim, CVPR 2024) exactly as released.

Degradation learning network NetD and restoration network NetR, each a stack of FRMA
blocks, joined by flow-guided dynamic filtering (FGDF): NetD predicts motion-aware
degradation kernels K^D and re-degrades the sharp HR sequence with them (training only);
NetR restores the centre frame with flow-guided dynamic upsampling plus a high-frequency
residual. Where the release differs from the paper, the release is followed and the spot
says so in a comment.

Public tensors are ``[B, C, T, H, W]`` in [0, 1] (channels before time, as the release);
inside, sequences are frames-major ``[B, T, C, H, W]`` (see ``blocks``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..ops.dynamic_filter import (
    dynamic_downsample,
    dynamic_upsample,
    dynamic_upsample_streamed,
    normalize_downsampling_kernels,
    normalize_upsampling_kernels,
)
from ..ops.fused_conv import conv2d_lrelu
from ..ops.inference import eager_inference
from ..ops.losses import temporal_terms
from ..ops.pictures import colorize_flow, kernel_mosaic
from ..ops.warp import image_flow_warp
from .blocks import (
    FRMA,
    RRDB,
    ConvStack,
    FrameConv,
    TemporalConv3d,
    cat_channels,
    channels_last,
    channels_to_seq,
    compute_dtype,
    lrelu,
    stack_frames,
)
from .family import FrameNeed, LossFn, RestorationModel, TrainingStage
from .inputs import check_video_inputs
from .registry import check_positive, check_rules, from_preset, register_model

__all__ = ["FMANetConfig", "FMANetLossWeights", "NetD", "NetR", "FMANet", "fmanet_loss"]


@dataclass(frozen=True)
class FMANetLossWeights:
    """lambda_1..lambda_6 of Eqs. 8-9 (grid-searched by the authors), and the optional temporal loss.

    Stage 1 (NetD alone):
        L_D = l1(recon, X_c) + l_1 l1(hr_warp, Y_c over T) + l_2 l1(f^Y, pseudo-GT flow)
              + l_3 l1(NetD anchor, X_sharp)
    Stage 2 (both):
        L = l1(Y_hat, Y_c) + l_6 L_D + l_4 l1(X_w, X_c over T) + l_5 l1(NetR anchor, X_sharp)

    X_sharp is the bicubic-downsampled sharp sequence; the pseudo-GT flow goes from the centre
    frame to each frame on X_sharp (zero for the centre), at LR size.
    """

    hr_warp: float = 0.1     # lambda_1: warping loss in Y
    flow: float = 1e-4       # lambda_2: pseudo-GT flow
    anchor_d: float = 0.1    # lambda_3: NetD's temporal anchor
    lr_warp: float = 0.1     # lambda_4: warping loss in X
    anchor_r: float = 0.1    # lambda_5: NetR's temporal anchor
    stage1: float = 0.1      # lambda_6: L_D inside the stage-2 loss
    # JFFRA's occlusion-aware temporal loss on the restored centre and its neighbours (ops.losses);
    # None or 0: off, as in the paper.
    temporal: float | None = None
    temporal_alpha: float = 0.2  # alpha of JFFRA's Eq. 13, on 8-bit pixel values


@dataclass(frozen=True)
class FMANetConfig:
    """FMA-Net hyper-parameters; defaults are the released model (paper Sec. 4).

    Attributes:
        dim: feature channels C; divisible by num_seq, num_flow and num_heads.
        ds_kernel_size: k_d, NetD's degradation kernel size; k_d - scale must be even.
        us_kernel_size: k_r, NetR's restoration kernel size.
        num_flow: n, multi-flow-mask pairs per frame.
        num_frma: M, FRMA blocks in each network.
        num_seq: T, input frames; frame c = T // 2 is restored (the paper uses odd T).
        layernorm_type: "WithBias" or "BiasFree" (Restormer's two LayerNorms).
        bias: conv biases (the RDB 1x1 fusion conv always has one).
        scale: s, the output's size over the input's: 4 (the paper's), 2 or 1 (deblurring at
            the input's size). The network's body always works on a grid a quarter of the
            output's size: at x2 and x1 on the input pixel-unshuffled by u = 4 / s (so its cost
            per output pixel stays x4's), and FGDF filters the input at its own size with the
            (u*s)^2 = 16 sub-pixel kernels of each grid cell. The high-frequency tail is then
            the same two x2 pixel shuffles at every scale.
        stage: 1 = NetD alone (training stage 1), 2 = NetD + NetR.
        flow_guided: False gives the paper's Table 3 ablation, conventional dynamic
            filtering (Eq. 5): the same kernels applied to unwarped frames.
    """

    in_channels: int = 3
    dim: int = 90
    ds_kernel_size: int = 20
    us_kernel_size: int = 5
    num_rdb: int = 12
    growth_rate: int = 18
    num_dense_layer: int = 4
    num_flow: int = 9
    num_frma: int = 4
    num_transformer_block: int = 2
    num_heads: int = 6
    layernorm_type: str = "WithBias"
    ffn_expansion_factor: float = 2.66
    bias: bool = False
    scale: int = 4
    num_seq: int = 3
    stage: int = 2
    flow_guided: bool = True

    def __post_init__(self) -> None:
        check_positive(self, ("in_channels", "dim", "ds_kernel_size", "us_kernel_size", "num_rdb", "growth_rate",
                              "num_dense_layer", "num_flow", "num_frma", "num_transformer_block", "num_heads",
                              "num_seq"))
        check_rules(self, [
            (self.dim % self.num_seq == 0, f"dim ({self.dim}) must be divisible by num_seq ({self.num_seq})"),
            (self.dim % self.num_flow == 0, f"dim ({self.dim}) must be divisible by num_flow ({self.num_flow})"),
            (self.dim % self.num_heads == 0, f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})"),
            (self.scale in (1, 2, 4), f"scale must be 1, 2 or 4, got {self.scale}"),
            (self.ds_kernel_size >= self.scale and (self.ds_kernel_size - self.scale) % 2 == 0,
             f"ds_kernel_size - scale must be even and >= 0, got {self.ds_kernel_size} - {self.scale}"),
            (self.us_kernel_size % 2 == 1, f"us_kernel_size must be odd, got {self.us_kernel_size}"),
            (self.layernorm_type in ("WithBias", "BiasFree"),
             f"layernorm_type must be 'WithBias' or 'BiasFree', got {self.layernorm_type!r}"),
            (self.stage in (1, 2), f"stage must be 1 or 2, got {self.stage!r}"),
            (int(self.dim * self.ffn_expansion_factor) >= 1, "ffn_expansion_factor gives no hidden channels"),
        ])

    @property
    def center(self) -> int:
        return self.num_seq // 2

    @property
    def unshuffle(self) -> int:
        """u: input pixels per side of one cell of the body's grid (4 / scale)."""
        return 4 // self.scale

    @property
    def grid_channels(self) -> int:
        """Channels of one input frame on the body's grid (pixel-unshuffled by u)."""
        return self.in_channels * self.unshuffle ** 2

    def inference_values_per_pixel(self) -> int:
        """Live floats per LR pixel at the peak of one window's lean inference.

        Calibrated on fmanet at 180x320: 0.81 GB of live tensors at the peak, in NetR's RDBs,
        about 8 dim-wide maps per frame plus a dozen single-frame ones. At x2 and x1 those live
        on a grid u^2 times smaller, and FGDF's input-sized planes (a frame's k_r^2 kernel planes
        per sub-pixel) come on top. Measured in one tile for the same 720x1280 output, fmanet-cpu
        peaks at 1.49 GB resident at x1 and 1.26 GB at x2, against 1.46 GB at x4.
        """
        grid = 8 * self.num_seq * self.dim + 12 * self.dim
        u = self.unshuffle
        return grid if u == 1 else grid // (u * u) + self.us_kernel_size ** 2 * self.scale ** 2


def to_grid(x: Tensor, u: int) -> Tensor:
    """Frames onto the body's grid: ``[B, T, C, uH, uW]`` -> ``[B, T, C*u*u, H, W]`` (pixel unshuffle;
    ``x`` itself when u = 1)."""
    if u == 1:
        return x
    b, t = x.shape[:2]
    return channels_last(F.pixel_unshuffle(x.flatten(0, 1), u)).unflatten(0, (b, t))


def from_grid(x: Tensor, u: int) -> Tensor:
    """The inverse of ``to_grid``: ``[B, T, C*u*u, H, W]`` -> ``[B, T, C, uH, uW]``."""
    if u == 1:
        return x
    b, t = x.shape[:2]
    return F.pixel_shuffle(x.flatten(0, 1), u).unflatten(0, (b, t))


def _head(c_in: int, c_mid: int, c_out: int, bias: bool) -> ConvStack:
    """One small head: conv, LeakyReLU, conv, all per frame (every head in FMA-Net has this shape)."""
    return ConvStack(FrameConv(c_in, c_mid, 3, bias=bias), lrelu(), FrameConv(c_mid, c_out, 3, bias=bias))


def _frma_stack(cfg: FMANetConfig, *, restoration: bool) -> nn.ModuleList:
    return nn.ModuleList([
        FRMA(dim=cfg.dim, num_seq=cfg.num_seq, num_flow=cfg.num_flow, growth_rate=cfg.growth_rate,
             num_dense_layer=cfg.num_dense_layer, num_transformer_block=cfg.num_transformer_block,
             num_heads=cfg.num_heads, ffn_expansion=cfg.ffn_expansion_factor, bias=cfg.bias,
             layernorm_bias=cfg.layernorm_type == "WithBias",
             # NetR's first block already receives f^{D,M}; NetD's first starts f from F.
             has_flow_in=restoration or i > 0, has_fw_in=i > 0, degradation_aware=restoration)
        for i in range(cfg.num_frma)])


@dataclass
class NetDOutput:
    """NetD's results. Mutable on purpose: lean inference lets NetR drop what it has used.

    H, W is the body's grid: the LR size at x4, the input's size / u at x2 and x1.
    """

    feat: Tensor | None     # F^{D,M}   [B, T, C, H, W]
    kernels: Tensor | None  # K^D logits [B, T, k_d^2, H, W]; None when left to NetR to stream
    fw: Tensor | None       # F_w^{D,M} as a sequence [B, T, C/T, H, W] (the kernel head's input)
    image_flow: Tensor      # f^Y        [B, T, 3, H, W] (dx, dy, mask logit), in grid pixels
    flow: Tensor | None     # f^{D,M}   [B, T, 3n, H, W]
    anchor: Tensor | None   # X^D_sharp  [B, T, 3, uH, uW]


class NetD(nn.Module):
    """Degradation learning network (Sec. 3.4, top of Fig. 3)."""

    def __init__(self, cfg: FMANetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, n3 = cfg.dim, 3 * cfg.num_flow
        self.feature_extractor = ConvStack(
            FrameConv(cfg.grid_channels, c, 3, bias=cfg.bias), lrelu(),
            RRDB(c, cfg.growth_rate, cfg.num_dense_layer, cfg.num_rdb, bias=cfg.bias))
        self.frma_blocks = _frma_stack(cfg, restoration=False)
        # One K^D per grid cell (see dynamic_downsample), so the same head at every scale.
        self.kernel_head = _head(c // cfg.num_seq, c, cfg.ds_kernel_size ** 2, cfg.bias)
        self.flow_head = _head(n3, n3, 3, cfg.bias)
        self.anchor_head = _head(c, c, cfg.grid_channels, cfg.bias)

    def encode(self, lr: Tensor) -> Tensor:
        """Initial features F^{D,0}: ``[B, T, 3, uH, uW]`` -> ``[B, T, C, H, W]`` (the body's grid).

        Every op here is per frame, so a sliding window can compute each frame's once.
        Features come in the model's compute dtype whatever ``lr``'s.
        """
        return self.feature_extractor(to_grid(lr.to(compute_dtype(self)), self.cfg.unshuffle))

    def forward(self, lr: Tensor, feat0: Tensor | None = None, *, anchor: bool = True,
                kernels: bool = True) -> NetDOutput:
        """``lr``: ``[B, T, 3, uH, uW]``; ``feat0``: precomputed ``encode(lr)`` or None. Everything
        NetD returns is on the body's grid (H, W) but the anchor, at the input's size.

        ``anchor=False`` skips the TA anchor head (training only): ``anchor`` is then None.
        ``kernels=False`` leaves K^D for NetR to compute frame by frame (inference).
        """
        feat = self.encode(lr) if feat0 is None else feat0
        f0c = feat[:, self.cfg.center].clone()  # a view would keep all T frames of F^0 alive
        fw = flow = None
        for block in self.frma_blocks:
            feat, fw, flow = block(feat, fw, flow, f0c)
        assert fw is not None  # num_frma >= 1
        fw_seq = channels_to_seq(fw, self.cfg.num_seq)
        k = self.kernel_head(fw_seq) if kernels else None
        anchor_x = from_grid(self.anchor_head(feat), self.cfg.unshuffle) if anchor else None
        return NetDOutput(feat, k, fw_seq, self.flow_head(flow), flow, anchor_x)

    def degrade(self, hr: Tensor, out: NetDOutput) -> tuple[Tensor, Tensor]:
        """Flow-guided dynamic downsampling of the sharp HR sequence (Eq. 7).

        Args:
            hr: ``[B, T, 3, sH, sW]``.
        Returns:
            ``(recon [B, 3, H, W], hr_warp [B, T, 3, sH, sW])``.
        """
        validity, warped = image_flow_warp(hr, out.image_flow, self.cfg.scale * self.cfg.unshuffle)
        if out.kernels is None:
            raise ValueError("degrade needs NetD's kernels: call NetD with kernels=True")
        kernels = normalize_downsampling_kernels(out.kernels)
        if self.cfg.flow_guided:
            recon = dynamic_downsample(warped, validity, kernels, self.cfg.scale)
        else:
            recon = dynamic_downsample(hr, torch.ones_like(hr[:, :, :1]), kernels, self.cfg.scale)
        return recon, warped


class HighFrequencyReconstruction(nn.Module):
    """NetR's high-frequency branch: F_w ``[B, C, H, W]`` -> Y_r ``[B, 3, 4H, 4W]``."""

    def __init__(self, dim: int, out_channels: int, *, bias: bool) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(dim, dim, 3, padding=1, bias=bias)
        self.conv1 = nn.Conv2d(dim, 4 * dim, 3, padding=1, bias=bias)
        self.conv2 = nn.Conv2d(dim, 4 * dim, 3, padding=1, bias=bias)
        self.conv3 = nn.Conv2d(dim, dim, 3, padding=1, bias=bias)
        self.conv_out = nn.Conv2d(dim, out_channels, 3, padding=1, bias=bias)

    # Receptive field of the whole branch, in LR rows: 1 + 1 (LR convs) + 1/2 (x2 conv) +
    # 1/4 + 1/4 (x4 convs) = 3; strips overlap by one more.
    HALO = 4

    def forward(self, fw: Tensor, *, strip_pixels: int = 1 << 16) -> Tensor:
        """Without gradients, frames over ``strip_pixels`` LR pixels run in row strips.

        The x4 maps are 16x the LR size (332 MB per 90-channel map at 720x1280); strips
        with a halo of the receptive field give the same result with a bounded peak. Each
        strip recomputes 2 * HALO rows, so strips are only as many as memory needs: a tile
        the planner sized for NetR's peak (``inference_values_per_pixel``) already bounds
        this branch's (about 32 * dim values per LR pixel), and 180x320 runs in one piece.
        """
        b, c, h, w = fw.shape
        rows = max(1, strip_pixels // w)
        if not eager_inference() or h <= rows:
            return self._branch(fw)
        out = torch.empty(b, self.conv_out.out_channels, 4 * h, 4 * w, device=fw.device, dtype=fw.dtype)
        for r0 in range(0, h, rows):
            r1 = min(h, r0 + rows)
            a, z = max(0, r0 - self.HALO), min(h, r1 + self.HALO)
            out[:, :, 4 * r0:4 * r1] = self._branch(fw[:, :, a:z])[:, :, 4 * (r0 - a):4 * (r1 - a)]
        return out

    def _branch(self, fw: Tensor) -> Tensor:
        def conv_act(conv: nn.Conv2d, z: Tensor) -> Tensor:
            return conv2d_lrelu(channels_last(z), conv.weight, conv.bias, padding=1)

        x = conv_act(self.conv_in, fw)
        x = F.pixel_shuffle(conv_act(self.conv1, x), 2)
        x = F.pixel_shuffle(conv_act(self.conv2, x), 2)
        return self.conv_out(conv_act(self.conv3, x))


@dataclass
class NetROutput:
    output: Tensor          # Y_hat_c    [B, 3, 4H, 4W] (s times the input)
    lr_warp: Tensor         # X_w        [B, T, 3, uH, uW]
    anchor: Tensor | None   # X^R_sharp  [B, T, 3, uH, uW]; None without anchor=True
    image_flow: Tensor      # f^X        [B, T, 3, H, W], in grid pixels
    kernels: Tensor | None  # K^R logits [B, T, 16 k_r^2, H, W]; None in lean inference


class NetR(nn.Module):
    """Restoration network (Sec. 3.4, bottom of Fig. 3)."""

    def __init__(self, cfg: FMANetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, n3, kd2 = cfg.dim, 3 * cfg.num_flow, cfg.ds_kernel_size ** 2
        self.feature_extractor = ConvStack(
            FrameConv(cfg.grid_channels + c, c, 3, bias=cfg.bias), lrelu(),
            RRDB(c, cfg.growth_rate, cfg.num_dense_layer, cfg.num_rdb, bias=cfg.bias))
        self.flow_in = _head(n3, n3, n3, cfg.bias)
        # Full 3x3x3 convs: unlike every other conv here these mix neighbouring frames.
        self.kd_embed = nn.Sequential(TemporalConv3d(kd2, c, bias=cfg.bias), lrelu(),
                                      TemporalConv3d(c, c, bias=cfg.bias))
        self.frma_blocks = _frma_stack(cfg, restoration=True)
        self.high_freq = HighFrequencyReconstruction(c, cfg.in_channels, bias=cfg.bias)
        # (u*s)^2 = 16 sub-pixel kernels per grid cell at every scale
        self.kernel_head = _head(c // cfg.num_seq, c, 16 * cfg.us_kernel_size ** 2, cfg.bias)
        self.pre_flow_head = _head(n3, n3, 3, cfg.bias)
        self.flow_head = _head(n3 + 2 * cfg.grid_channels, n3, 3, cfg.bias)
        self.anchor_head = _head(c, c, cfg.grid_channels, cfg.bias)

    def forward(self, lr: Tensor, d: NetDOutput, *, anchor: bool = True,
                kernel_head: nn.Module | None = None) -> NetROutput:
        """``lr``: ``[B, T, 3, uH, uW]``; ``d``: NetD's output for the same window.

        Lean inference: when ``d.kernels`` is None, K^D is made frame by frame with NetD's
        ``kernel_head`` and embedded as it goes, and K^R likewise is made and applied frame by
        frame: the same numbers, but the T*k^2-channel kernel maps are never held at once.
        ``kernels`` of the output is then None.
        """
        cfg = self.cfg
        t, u = lr.shape[1], cfg.unshuffle
        # lr stays as given (fp32) for the image-space warps and the dynamic upsampling; the
        # feature path takes it in the compute dtype.
        assert d.feat is not None and d.flow is not None  # NetD's output, not yet used up
        lr_c = lr.to(d.feat.dtype)
        feat = self.feature_extractor(cat_channels(to_grid(lr_c, u), d.feat))
        f0c = feat[:, cfg.center].clone()
        flow = self.flow_in(d.flow)
        lean = d.kernels is None
        if not lean:
            kd_feat = self.kd_embed(d.kernels)
        else:
            assert kernel_head is not None and d.fw is not None, "lean inference needs NetD's kernel head and F_w"
            head, d_fw = kernel_head, d.fw
            first = self.kd_embed[0].forward_streamed(lambda i: head(d_fw[:, i:i + 1]), t)  # type: ignore[operator]
            del d_fw  # with d.fw below: F_w is freed before NetR peaks
            kd_feat = self.kd_embed[2](self.kd_embed[1](first))
            d.feat = d.fw = d.flow = None  # used up; frees them while NetR peaks
        fw = None
        for block in self.frma_blocks:
            feat, fw, flow = block(feat, fw, flow, f0c, kd_feat)
        residual = self.high_freq(fw)
        # Image flow for X: a preliminary warp, then a refined flow from it (f^X).
        _, pre_warp = image_flow_warp(lr, self.pre_flow_head(flow), u)
        center = to_grid(lr_c[:, cfg.center : cfg.center + 1], u).expand(-1, t, -1, -1, -1)
        image_flow = self.flow_head(cat_channels(flow, to_grid(pre_warp.to(flow.dtype), u), center))
        _, lr_warp = image_flow_warp(lr, image_flow, u)
        frames = lr_warp if cfg.flow_guided else lr
        assert fw is not None  # num_frma >= 1
        fw_seq = channels_to_seq(fw, cfg.num_seq)
        if d.kernels is None:
            kernels = None
            upsampled = dynamic_upsample_streamed(
                lambda i: (frames[:, i], self.kernel_head(fw_seq[:, i:i + 1])[:, 0]), t, cfg.scale)
        else:
            kernels = self.kernel_head(fw_seq)
            upsampled = dynamic_upsample(frames, normalize_upsampling_kernels(kernels, cfg.scale * u), cfg.scale)
        anchor_x = from_grid(self.anchor_head(feat), u) if anchor else None
        return NetROutput(upsampled + residual, lr_warp, anchor_x, image_flow, kernels)


def _seq(x: Tensor) -> Tensor:
    """Frames-major ``[B, T, C, H, W]`` -> public ``[B, C, T, H, W]`` (a view)."""
    return x.transpose(1, 2)


class FMANet(RestorationModel):
    """FMA-Net: NetD (stage 1) or NetD + NetR (stage 2), one class with a ``stage`` setting.

    ``forward(lr, hr=None)`` takes ``lr [B, 3, T, H, W]`` (blurry LR window) and optionally
    ``hr [B, 3, T, sH, sW]`` (sharp HR window) and returns a dict; h, w below is the body's grid,
    H/u, W/u (u = 4 / s; the LR size itself at x4):

    - ``output`` ``[B, 3, sH, sW]``: restored centre frame (stage 2).
    - ``lr_warp`` ``[B, 3, T, H, W]``: LR frames warped to the centre by f^X (stage 2).
    - ``anchor_r`` ``[B, 3, T, H, W]``: NetR's TA anchor (stage 2).
    - ``image_flow_lr`` ``[B, 2, T, h, w]``: f^X's flow (stage 2), in grid pixels.
    - ``anchor_d`` ``[B, 3, T, H, W]``: NetD's TA anchor, the predicted sharp LR sequence.
    - ``image_flow`` ``[B, 2, T, h, w]``: f^Y's flow from the centre to each frame, in grid pixels.
    - ``kernels_d`` ``[B, k_d^2, T, h, w]``: K^D logits.
    - with ``hr``: ``recon`` ``[B, 3, H, W]`` (re-degraded blurry centre frame) and
      ``hr_warp`` ``[B, 3, T, sH, sW]`` (masked HR frames warped to the centre).

    ``channel_order`` says which colour order the weights expect ("BGR" for the authors').

    Training (the paper's two stages): ``netd`` trains NetD alone with L_D (Eq. 8); ``joint``
    starts from that NetD and trains both networks, each with its own optimiser, with
    L_total (Eq. 9). The occlusion-aware temporal loss (``loss.temporal``) is off by default;
    when on, the centre's two neighbours are restored too, from a window two frames wider.
    """

    preset = "fmanet"
    casts_inputs = True  # images stay fp32; the feature path is cast (see vsrdb.precision)

    def __init__(self, config: FMANetConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or FMANetConfig()
        self.config = replace(cfg, **overrides) if overrides else cfg
        self.net_d = NetD(self.config)
        self.net_r = NetR(self.config) if self.config.stage == 2 else None
        self.channel_order = "RGB"

    # ------------------------------------------------------------------ the family interface

    @property
    def frames(self) -> FrameNeed:
        return FrameNeed("window", self.config.num_seq)

    @property
    def min_size(self) -> int:
        # The k_r x k_r restoration window must fit inside a frame of the body's grid.
        return max(2, self.config.us_kernel_size) * self.config.unshuffle

    @property
    def can_restore(self) -> bool:
        return self.net_r is not None

    def inference_values_per_pixel(self) -> int:
        return self.config.inference_values_per_pixel()

    def check_inputs(self, lr: Tensor, hr: Tensor | None = None) -> None:
        """Raise InputError naming what was expected and what came."""
        cfg = self.config
        check_video_inputs(lr, hr, in_channels=cfg.in_channels, scale=cfg.scale, min_size=self.min_size,
                           num_seq=cfg.num_seq)

    def _frames_major(self, lr: Tensor) -> Tensor:
        """``[B, C, T, H, W]`` -> frames-major ``[B, T, C, H', W']``, H' and W' padded (replicate)
        up to multiples of u, so any input size works at x2 and x1; ``restore`` crops back."""
        b, _, t, h, w = lr.shape
        u = self.config.unshuffle
        x = lr.transpose(1, 2).flatten(0, 1)
        if u > 1:
            # u - 1 rows and columns, then cut to the multiple: a fixed pad keeps an ONNX export
            # right for every size (a pad of -w % u is fixed at the example's size when traced)
            x = F.pad(x, (0, u - 1, 0, u - 1), mode="replicate")[..., :(h + u - 1) // u * u, :(w + u - 1) // u * u]
        return channels_last(x).unflatten(0, (b, t))

    def encode_frame(self, frame: Tensor) -> Tensor:
        """NetD's initial features of single frames: ``[B, 3, H, W]`` -> ``[B, C, H/u, W/u]``.

        They depend on one frame only, so a sliding window computes them once per frame
        and passes them to ``restore`` / ``forward`` as ``features``.
        """
        return self.net_d.encode(self._frames_major(frame.unsqueeze(2)))[:, 0]

    def restore(self, lr: Tensor, *, features: Sequence[Tensor] | None = None, flows: Tensor | None = None) -> Tensor:
        """Inference: ``lr [B, 3, T, H, W]`` -> restored centre frame ``[B, 3, sH, sW]``.

        The same output as ``forward(lr)["output"]``, without the TA anchors (training only).
        ``features``: the T frames' ``encode_frame`` outputs, if already computed.
        """
        self.check_inputs(lr)
        if self.net_r is None:
            raise InputError("a stage-1 model (NetD alone) cannot restore; it needs NetR (stage 2)")
        x = self._frames_major(lr)
        f0 = stack_frames(list(features)) if features is not None else None
        d = self.net_d(x, f0, anchor=False, kernels=False)
        out = self.net_r(x, d, anchor=False, kernel_head=self.net_d.kernel_head).output
        s, (h, w) = self.config.scale, lr.shape[-2:]
        return out if self.config.unshuffle == 1 else out[..., :s * h, :s * w]

    def forward(self, lr: Tensor, hr: Tensor | None = None, *, features: Tensor | None = None) -> dict[str, Tensor]:
        """See the class docstring. ``features``: cached ``net_d.encode`` features ``[B, T, C, H, W]``."""
        self.check_inputs(lr, hr)
        u = self.config.unshuffle
        if lr.shape[-2] % u or lr.shape[-1] % u:  # training patches and windows come whole
            raise InputError(f"lr frames must have sides that are multiples of {u} at x{self.config.scale}, "
                             f"got {lr.shape[-2]}x{lr.shape[-1]}")
        x = self._frames_major(lr)
        d = self.net_d(x, features)
        out = {"anchor_d": _seq(d.anchor), "image_flow": _seq(d.image_flow[:, :, :2]), "kernels_d": _seq(d.kernels)}
        if hr is not None:
            recon, hr_warp = self.net_d.degrade(hr.transpose(1, 2), d)
            out.update(recon=recon, hr_warp=_seq(hr_warp))
        if self.net_r is not None:
            r = self.net_r(x, d)
            out.update(output=r.output, lr_warp=_seq(r.lr_warp), anchor_r=_seq(r.anchor),
                       image_flow_lr=_seq(r.image_flow[:, :, :2]))
        return out

    # ------------------------------------------------------------------ training recipe

    loss_weights_type = FMANetLossWeights

    def loss_terms(self, stage: TrainingStage, weights: FMANetLossWeights) -> tuple[str, ...]:
        terms: tuple[str, ...] = ("total", "loss_d", "recon", "hr_warp", "flow", "anchor_d")
        if stage.name == "joint":
            terms += ("restore", "lr_warp", "anchor_r") + (("temporal",) if weights.temporal else ())
        return terms

    def training_stages(self, weights: FMANetLossWeights) -> list[TrainingStage]:
        t = self.config.num_seq
        # With the temporal loss the centre's neighbours are restored too: two more frames.
        wide = t + 2 if weights.temporal else t
        return [TrainingStage("netd", "stage1_netd", t, {"stage": 1}, replaced_by_init=True, legacy_key="stage1"),
                TrainingStage("joint", "model", wide, {"stage": 2}, legacy_key="stage2")]

    def trainable_parts(self, stage: TrainingStage) -> list[tuple[str, nn.Module]]:
        parts: list[tuple[str, nn.Module]] = [("d", self.net_d)]
        return parts + [("r", self.net_r)] if self.net_r is not None else parts

    def start_stage(self, stage: TrainingStage, previous: RestorationModel | None) -> None:
        if isinstance(previous, FMANet) and self.net_r is not None:
            self.net_d.load_state_dict(previous.net_d.state_dict())

    def training_loss(self, forward: LossFn, batch: Mapping[str, Tensor], stage: TrainingStage,
                      weights: FMANetLossWeights) -> tuple[Tensor, dict[str, Tensor]]:
        lr, hr, lr_sharp, flow = batch["lr"], batch["hr"], batch["lr_sharp"], batch["flow"]
        joint = self.net_r is not None
        t = self.config.num_seq
        restored = None
        out: Mapping[str, Any]
        if lr.shape[2] > t:  # the temporal loss's wider window: frames c-1, c, c+1 restored
            b = lr.shape[0]
            subs = [slice(j, j + t) for j in range(3)]
            if joint:
                out3 = forward(torch.cat([lr[:, :, s] for s in subs]), torch.cat([hr[:, :, s] for s in subs]))
                restored = torch.stack(out3["output"].float().chunk(3), dim=2)
                out = {k: v[b:2 * b] for k, v in out3.items()}
            else:
                out = forward(lr[:, :, subs[1]], hr[:, :, subs[1]])
            lr, hr, lr_sharp, flow = (z[:, :, subs[1]] for z in (lr, hr, lr_sharp, flow))
        else:
            out = forward(lr, hr)
        u = self.config.unshuffle
        if u > 1:  # f^Y lives on the body's grid, in its pixels: the pseudo-GT flow goes there too
            b, _, tt, h, w = flow.shape
            flow = F.avg_pool2d(flow.transpose(1, 2).flatten(0, 1), u).unflatten(0, (b, tt)).transpose(1, 2) / u
        loss, terms = fmanet_loss({k: v.float() for k, v in out.items()}, lr=lr, hr=hr, lr_sharp=lr_sharp,
                                  flow_gt=flow, stage=2 if joint else 1, weights=weights)
        if restored is not None:
            c = t // 2 + 1
            temporal = temporal_terms(restored, batch["hr"][:, :, c - 1:c + 2], batch["flow"][:, :, c - 1:c + 2],
                                      weights.temporal_alpha)
            loss = loss + (weights.temporal or 0.0) * temporal
            terms = {**terms, "temporal": temporal.detach(), "total": loss.detach()}
        return loss, terms

    def validation_pair(self, lr: Tensor, hr: Tensor, stage: TrainingStage,
                        **inputs: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.net_r is None:  # NetD is scored on re-degrading the sharp window into the blurry centre
            return self(lr, hr)["recon"][0], lr[0, :, self.config.center]
        return super().validation_pair(lr, hr, stage, **inputs)

    # ------------------------------------------------------------------ pictures

    @torch.no_grad()
    def diagnostic_maps(self, window: Tensor, **inputs: Tensor) -> dict[str, np.ndarray]:
        """Image flows and FGDF kernels on one window ``[1, 3, T, h, w]`` (the paper's Figs. 10-11).

        Kernels are shown at the pixel with the largest NetD flow, where the flow guidance
        matters most, and at the window's centre.
        """
        cfg = self.config
        x = self._frames_major(window.float().to(next(self.parameters()).device))
        d = self.net_d(x)
        h, w = d.image_flow.shape[-2:]  # the body's grid: flows and kernels live on it
        t = cfg.num_seq
        flows = d.image_flow[0, :, :2].float().cpu().numpy()  # [T, 2, h, w]: centre -> each frame
        top = max(float(np.sqrt((flows ** 2).sum(1)).max()), 1e-6)
        maps = {"NetD image flow f^Y (centre to each frame)": np.concatenate(
            [colorize_flow(flows[i], top) for i in range(t)], axis=1)}
        mag = np.sqrt((flows ** 2).sum(1)).max(0)
        py, px = np.unravel_index(int(mag.argmax()), mag.shape)
        points = [(int(py), int(px)), (h // 2, w // 2)]
        kd = normalize_downsampling_kernels(d.kernels.float())[0]
        kd = kd.reshape(t, cfg.ds_kernel_size, cfg.ds_kernel_size, h, w).cpu().numpy()  # type: ignore[assignment]
        maps["K^D degradation kernels (rows: two pixels; columns: frames)"] = kernel_mosaic(
            np.stack([[kd[i, :, :, py_, px_] for i in range(t)] for py_, px_ in points]), cell=6)
        if self.net_r is not None:
            r = self.net_r(x, d)
            flows_r = r.image_flow[0, :, :2].float().cpu().numpy()
            maps["NetR image flow f^X (centre to each frame)"] = np.concatenate(
                [colorize_flow(flows_r[i], top) for i in range(t)], axis=1)
            s, k = cfg.scale * cfg.unshuffle, cfg.us_kernel_size  # the sub-pixel kernels of a grid cell
            kr = normalize_upsampling_kernels(r.kernels.float(), s)[0].cpu().numpy()  # [T, s*s, k*k, h, w]
            # The s*s sub-pixel kernels of each frame laid out as an s x s mosaic of k x k kernels.
            rows = [[kr[i, :, :, py_, px_].reshape(s, s, k, k).transpose(0, 2, 1, 3).reshape(s * k, s * k)
                     for i in range(t)] for py_, px_ in points]
            maps["K^R restoration kernels (s x s sub-pixel kernels per frame; blue = negative)"] = kernel_mosaic(
                np.stack(rows), cell=4)
        return maps


def _preset(base: FMANetConfig, overrides: dict[str, Any]) -> FMANet:
    """A preset at the scale asked for: k_d - s must be even, so a preset's k_d shrinks by one at
    x1 unless k_d is given too. Shrinks, not grows: NetD's kernel head and NetR's K^D embedding
    cost k_d^2 per grid cell, and 13 instead of 12 made fmanet-cpu at x1 0.37 s per 720x1280
    frame slower than at x4 on an AMD EPYC (docs/benchmarks.md); 11 input pixels still span the
    12 HR pixels' blur of x4 within one pixel."""
    scale = overrides.get("scale")
    if type(scale) is int and "ds_kernel_size" not in overrides and (base.ds_kernel_size - scale) % 2:
        overrides = {**overrides, "ds_kernel_size": base.ds_kernel_size - 1}
    return from_preset(FMANet, base, overrides)


@register_model("fmanet")
def fmanet(**overrides: Any) -> FMANet:
    """The released FMA-Net (M=4, n=9, k_d=20, k_r=5): 9,766,503 parameters."""
    return _preset(FMANetConfig(), overrides)


@register_model("fmanet-s")
def fmanet_s(**overrides: Any) -> FMANet:
    """FMA-Net_s of the supplement: M=2, nothing else changed. 7,569,603 parameters."""
    return _preset(FMANetConfig(num_frma=2), overrides)


@register_model("fmanet-cpu")
def fmanet_cpu(**overrides: Any) -> FMANet:
    """A small FMA-Net for training on a CPU in minutes to hours (our preset, not the paper's)."""
    return _preset(FMANetConfig(dim=36, ds_kernel_size=12, us_kernel_size=5, num_rdb=3, growth_rate=12,
                                num_dense_layer=3, num_flow=3, num_frma=2, num_transformer_block=1,
                                num_heads=2), overrides)


@register_model("fmanet-cpu-l")
def fmanet_cpu_l(**overrides: Any) -> FMANet:
    """fmanet-cpu grown into the time the faster inference path freed (issue: the built-in model,
    version 4): dim 48, growth 16, 4 RDBs, 2 transformer blocks; 1,748,379 parameters, 1.8x the work.

    Chosen by ``benchmarks/builtin_shape.py``: the largest candidate whose time per frame stays
    within version 3.1's before that speed-up (on an AMX Xeon: 3.27 s end to end in fp32 against
    3.41, 1.92 s in bf16 against 2.16). Growth 16 fills AVX-512's 16-wide fp32 lanes; dim 54 or 60
    costs more time than its work (docs/builtin-model.md).
    """
    return _preset(FMANetConfig(dim=48, ds_kernel_size=12, us_kernel_size=5, num_rdb=4, growth_rate=16,
                                num_dense_layer=3, num_flow=3, num_frma=2, num_transformer_block=2,
                                num_heads=2), overrides)


@register_model("fmanet-tiny")
def fmanet_tiny(**overrides: Any) -> FMANet:
    """The size of the shared reference model (tiny_a): for tests and smoke runs."""
    return _preset(FMANetConfig(dim=18, ds_kernel_size=8, us_kernel_size=3, num_rdb=2, growth_rate=6,
                                num_dense_layer=2, num_flow=3, num_frma=2, num_transformer_block=1,
                                num_heads=2), overrides)


# ---------------------------------------------------------------------------- loss

def fmanet_loss(out: dict[str, Tensor], *, lr: Tensor, hr: Tensor, lr_sharp: Tensor, flow_gt: Tensor,
                stage: int, weights: FMANetLossWeights = FMANetLossWeights()) -> tuple[Tensor, dict[str, Tensor]]:
    """The stage's total loss and every term, unweighted, for logging.

    Args:
        out: ``model(lr, hr)``.
        lr: blurry LR window ``[B, 3, T, H, W]``; hr: sharp HR window ``[B, 3, T, sH, sW]``.
        lr_sharp: X_sharp ``[B, 3, T, H, W]``; flow_gt: ``[B, 2, T, H, W]``.
    Returns:
        (total, terms): ``terms`` holds recon, hr_warp, flow, anchor_d, loss_d and in stage 2
        restore, lr_warp, anchor_r; each a detached scalar.
    """
    t = lr.shape[2]
    c = t // 2
    x_c, y_c = lr[:, :, c], hr[:, :, c]
    terms = {
        "recon": F.l1_loss(out["recon"], x_c),
        "hr_warp": F.l1_loss(out["hr_warp"], y_c.unsqueeze(2).expand_as(out["hr_warp"])),
        "flow": F.l1_loss(out["image_flow"], flow_gt),
        "anchor_d": F.l1_loss(out["anchor_d"], lr_sharp),
    }
    loss_d = (terms["recon"] + weights.hr_warp * terms["hr_warp"] + weights.flow * terms["flow"]
              + weights.anchor_d * terms["anchor_d"])
    terms["loss_d"] = loss_d
    total = loss_d
    if stage == 2:
        terms["restore"] = F.l1_loss(out["output"], y_c)
        terms["lr_warp"] = F.l1_loss(out["lr_warp"], x_c.unsqueeze(2).expand_as(out["lr_warp"]))
        terms["anchor_r"] = F.l1_loss(out["anchor_r"], lr_sharp)
        total = (terms["restore"] + weights.stage1 * loss_d + weights.lr_warp * terms["lr_warp"]
                 + weights.anchor_r * terms["anchor_r"])
    terms["total"] = total
    return total, {k: v.detach() for k, v in terms.items()}
