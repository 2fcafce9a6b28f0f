"""FMA-Net++ (Youk, Oh and Kim, arXiv 2512.04390v2): sequence-level, exposure-aware joint VSRDB.

Written from the paper and its supplement (no code or weights were released). All frames of a
sequence are processed in parallel by stacks of HRBA blocks (hierarchical refinement with
bidirectional aggregation): block j+1 refines each frame's features F_i and its multi-flow-mask
pairs f_i towards frames i-1 and i+1 from the neighbours' features warped by f_i, so M blocks
reach M frames each way. An exposure embedding u_i from a frozen ETE (a ResNet-18 trained with
a supervised contrastive loss on exposure labels) modulates every block (ETM).

- NetD: X -> initial features -> M HRBA blocks (f = 0, o = 1 at the start) -> image
  flow-mask pairs f^Y (towards i-1 and i+1) and degradation kernels K^D (three k_d x k_d
  kernels per LR pixel, for frames i-1, i, i+1). With the sharp HR frames, FGDF re-degrades
  them into the blurry LR frame (Eqs. 5-7).
- NetR: concat(X, F^{D,M}) -> conv + RDB -> M HRBA blocks (f initialised with f^{D,M}; DA
  attention with queries from K^D) -> upsampling block -> residual over the bilinear x4 input
  (Eq. 8).

Choices where the paper is silent (each can be changed in ``FMANetPPConfig``):

- Widths: C = ``dim`` = 108 with 6 heads; the ETE is ResNet-18's layout (2-2-2-2 basic
  blocks) at half width (32-64-128-256 channels). The paper's counts, 9.8 M parameters without
  ETE and 12.8 M with, leave about 3 M for ETE + ETM; a full-width ResNet-18 alone is 11.2 M.
  Ours: 12,571,561 in all (1.8 % under 12.8 M), 9,443,817 without ETE and ETM.
- The ETE sees each blurry LR frame alone and outputs a 128-d embedding; ETM is a two-layer
  MLP per block from u_i to per-channel (alpha, beta), its last layer zero-initialised (ETM
  starts as the identity).
- Occlusion masks are logits through a sigmoid (as in FMA-Net); "o = 1" at the start is a
  logit of 10 (sigmoid 0.99995).
- HRBA: the two warped neighbours (n channel groups, one flow-mask pair each; FMA-Net's
  multi-flow warping) are fused with the frame's own features by a 3x3 conv; the residual
  Delta f comes from conv-LeakyReLU-conv on (fused features, f), its last layer zero-initialised;
  at the sequence's ends the missing neighbour is the frame itself.
- Multi-attention: Restormer MDTA self-attention and GDFN (the supplement), pre-norm residuals;
  in NetR then DA cross-attention (queries from K^D embedded by a 3x3 conv) and a second GDFN.
- K^D is normalised by one softmax over its 3 k_d^2 entries per pixel (FMA-Net's release
  normalises its kernels jointly over the window the same way).
- The upsampling block: conv, pixel shuffle x2, LeakyReLU, twice, then a conv to RGB.

Public tensors are ``[B, C, T, H, W]`` in [0, 1]; inside, sequences are frames-major.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Mapping

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..ops.dynamic_filter import dynamic_downsample, normalize_downsampling_kernels
from ..ops.pictures import colorize_flow, kernel_mosaic
from ..ops.warp import image_flow_warp, multi_flow_warp
from .blocks import (
    RDB,
    FrameConv,
    GatedFeedForward,
    GuidedTransposedAttention,
    LayerNorm2d,
    cat_channels,
    channel_softmax,
    compute_dtype,
    flatten_frames,
    lrelu,
)
from .family import FrameNeed, LossFn, RestorationModel, SequenceStream, TrainingStage
from .inputs import check_video_inputs
from .registry import check_positive, check_rules, from_preset, register_model

__all__ = ["FMANetPPConfig", "FMANetPPLossWeights", "FMANetPP", "ExposureEncoder", "ExposureModulation", "HRBA",
           "NetDPP", "NetRPP", "FMANetPPStream", "supervised_contrastive_loss", "degrade", "VISIBLE"]

VISIBLE = 10.0  # occlusion-mask logit meaning "fully visible" (sigmoid 0.99995)


@dataclass(frozen=True)
class FMANetPPLossWeights:
    """Eq. 9-10's weights: L_D = l1(recon) + lambda_1 l1(hr_warp) + lambda_2 l1(flows, pseudo-GT);
    the joint stage adds l1(restored) + lambda_3 L_D. The ETE stage's contrastive loss has none."""

    hr_warp_pp: float = 1e-4  # lambda_1 (the key keeps vsrdb 0.1's name, so its configs still mean it)
    flow: float = 1e-4        # lambda_2
    stage1: float = 0.1       # lambda_3


@dataclass(frozen=True)
class FMANetPPConfig:
    """FMA-Net++ hyper-parameters; defaults are the paper's where it gives them.

    Attributes:
        dim: feature channels C (ours; divisible by num_flow and num_heads).
        num_hrba: M, HRBA blocks in each network (paper: 4).
        num_flow: n, multi-flow-mask pairs per direction (paper: 9).
        ds_kernel_size: k_d (paper: 20); k_d - scale must be even.
        num_heads, ffn_expansion_factor: MDTA heads and GDFN width.
        growth_rate, num_dense_layer: NetR's input RDB.
        ete_width: ETE channels of ResNet-18's first stage (64 is the full ResNet-18).
        embed_dim: the exposure embedding u_i.
        num_seq: frames per training sequence (paper: 10).
        stage: 1 = ETE alone (its contrastive pretraining), 2 = ETE + NetD, 3 = all.
        flow_estimator: pseudo-GT flow for Eq. 9's flow term (``vsrdb.data.flow``; the paper: RAFT).
    """

    in_channels: int = 3
    dim: int = 108
    num_hrba: int = 4
    num_flow: int = 9
    ds_kernel_size: int = 20
    num_heads: int = 6
    ffn_expansion_factor: float = 2.66
    growth_rate: int = 24
    num_dense_layer: int = 4
    ete_width: int = 32
    embed_dim: int = 128
    num_seq: int = 10
    scale: int = 4
    stage: int = 3
    flow_estimator: str = "dis"

    def __post_init__(self) -> None:
        check_positive(self, ("in_channels", "dim", "num_hrba", "num_flow", "ds_kernel_size", "num_heads",
                              "growth_rate", "num_dense_layer", "ete_width", "embed_dim", "num_seq"))
        check_rules(self, [
            (self.dim % self.num_flow == 0, f"dim ({self.dim}) must be divisible by num_flow ({self.num_flow})"),
            (self.dim % self.num_heads == 0, f"dim ({self.dim}) must be divisible by num_heads ({self.num_heads})"),
            (self.scale == 4, f"scale must be 4 (two x2 pixel shuffles), got {self.scale}"),
            (self.ds_kernel_size >= self.scale and (self.ds_kernel_size - self.scale) % 2 == 0,
             f"ds_kernel_size - scale must be even and >= 0, got {self.ds_kernel_size} - {self.scale}"),
            (self.stage in (1, 2, 3), f"stage must be 1, 2 or 3, got {self.stage!r}"),
        ])


# ----------------------------------------------------------------------------- ETE and ETM

class _BasicBlock(nn.Module):
    """ResNet's basic block (two 3x3 convs with batch norm, plus the input)."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.down = None
        if stride != 1 or c_in != c_out:
            self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        return F.relu(y + (x if self.down is None else self.down(x)))


class ExposureEncoder(nn.Module):
    """ETE: ResNet-18's layout (stem, 4 stages of 2 basic blocks, global pooling) and a linear
    projection: frames ``[N, 3, H, W]`` -> exposure embeddings u ``[N, embed_dim]``.

    The stem keeps full resolution (stride 1, no max-pool): LR frames are small, and blur is a
    fine-scale cue that ImageNet's 4x stem would discard.
    """

    def __init__(self, in_channels: int, width: int, embed_dim: int) -> None:
        super().__init__()
        w = [width, 2 * width, 4 * width, 8 * width]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]),
                                  nn.ReLU(inplace=True))
        layers, c = [], w[0]
        for i, wi in enumerate(w):
            layers += [_BasicBlock(c, wi, 1 if i == 0 else 2), _BasicBlock(wi, wi, 1)]
            c = wi
        self.layers = nn.Sequential(*layers)
        self.project = nn.Linear(c, embed_dim)

    def forward(self, frames: Tensor) -> Tensor:
        x = self.layers(self.stem(frames))
        return self.project(x.mean(dim=(2, 3)))


class ExposureModulation(nn.Module):
    """ETM: (alpha, beta) = M(u); F -> (1 + alpha) * F + beta, per channel (an SFT layer).

    The last layer starts at zero, so a new ETM is the identity.
    """

    def __init__(self, embed_dim: int, dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(embed_dim, dim), nn.LeakyReLU(0.2, inplace=True), nn.Linear(dim, 2 * dim))
        nn.init.zeros_(self.mlp[-1].weight)  # type: ignore[arg-type]  # Sequential indexes as Module
        nn.init.zeros_(self.mlp[-1].bias)  # type: ignore[arg-type]

    def forward(self, feat: Tensor, u: Tensor) -> Tensor:
        """``feat [N, C, H, W]``, ``u [N, E]`` -> ``[N, C, H, W]``."""
        alpha, beta = self.mlp(u.to(feat.dtype)).chunk(2, dim=1)
        return feat * (1 + alpha[:, :, None, None]) + beta[:, :, None, None]


def supervised_contrastive_loss(embeddings: Tensor, labels: Tensor, temperature: float = 0.5) -> Tensor:
    """Eq. S1: for each anchor q, minus the mean over its positives p of
    log(exp(q.p / a) / sum over the batch without q of exp(q.p' / a)), averaged over anchors
    that have a positive. Embeddings are L2-normalised first.

    Args:
        embeddings: ``[N, E]``; labels: ``[N]`` exposure levels; temperature: alpha (paper: 0.5).
    """
    z = F.normalize(embeddings.float(), dim=1)
    n = z.shape[0]
    # In fp32 even under bf16 autocast: bf16 logits (3 significant digits) flatten the softmax's
    # differences between positives and negatives, and the loss barely moves.
    off = torch.autocast(z.device.type, enabled=False) if torch.amp.is_autocast_available(z.device.type) \
        else contextlib.nullcontext()  # devices without autocast (meta, in the device test) have nothing to undo
    with off:
        logits = z @ z.t() / temperature
    self_mask = torch.eye(n, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (labels[:, None] == labels[None, :]) & ~self_mask
    count = positives.sum(1)
    has = count > 0
    # The mean over anchors that have a positive, without a host sync (no branching on values):
    # anchors without one contribute 0, and a batch without any positive gives 0.
    per_anchor = -(log_prob.masked_fill(~positives, 0.0).sum(1) / count.clamp(min=1))
    return (per_anchor * has).sum() / has.sum().clamp(min=1)


# ----------------------------------------------------------------------------- HRBA

def _neighbours(x: Tensor) -> tuple[Tensor, Tensor]:
    """Frames i+1 and i-1 of a ``[B, T, ...]`` sequence for every i (ends: the frame itself)."""
    nxt = torch.cat((x[:, 1:], x[:, -1:]), dim=1)
    prev = torch.cat((x[:, :1], x[:, :-1]), dim=1)
    return nxt, prev


class HRBA(nn.Module):
    """One HRBA block (Fig. 4): warp the neighbours by f, fuse, update f residually,
    multi-attention, ETM.

    ``f`` is ``[B, T, 6n, H, W]``: n (dx, dy, mask logit) triples towards frame i+1, then n
    towards frame i-1.
    """

    def __init__(self, cfg: FMANetPPConfig, *, degradation_aware: bool, update_flow: bool = True) -> None:
        super().__init__()
        c, n6 = cfg.dim, 6 * cfg.num_flow
        self.fuse = FrameConv(3 * c, c, 3, bias=True)
        # NetR's last block has no flow update: nothing after it reads f.
        self.flow_update = None
        if update_flow:
            self.flow_update = nn.Sequential(FrameConv(c + n6, c, 3, bias=True), lrelu(),
                                             FrameConv(c, n6, 3, bias=True))
            nn.init.zeros_(self.flow_update[-1].weight)  # type: ignore[arg-type]  # Sequential indexes as Module
            nn.init.zeros_(self.flow_update[-1].bias)  # type: ignore[arg-type]
        self.norm1 = LayerNorm2d(c, with_bias=True)
        self.self_attn = GuidedTransposedAttention(c, cfg.num_heads, bias=False)
        self.norm2 = LayerNorm2d(c, with_bias=True)
        self.ffn1 = GatedFeedForward(c, cfg.ffn_expansion_factor, bias=False)
        self.degradation_aware = degradation_aware
        if degradation_aware:
            self.norm3 = LayerNorm2d(c, with_bias=True)
            self.da_attn = GuidedTransposedAttention(c, cfg.num_heads, bias=False)
            self.norm4 = LayerNorm2d(c, with_bias=True)
            self.ffn2 = GatedFeedForward(c, cfg.ffn_expansion_factor, bias=False)
        self.etm = ExposureModulation(cfg.embed_dim, c)

    def forward(self, feat: Tensor, flow: Tensor, u: Tensor, kd: Tensor | None = None, *,
                neighbours: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor]:
        """``feat [B, T, C, H, W]``, ``flow [B, T, 6n, H, W]``, ``u [B, T, E]``, ``kd [B, T, C, H, W]``
        (NetR) -> refined (feat, flow).

        ``neighbours``: the features of frames i+1 and i-1 for each frame i, when ``feat`` is a
        piece of a longer sequence (streaming); by default ``feat``'s own, the ends repeated.
        """
        b, t = feat.shape[:2]
        nxt, prev = neighbours if neighbours is not None else _neighbours(feat)
        to_next, to_prev = flow.chunk(2, dim=2)
        warped = cat_channels(feat, multi_flow_warp(nxt, to_next), multi_flow_warp(prev, to_prev))
        fused = self.fuse(warped)
        if self.flow_update is not None:
            flow = flow + self.flow_update(cat_channels(fused, flow.to(fused.dtype))).float()
        x = flatten_frames(fused)
        n = self.norm1(x)
        x = x + self.self_attn(n, n)
        x = x + self.ffn1(self.norm2(x))
        if self.degradation_aware:
            assert kd is not None  # NetR's blocks get K^D's embedding
            x = x + self.da_attn(self.norm3(x), flatten_frames(kd))
            x = x + self.ffn2(self.norm4(x))
        x = self.etm(x, u.flatten(0, 1))
        return x.unflatten(0, (b, t)), flow


def _head(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    """conv, LeakyReLU, conv, per frame."""
    return nn.Sequential(FrameConv(c_in, c_mid, 3, bias=True), lrelu(), FrameConv(c_mid, c_out, 3, bias=True))


# ----------------------------------------------------------------------------- NetD and NetR

class NetDPP(nn.Module):
    """Degradation learning network: X ``[B, T, 3, H, W]`` and u -> (F^{D,M}, f^{D,M}, f^Y, K^D logits)."""

    def __init__(self, cfg: FMANetPPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c, n6 = cfg.dim, 6 * cfg.num_flow
        self.encode = nn.Sequential(FrameConv(cfg.in_channels, c, 3, bias=True), lrelu(),
                                    FrameConv(c, c, 3, bias=True))
        self.blocks = nn.ModuleList(HRBA(cfg, degradation_aware=False) for _ in range(cfg.num_hrba))
        self.image_flow_head = _head(n6, n6, 6)       # f^Y: (dx, dy, mask) towards i+1, then i-1
        self.kernel_head = _head(c, c, 3 * cfg.ds_kernel_size ** 2)  # K^D for frames i-1, i, i+1

    def initial_flow(self, x: Tensor) -> Tensor:
        """f = 0 and o = 1 for every pair: ``[B, T, 6n, H, W]``."""
        b, t, _, h, w = x.shape
        f = x.new_zeros(b, t, 6 * self.cfg.num_flow, h, w, dtype=torch.float32)
        f[:, :, 2::3] = VISIBLE
        return f

    def begin(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Per frame: the first HRBA block's input (features, f = 0 with o = 1)."""
        return self.encode(x.to(compute_dtype(self))), self.initial_flow(x)

    def forward(self, x: Tensor, u: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        feat, flow = self.begin(x)
        for block in self.blocks:
            feat, flow = block(feat, flow, u)
        image_flow = self.image_flow_head(flow.to(feat.dtype)).float()
        return feat, flow, image_flow, self.kernel_head(feat)


class NetRPP(nn.Module):
    """Restoration network: X, u and NetD's priors -> the restored HR sequence."""

    def __init__(self, cfg: FMANetPPConfig) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.dim
        self.encode = FrameConv(cfg.in_channels + c, c, 3, bias=True)
        self.rdb = RDB(c, cfg.growth_rate, cfg.num_dense_layer, bias=True)
        self.kd_embed = FrameConv(3 * cfg.ds_kernel_size ** 2, c, 3, bias=True)
        self.blocks = nn.ModuleList(HRBA(cfg, degradation_aware=True, update_flow=i + 1 < cfg.num_hrba)
                                    for i in range(cfg.num_hrba))
        self.upsample = nn.Sequential(
            nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, 4 * c, 3, padding=1), nn.PixelShuffle(2), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(c, cfg.in_channels, 3, padding=1))

    def begin(self, x: Tensor, feat_d: Tensor, kernels: Tensor) -> tuple[Tensor, Tensor]:
        """Per frame: the first HRBA block's features and the DA queries from K^D."""
        b, t = x.shape[:2]
        dt = feat_d.dtype
        feat = self.rdb(self.encode(cat_channels(x.to(dt), feat_d)))
        # Softmax-normalised kernels as DA queries (the logits' scale is arbitrary): one softmax over
        # all 3 k_d^2 entries, as normalize_downsampling_kernels, in the feature dtype.
        k = channel_softmax(flatten_frames(kernels).to(dt)).unflatten(0, (b, t))
        return feat, self.kd_embed(k)

    def end(self, x: Tensor, feat: Tensor) -> Tensor:
        """Per frame: the upsampling block's residual over the bilinear x4 input (Eq. 8)."""
        b, t = x.shape[:2]
        residual = self.upsample(flatten_frames(feat)).float().unflatten(0, (b, t))
        base = F.interpolate(x.flatten(0, 1).float(), scale_factor=self.cfg.scale, mode="bilinear",
                             align_corners=False)
        return base.unflatten(0, (b, t)) + residual

    def forward(self, x: Tensor, u: Tensor, feat_d: Tensor, flow_d: Tensor, kernels: Tensor) -> Tensor:
        """``x [B, T, 3, H, W]`` (fp32) -> ``[B, T, 3, 4H, 4W]``."""
        feat, kd = self.begin(x, feat_d, kernels)
        flow = flow_d
        for block in self.blocks:
            feat, flow = block(feat, flow, u, kd)
        return self.end(x, feat)


def degrade(hr: Tensor, image_flow: Tensor, kernels: Tensor, scale: int) -> tuple[Tensor, Tensor]:
    """Eqs. 5-7: re-degrade each blurry LR frame from three sharp HR frames by exposure-aware FGDF.

    Args:
        hr: sharp HR sequence ``[B, T, 3, sH, sW]``.
        image_flow: f^Y ``[B, T, 6, H, W]`` (towards i+1, then i-1).
        kernels: K^D logits ``[B, T, 3 k_d^2, H, W]`` (frames i-1, i, i+1).
    Returns:
        (recon ``[B, T, 3, H, W]``, warped neighbours ``[B, T, 2, 3, sH, sW]``: Y_{i+1->i}, Y_{i-1->i}).
    """
    b, t = hr.shape[:2]
    nxt, prev = _neighbours(hr)
    to_next, to_prev = image_flow.chunk(2, dim=2)
    v_next, w_next = image_flow_warp(nxt, to_next, scale)
    v_prev, w_prev = image_flow_warp(prev, to_prev, scale)
    ones = torch.ones_like(hr[:, :, :1]).expand_as(hr)
    # Per frame i a window of three: (i-1 -> i, i, i+1 -> i), folded into the batch.
    warped = torch.stack((w_prev, hr.float(), w_next), dim=2).flatten(0, 1)
    validity = torch.stack((v_prev, ones, v_next), dim=2).flatten(0, 1)
    k = normalize_downsampling_kernels(kernels.flatten(0, 1).unflatten(1, (3, -1)))
    recon = dynamic_downsample(warped, validity, k, scale).unflatten(0, (b, t))
    return recon, torch.stack((w_next, w_prev), dim=2)




# ----------------------------------------------------------------------------- streaming

Frames = dict[str, Tensor]  # per-frame tensors of consecutive frames, each [B, K, ...]


def _cat_frames(a: Frames, b: Frames) -> Frames:
    def cat(x: Tensor, y: Tensor) -> Tensor:
        if x.dim() == 5 and x.shape[0] == 1:  # keep the frames channels-last (a 5-D cat would not)
            return torch.cat((flatten_frames(x), flatten_frames(y))).unsqueeze(0)
        return torch.cat((x, y), dim=1)
    return {k: cat(a[k], b[k]) for k in b}


def _take(item: Frames, lo: int, hi: int) -> Frames:
    return {k: v[:, lo:hi] for k, v in item.items()}


def _keep(item: Frames, i: int) -> Frames:
    """Frame i alone, copied: a view would keep the whole chunk's storage alive while it waits."""
    return {k: v[:, i:i + 1].clone() for k, v in item.items()}


class _BlockStream:
    """One HRBA block over a clip fed in order.

    Frame i's output needs frame i+1's input, so a push returns every frame but the newest,
    which waits (``pending``) with the features of the one before it (``before``; None at the
    clip's start, where a frame is its own previous neighbour, as in ``_neighbours``).
    """

    def __init__(self, block: HRBA) -> None:
        self.block = block
        self.pending: Frames | None = None
        self.before: Tensor | None = None

    def push(self, item: Frames) -> Frames | None:
        seq = item if self.pending is None else _cat_frames(self.pending, item)
        n = seq["feat"].shape[1]
        out = None
        if n > 1:
            out = self._refine(_take(seq, 0, n - 1), nxt=seq["feat"][:, 1:])
            self.before = seq["feat"][:, n - 2:n - 1].clone()
        self.pending = _keep(seq, n - 1)
        return out

    def finish(self) -> Frames | None:
        """The clip has ended: its last frame, its own next neighbour."""
        if self.pending is None:
            return None
        out = self._refine(self.pending, nxt=self.pending["feat"])
        self.pending = self.before = None
        return out

    def _refine(self, cur: Frames, nxt: Tensor) -> Frames:
        feat = cur["feat"]
        first = self.before if self.before is not None else feat[:, :1]
        prev = torch.cat((first, feat[:, :-1]), dim=1)
        out = dict(cur)
        out["feat"], out["flow"] = self.block(feat, cur["flow"], cur["u"], cur.get("kd"), neighbours=(nxt, prev))
        return out


class _PerFrame:
    """A step that needs no neighbours (no delay)."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def push(self, item: Frames) -> Frames:
        return self.fn(item)

    def finish(self) -> None:
        return None


class FMANetPPStream(SequenceStream):
    """FMA-Net++ over a clip fed in order, every frame computed once per block.

    Each of the 2M HRBA blocks delays its output by one frame (it waits for the next frame's
    input), so a frame comes out ``2M = frames.reach`` frames after it went in, and every
    block holds about two frames of features: memory does not grow with the clip, and nothing
    is computed twice (restoring chunks with 2M frames of context each way would compute
    (chunk + 4M) / chunk frames per output frame). The outputs equal ``restore_sequence`` of
    the whole clip. Pushing K frames at a time runs each step on K frames at once.
    """

    def __init__(self, model: "FMANetPP") -> None:
        self.model = model
        net_d, net_r = model.net_d, model.net_r
        if net_d is None or net_r is None:
            raise InputError(f"a stage-{model.config.stage} FMA-Net++ (no NetR) cannot restore")
        self.net_d, self.net_r = net_d, net_r
        blocks_d: list[HRBA] = list(net_d.blocks)  # type: ignore[arg-type]  # a ModuleList of HRBAs
        blocks_r: list[HRBA] = list(net_r.blocks)  # type: ignore[arg-type]
        self.steps: list[_BlockStream | _PerFrame] = [*(_BlockStream(b) for b in blocks_d), _PerFrame(self._between),
                                                      *(_BlockStream(b) for b in blocks_r), _PerFrame(self._end)]

    def push(self, lr: Tensor) -> list[Tensor]:
        x = lr.transpose(1, 2)  # frames-major [B, K, 3, H, W]
        feat, flow = self.net_d.begin(x)
        item: Frames = {"x": x, "u": self.model.embed(x), "feat": feat, "flow": flow}
        for step in self.steps:
            out = step.push(item)
            if out is None:  # the step holds the frames until the next push
                return []
            item = out
        return list(item["output"].unbind(1))

    def finish(self) -> list[Tensor]:
        # The frames each step still holds come out one by one; every later step takes them one
        # at a time too, so the clip's end costs no more memory than its middle.
        carry: list[Frames] = []
        for step in self.steps:
            out = [step.push(item) for item in carry] + [step.finish()]
            carry = [item for item in out if item is not None]
        return [frame for item in carry for frame in item["output"].unbind(1)]

    def _between(self, item: Frames) -> Frames:
        """NetD's K^D head, then NetR's first features, from NetD's last block."""
        kernels = self.net_d.kernel_head(item["feat"])
        feat, kd = self.net_r.begin(item["x"], item["feat"], kernels)
        return {"x": item["x"], "u": item["u"], "feat": feat, "flow": item["flow"], "kd": kd}

    def _end(self, item: Frames) -> Frames:
        return {"output": self.net_r.end(item["x"], item["feat"])}  # [B, K, 3, sH, sW]


# ----------------------------------------------------------------------------- the family

class FMANetPP(RestorationModel):
    """FMA-Net++: ETE, NetD and NetR; ``stage`` 1 = ETE alone, 2 = ETE + NetD, 3 = all.

    ``forward(lr, hr=None)`` with ``lr [B, 3, T, H, W]`` returns a dict:

    - ``output`` ``[B, 3, T, 4H, 4W]``: every frame restored (stage 3);
    - ``embedding`` ``[B, T, E]``: the ETE's exposure embeddings u;
    - ``image_flow`` ``[B, 6, T, H, W]``, ``kernels_d`` ``[B, 3 k_d^2, T, H, W]``: NetD's priors (stages 2, 3);
    - with ``hr``: ``recon`` ``[B, 3, T, H, W]`` (Eq. 5) and ``hr_warp`` ``[B, 3, 2, T, 4H, 4W]``
      (the neighbours warped onto each frame: from i+1, from i-1).

    ``restore_sequence`` restores every frame of a sequence; ``restore`` the centre frame of a
    window (the family interface's call). The Restorer streams long videos in chunks whose
    ends carry ``frames.reach`` frames of context, so a chunk's frames equal a whole-sequence
    forward.
    """

    preset = "fmanetpp"
    casts_inputs = True  # images stay fp32; the feature path is cast (see vsrdb.precision)

    def __init__(self, config: FMANetPPConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or FMANetPPConfig()
        self.config = replace(cfg, **overrides) if overrides else cfg
        cfg = self.config
        self.ete = ExposureEncoder(cfg.in_channels, cfg.ete_width, cfg.embed_dim)
        self.net_d = NetDPP(cfg) if cfg.stage >= 2 else None
        self.net_r = NetRPP(cfg) if cfg.stage >= 3 else None
        if cfg.stage >= 2:  # the ETE is trained in stage 1 only, then frozen
            self.ete.requires_grad_(False)
        self.channel_order = "RGB"

    # ------------------------------------------------------------------ the family interface

    @property
    def frames(self) -> FrameNeed:
        # Each HRBA block reaches one frame further each way: M in NetD, then M in NetR.
        return FrameNeed("sequence", self.config.num_seq, reach=2 * self.config.num_hrba)

    @property
    def min_size(self) -> int:
        return 1

    @property
    def can_restore(self) -> bool:
        return self.net_r is not None

    def inference_values_per_pixel(self) -> int:
        """Per LR pixel and frame, at the peak of inference: NetR's features, its RDB's dense
        stack, K^D's 3 k_d^2 logits and the x4 tail (16 RGB + 4 C at 2x), held for every frame."""
        c, k2 = self.config.dim, self.config.ds_kernel_size ** 2
        return 12 * c + 2 * 3 * k2

    def inference_bytes(self, height: int, width: int, *, frames: int = 1, bytes_per_value: int = 4) -> int:
        # Every frame of a push is held through the network at once.
        return int(height * width * frames * self.inference_values_per_pixel() * bytes_per_value * 1.25)

    def check_inputs(self, lr: Tensor, hr: Tensor | None = None) -> None:
        cfg = self.config
        check_video_inputs(lr, hr, in_channels=cfg.in_channels, scale=cfg.scale, min_size=self.min_size)

    def embed(self, x: Tensor) -> Tensor:
        """Exposure embeddings u ``[B, T, E]`` of frames-major ``x [B, T, 3, H, W]``."""
        b, t = x.shape[:2]
        return self.ete(x.flatten(0, 1).to(compute_dtype(self))).float().unflatten(0, (b, t))

    def forward(self, lr: Tensor, hr: Tensor | None = None) -> dict[str, Tensor]:
        self.check_inputs(lr, hr)
        x = lr.transpose(1, 2)  # frames-major
        u = self.embed(x)
        out = {"embedding": u}
        if self.net_d is None:
            return out
        feat, flow, image_flow, kernels = self.net_d(x, u)
        out.update(image_flow=image_flow.transpose(1, 2), kernels_d=kernels.transpose(1, 2))
        if hr is not None:
            recon, hr_warp = degrade(hr.transpose(1, 2), image_flow, kernels, self.config.scale)
            out.update(recon=recon.transpose(1, 2), hr_warp=hr_warp.permute(0, 3, 2, 1, 4, 5))
        if self.net_r is not None:
            out["output"] = self.net_r(x, u, feat, flow, kernels).transpose(1, 2)
        return out

    def restore_sequence(self, lr: Tensor) -> Tensor:
        """Every frame: ``lr [B, 3, T, H, W]`` -> ``[B, 3, T, 4H, 4W]``."""
        self.check_inputs(lr)
        if self.net_r is None or self.net_d is None:
            raise InputError(f"a stage-{self.config.stage} FMA-Net++ (no NetR) cannot restore")
        x = lr.transpose(1, 2)
        u = self.embed(x)
        feat, flow, _, kernels = self.net_d(x, u)
        return self.net_r(x, u, feat, flow, kernels).transpose(1, 2)

    def restore(self, lr: Tensor, *, features: list[Tensor] | None = None, flows: Tensor | None = None) -> Tensor:
        return self.restore_sequence(lr)[:, :, lr.shape[2] // 2]

    def sequence_stream(self, chunk: int) -> SequenceStream:
        """Streams without recomputation (``FMANetPPStream``); ``chunk`` frames per push run together."""
        if self.net_r is None:
            raise InputError(f"a stage-{self.config.stage} FMA-Net++ (no NetR) cannot restore")
        return FMANetPPStream(self)

    @torch.no_grad()
    def diagnostic_maps(self, window: Tensor, **inputs: Tensor) -> dict[str, np.ndarray]:
        """NetD's image flows f^Y towards the next frame, and the exposure-aware K^D (three
        kernels: frames i-1, i, i+1) at the centre frame's pixel of largest motion and at its centre."""
        if self.net_d is None:
            return {}
        x = window.float().to(next(self.parameters()).device).transpose(1, 2)
        _, _, image_flow, kernels = self.net_d(x, self.embed(x))
        t, h, w = x.shape[1], x.shape[-2], x.shape[-1]
        flows = image_flow[0, :, :2].float().cpu().numpy()  # towards i+1, [T, 2, h, w]
        top = max(float(np.sqrt((flows ** 2).sum(1)).max()), 1e-6)
        maps = {"NetD image flow f^Y (each frame to the next)": np.concatenate(
            [colorize_flow(flows[i], top) for i in range(t)], axis=1)}
        c, k = t // 2, self.config.ds_kernel_size
        kd = normalize_downsampling_kernels(kernels[0, c].float().unflatten(0, (3, k * k))[None])[0]
        kd = kd.reshape(3, k, k, h, w).cpu().numpy()  # type: ignore[assignment]
        mag = np.sqrt((flows[c] ** 2).sum(0))
        py, px = np.unravel_index(int(mag.argmax()), mag.shape)
        maps["K^D at the centre frame (rows: two pixels; columns: frames i-1, i, i+1)"] = kernel_mosaic(
            np.stack([[kd[j, :, :, y, x_] for j in range(3)] for y, x_ in ((int(py), int(px)), (h // 2, w // 2))]),
            cell=6)
        return maps

    def train(self, mode: bool = True) -> "FMANetPP":
        super().train(mode)
        if self.config.stage >= 2:  # the ETE is frozen after its own stage: batch norm included
            self.ete.eval()
        return self

    # ------------------------------------------------------------------ training recipe

    loss_weights_type = FMANetPPLossWeights

    def loss_terms(self, stage: TrainingStage, weights: FMANetPPLossWeights) -> tuple[str, ...]:
        if stage.name == "ete":
            return ("total", "contrastive")
        return ("total", "loss_d", "recon", "hr_warp", "flow") + (("restore",) if stage.name == "joint" else ())

    @property
    def training_flows(self) -> Mapping[str, str]:
        # Eq. 9's pseudo-GT flows (the paper: RAFT; here the config's estimator, DIS by default)
        # from each sharp LR frame to its neighbours: the dataset's flows start at the centre.
        return {"neighbour_flow": self.config.flow_estimator}

    def training_stages(self, weights: FMANetPPLossWeights) -> list[TrainingStage]:
        t = self.config.num_seq
        return [TrainingStage("ete", "stage1_ete", t, {"stage": 1}, replaced_by_init=True, legacy_key=None),
                TrainingStage("netd", "stage2_netd", t, {"stage": 2}, replaced_by_init=True, legacy_key="stage1"),
                TrainingStage("joint", "model", t, {"stage": 3}, legacy_key="stage2")]

    def trainable_parts(self, stage: TrainingStage) -> list[tuple[str, nn.Module]]:
        if self.net_d is None:
            return [("e", self.ete)]
        parts: list[tuple[str, nn.Module]] = [("d", self.net_d)]
        return parts + [("r", self.net_r)] if self.net_r is not None else parts

    def start_stage(self, stage: TrainingStage, previous: RestorationModel | None) -> None:
        if not isinstance(previous, FMANetPP):
            return
        self.ete.load_state_dict(previous.ete.state_dict())
        if self.net_r is not None and self.net_d is not None and previous.net_d is not None:
            self.net_d.load_state_dict(previous.net_d.state_dict())

    def training_loss(self, forward: LossFn, batch: Mapping[str, Tensor], stage: TrainingStage,
                      weights: FMANetPPLossWeights) -> tuple[Tensor, dict[str, Tensor]]:
        lr, hr = batch["lr"], batch["hr"]
        if self.net_d is None:
            if "exposure" not in batch:
                raise InputError("FMA-Net++'s ete stage needs exposure labels per frame (a dataset made with "
                                 "vsrdb synth --exposure)")
            u = forward(lr)["embedding"]
            loss = supervised_contrastive_loss(u.flatten(0, 1), batch["exposure"].flatten(), self.ETE_TEMPERATURE)
            return loss, {"contrastive": loss.detach(), "total": loss.detach()}
        out = forward(lr, hr)
        x, y = lr, hr
        terms = {"recon": F.l1_loss(out["recon"].float(), x),
                 "hr_warp": F.l1_loss(out["hr_warp"].float(), y.unsqueeze(2).expand_as(out["hr_warp"]))}
        loss_d = terms["recon"] + weights.hr_warp_pp * terms["hr_warp"]
        terms["flow"] = F.l1_loss(out["image_flow"].float()[:, [0, 1, 3, 4]], batch["neighbour_flow"])
        loss_d = loss_d + weights.flow * terms["flow"]
        terms["loss_d"] = loss_d
        total = loss_d
        if self.net_r is not None:
            terms["restore"] = F.l1_loss(out["output"].float(), y)
            total = terms["restore"] + weights.stage1 * loss_d
        terms["total"] = total
        return total, {k: v.detach() for k, v in terms.items()}

    def validation_pair(self, lr: Tensor, hr: Tensor, stage: TrainingStage,
                        **inputs: Tensor) -> tuple[Tensor, Tensor] | None:
        c = lr.shape[2] // 2
        if self.net_d is None:  # the ETE makes no picture
            return None
        if self.net_r is None:
            return self(lr, hr)["recon"][0, :, c], lr[0, :, c]
        return self.restore_sequence(lr)[0, :, c], hr[0, :, c]

    ETE_TEMPERATURE = 0.5  # Eq. S1's alpha (the supplement)


@register_model("fmanetpp")
def fmanetpp(**overrides: Any) -> FMANetPP:
    """FMA-Net++ at the paper's settings (M = 4, n = 9, k_d = 20, T = 10): 12,571,561 parameters."""
    return from_preset(FMANetPP, FMANetPPConfig(), overrides)


@register_model("fmanetpp-cpu")
def fmanetpp_cpu(**overrides: Any) -> FMANetPP:
    """A small FMA-Net++ for CPU training (ours): M = 2, n = 3, k_d = 12, C = 36."""
    return from_preset(FMANetPP, FMANetPPConfig(dim=36, num_hrba=2, num_flow=3, ds_kernel_size=12, num_heads=2,
                                                growth_rate=12, num_dense_layer=3, ete_width=16, embed_dim=64),
                       overrides)
