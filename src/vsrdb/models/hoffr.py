"""HOFFR (Fang and Zhan, Neurocomputing 2022): high-resolution optical flow and a frame-recurrent
network for joint video super-resolution and deblurring.

Per frame t, with the blurry LR frames L_{t-1}, L_t and the previous output H_{t-1}:

1. POF (``FlowPredictor``) predicts the optical flow from L_t to L_{t-1} at several LR
   scales and at HR.
2. The previous output is warped by the HR flow and folded to LR size (space-to-depth,
   4x4 -> 48 channels), so the current frame sees it pixel-aligned.
3. PF (``ParallelFeatures``): a deblurring (DB) and a super-resolution (SR) branch of
   residual blocks run side by side on the same head features; each branch concatenates
   the outputs of its blocks. A conv on the DB features plus L_t is the deblurred LR frame
   (an auxiliary output with its own loss).
4. Attention fusion: DB and SR features are concatenated and refined by RCABs (RCAN's
   residual channel attention), then upsampled x4 (pixel shuffle) onto bicubic L_t.

Losses (the note's Eq. 10, all L2): SR on every output frame, DB on every deblurred LR frame
against the sharp LR frame, and the multi-scale flow warping loss: each LR-side flow warps
the previous *sharp* LR frame (area-downscaled for coarser scales) onto the current one.

Choices where the note is silent, following the paper's description and its FRVSR lineage:

- Recurrence starts from a black previous output and the first frame as its own
  predecessor (FRVSR's initialisation).
- POF is a small U-Net on the two stacked frames: flows are predicted coarse to fine
  (each level adds a residual to the upscaled coarser flow), and the HR flow is the
  bilinearly upscaled LR flow plus a residual predicted from pixel-shuffled features.
- The flow loss covers the LR-side scales (LR, LR/2, ... as ``flow_levels``) and skips
  frame 0, whose "previous" frame is itself. Loss weights lambda_DB = lambda_OF = 1.
- The network adds its output to a bicubic upscale of L_t (a global residual), as most
  x4 video SR networks do; the note does not say either way.

Public tensors are ``[B, C, T, H, W]`` in [0, 1]; flows point from frame t into frame t-1
(backward warping, as everywhere in vsrdb).
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops.losses import per_frame, temporal_terms
from ..ops.warp import flow_warp, resize_flow
from .blocks import compute_dtype, lrelu
from .family import FrameNeed, LossFn, RestorationModel, TrainingStage
from .inputs import check_video_inputs
from .layers import RCAB, ResidualBlock, Upsampler, conv3x3
from .registry import check_positive, check_rules, from_preset, register_model

__all__ = ["HOFFRConfig", "HOFFRLossWeights", "FlowPredictor", "ParallelFeatures", "HOFFR", "hoffr_loss"]


@dataclass(frozen=True)
class HOFFRLossWeights:
    """The note's Eq. 10 (all L2): SR on every output frame + ``hoffr_db`` * deblurred LR frames
    against the sharp LR + ``hoffr_flow`` * multi-scale warping of each previous sharp LR frame
    onto the next. The note gives no values; 1 each."""

    hoffr_db: float = 1.0    # lambda_DB
    hoffr_flow: float = 1.0  # lambda_OF
    temporal: float | None = None  # JFFRA's occlusion-aware temporal loss (ops.losses); None or 0: off
    temporal_alpha: float = 0.2


@dataclass(frozen=True)
class HOFFRConfig:
    """HOFFR hyper-parameters.

    Attributes:
        dim: PF and fusion feature channels.
        num_db_blocks / num_sr_blocks: residual blocks in the DB and SR branches.
        num_rcab: RCABs in the attention fusion; reduction: their channel-attention ratio.
        flow_dim: POF channels at LR (doubled at each coarser level).
        flow_levels: POF scales on the LR side (LR, LR/2, LR/4 for 3).
        unroll: frames the recurrence is unrolled over in training (the paper: 8). At
            inference the recurrence runs over the whole video. (Called ``num_seq`` before;
            checkpoints that say so still load.)
    """

    in_channels: int = 3
    dim: int = 64
    num_db_blocks: int = 5
    num_sr_blocks: int = 5
    num_rcab: int = 8
    reduction: int = 16
    flow_dim: int = 32
    flow_levels: int = 3
    scale: int = 4
    unroll: int = 8

    def __post_init__(self) -> None:
        check_positive(self, (f.name for f in fields(self)))
        check_rules(self, [(self.scale == 4, "scale: only x4 is implemented")])

    def inference_values_per_pixel(self) -> int:
        """Live floats per LR pixel at the peak of one frame's inference (the x4 tail:
        4*dim at 2x plus dim at 4x, with the PF branch outputs still held)."""
        return (2 * (self.num_db_blocks + self.num_sr_blocks) + 36) * self.dim


class FlowPredictor(nn.Module):
    """POF: flows from the current frame to the previous one, coarse LR scales to HR.

    ``forward(prev, cur)`` with ``[N, 3, H, W]`` frames returns a list of ``[N, 2, h, w]``
    flows: LR/2^(L-1), ..., LR/2, LR, then HR (x4), each in its own pixels.
    """

    def __init__(self, cfg: HOFFRConfig) -> None:
        super().__init__()
        c = [cfg.flow_dim * 2 ** i for i in range(cfg.flow_levels)]
        self.levels = cfg.flow_levels
        self.encoder = nn.ModuleList()
        for i, ci in enumerate(c):
            first = conv3x3(2 * cfg.in_channels, ci) if i == 0 else conv3x3(c[i - 1], ci, stride=2)
            self.encoder.append(nn.Sequential(first, lrelu(), conv3x3(ci, ci), lrelu()))
        # decoder[i] merges the upscaled level-(i+1) features with the level-i skip
        self.decoder = nn.ModuleList(
            nn.Sequential(conv3x3(c[i + 1] + c[i] + 2, c[i]), lrelu(), conv3x3(c[i], c[i]), lrelu())
            for i in range(cfg.flow_levels - 1))
        self.heads = nn.ModuleList(conv3x3(ci, 2) for ci in c)
        self.hr_features = nn.Sequential(conv3x3(c[0], 4 * c[0]), nn.PixelShuffle(2), lrelu(),
                                         conv3x3(c[0], 4 * c[0]), nn.PixelShuffle(2), lrelu())
        self.hr_head = conv3x3(c[0] + 2, 2)
        for head in (*self.heads, self.hr_head):  # start from zero motion
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        self.scale = cfg.scale

    def forward(self, prev: Tensor, cur: Tensor) -> list[Tensor]:
        h, w = cur.shape[-2:]
        m = 2 ** (self.levels - 1)
        ph, pw = -h % m, -w % m
        x = torch.cat((cur, prev), dim=1)
        if ph or pw:  # each level halves the size: pad to a multiple, crop every output back
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        skips = []
        for enc in self.encoder:
            x = enc(x)
            skips.append(x)
        feat = skips[-1]
        flow = self.heads[-1](feat)
        flows = [flow]
        for i in reversed(range(self.levels - 1)):
            up_flow = resize_flow(flow, 2.0)
            up_feat = F.interpolate(feat, scale_factor=2.0, mode="bilinear", align_corners=False)
            feat = self.decoder[i](torch.cat((up_feat, skips[i], up_flow), dim=1))
            flow = up_flow + self.heads[i](feat)
            flows.append(flow)
        hr_flow = resize_flow(flow, float(self.scale))
        hr_flow = hr_flow + self.hr_head(torch.cat((self.hr_features(feat), hr_flow), dim=1))
        flows.append(hr_flow)
        sizes = [(-(-h // 2 ** i), -(-w // 2 ** i)) for i in reversed(range(self.levels))]
        sizes.append((h * self.scale, w * self.scale))
        return [f[..., :sh, :sw] for f, (sh, sw) in zip(flows, sizes)]


class _Branch(nn.Module):
    """Residual blocks whose outputs are all concatenated and fused by a 1x1 conv."""

    def __init__(self, dim: int, num_blocks: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResidualBlock(dim) for _ in range(num_blocks))
        self.fuse = nn.Conv2d(num_blocks * dim, dim, 1)

    def forward(self, x: Tensor) -> Tensor:
        outs = []
        for block in self.blocks:
            x = block(x)
            outs.append(x)
        return self.fuse(torch.cat(outs, dim=1))


class ParallelFeatures(nn.Module):
    """PF: head conv on [L_t, folded warped H_{t-1}], then the DB and SR branches side by side.

    ``forward(x)`` with ``x [N, 3 + 3*s*s, H, W]`` returns ``(F_DB, F_SR)``, each ``[N, dim, H, W]``.
    """

    def __init__(self, cfg: HOFFRConfig) -> None:
        super().__init__()
        c_in = cfg.in_channels * (1 + cfg.scale ** 2)
        self.head = nn.Sequential(conv3x3(c_in, cfg.dim), lrelu())
        self.db = _Branch(cfg.dim, cfg.num_db_blocks)
        self.sr = _Branch(cfg.dim, cfg.num_sr_blocks)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.head(x)
        return self.db(f), self.sr(f)


class HOFFR(RestorationModel):
    """HOFFR; see the module docstring.

    ``forward(lr, hr=None)`` unrolls the recurrence over ``lr [B, 3, T, H, W]`` and returns:

    - ``outputs`` ``[B, 3, T, 4H, 4W]``: every frame restored; ``output`` is frame T // 2.
    - ``deblurred`` ``[B, 3, T, H, W]``: the DB branch's deblurred LR frames.
    - ``flows``: one ``[B, 2, T, h, w]`` per LR-side POF scale (coarsest first); frame 0's
      flow (to itself) is included but not trained.

    ``step`` is one recurrence step for streaming inference (``vsrdb.restore.Restorer``).

    Training: one stage, unrolled over ``unroll`` frames, with the note's loss (``hoffr_loss``)
    plus the occlusion-aware temporal loss when ``loss.temporal`` is set.
    """

    preset = "hoffr"
    casts_inputs = True  # images stay fp32; the feature path is cast (see vsrdb.precision)

    def __init__(self, config: HOFFRConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or HOFFRConfig()
        self.config = replace(cfg, **overrides) if overrides else cfg
        cfg = self.config
        self.pof = FlowPredictor(cfg)
        self.pf = ParallelFeatures(cfg)
        self.db_out = conv3x3(cfg.dim, cfg.in_channels)
        self.fuse = nn.Conv2d(2 * cfg.dim, cfg.dim, 1)
        self.rcabs = nn.Sequential(*(RCAB(cfg.dim, cfg.reduction) for _ in range(cfg.num_rcab)),
                                   conv3x3(cfg.dim, cfg.dim))
        self.upsample = Upsampler(cfg.dim, cfg.in_channels)
        self.channel_order = "RGB"

    @property
    def frames(self) -> FrameNeed:
        return FrameNeed("recurrent", self.config.unroll)

    @property
    def min_size(self) -> int:
        return 2 ** (self.config.flow_levels - 1)

    def inference_values_per_pixel(self) -> int:
        return self.config.inference_values_per_pixel()

    def _step(self, prev: Tensor, cur: Tensor, hr_prev: Tensor | None) -> tuple[Tensor, Tensor, list[Tensor]]:
        """One frame: ``prev``, ``cur`` ``[N, 3, H, W]``, ``hr_prev [N, 3, 4H, 4W]`` (None: a black
        frame, the start of a sequence) -> (HR output, deblurred LR, LR-side flows)."""
        s = self.config.scale
        if hr_prev is None:
            hr_prev = cur.new_zeros(cur.shape[0], cur.shape[1], cur.shape[2] * s, cur.shape[3] * s)
        # Images and the recurrent HR frame stay as given (fp32); the networks run in the
        # compute dtype, and the residuals are added back in fp32.
        dt = compute_dtype(self)
        cur_c = cur.to(dt)
        flows = self.pof(prev.to(dt), cur_c)
        warped = flow_warp(hr_prev, flows[-1]).to(dt)
        f_db, f_sr = self.pf(torch.cat((cur_c, F.pixel_unshuffle(warped, s)), dim=1))
        deblurred = cur + self.db_out(f_db)
        fused = self.fuse(torch.cat((f_db, f_sr), dim=1))
        fused = fused + self.rcabs(fused)
        base = F.interpolate(cur, scale_factor=s, mode="bicubic", align_corners=False)
        return base + self.upsample(fused), deblurred, flows[:-1]

    def step(self, prev: Tensor, cur: Tensor, state: Tensor | None) -> Tensor:
        """Inference: the restored ``cur`` ``[N, 3, 4H, 4W]``. ``state`` (the previous output) None
        starts a sequence."""
        return self._step(prev, cur, state)[0]

    def check_inputs(self, lr: Tensor, hr: Tensor | None = None) -> None:
        """Raise ValueError naming what was expected and what came (any number of frames T)."""
        check_video_inputs(lr, hr, in_channels=self.config.in_channels, scale=self.config.scale,
                           min_size=self.min_size)

    def forward(self, lr: Tensor, hr: Tensor | None = None) -> dict[str, Tensor | list[Tensor]]:
        self.check_inputs(lr, hr)
        t = lr.shape[2]
        outputs, deblurred, flows = [], [], []
        hr_prev = None
        for i in range(t):
            out, db, fl = self._step(lr[:, :, max(i - 1, 0)], lr[:, :, i], hr_prev)
            outputs.append(out)
            deblurred.append(db)
            flows.append(fl)
            hr_prev = out
        outs = torch.stack(outputs, dim=2)
        return {"outputs": outs, "output": outs[:, :, t // 2], "deblurred": torch.stack(deblurred, dim=2),
                "flows": [torch.stack(level, dim=2) for level in zip(*flows)]}

    def restore(self, lr: Tensor, *, features: list[Tensor] | None = None, flows: Tensor | None = None) -> Tensor:
        """``lr [B, 3, T, H, W]`` -> frame T // 2 restored with frames 0..T//2 as its history."""
        self.check_inputs(lr)
        c = lr.shape[2] // 2
        hr_prev = None
        for i in range(c + 1):
            hr_prev = self.step(lr[:, :, max(i - 1, 0)], lr[:, :, i], hr_prev)
        assert hr_prev is not None  # range(c + 1) is never empty
        return hr_prev

    loss_weights_type = HOFFRLossWeights

    def loss_terms(self, stage: TrainingStage, weights: HOFFRLossWeights) -> tuple[str, ...]:
        return ("total", "restore", "deblur", "flow_warp") + (("temporal",) if weights.temporal else ())

    def training_stages(self, weights: HOFFRLossWeights) -> list[TrainingStage]:
        return [TrainingStage("main", "model", self.config.unroll)]

    def training_loss(self, forward: LossFn, batch: Mapping[str, Tensor], stage: TrainingStage,
                      weights: HOFFRLossWeights) -> tuple[Tensor, dict[str, Tensor]]:
        lr, hr, flow = batch["lr"], batch["hr"], batch["flow"]
        out = forward(lr, hr)
        loss, terms = hoffr_loss(out, hr=hr, lr_sharp=batch["lr_sharp"], weights=weights)
        if weights.temporal:
            c = lr.shape[2] // 2
            temporal = temporal_terms(out["outputs"][:, :, c - 1:c + 2], hr[:, :, c - 1:c + 2],
                                      flow[:, :, c - 1:c + 2], weights.temporal_alpha)
            loss = loss + weights.temporal * temporal
            terms = {**terms, "temporal": temporal.detach(), "total": loss.detach()}
        return loss, terms


@register_model("hoffr")
def hoffr(**overrides: Any) -> HOFFR:
    """HOFFR at a width typical of its time (64 channels); the note gives no sizes."""
    return from_preset(HOFFR, HOFFRConfig(), overrides, renamed={"num_seq": "unroll"})


@register_model("hoffr-cpu")
def hoffr_cpu(**overrides: Any) -> HOFFR:
    """A HOFFR with about fmanet-cpu's parameter count, for equal-budget CPU comparisons."""
    return from_preset(HOFFR, HOFFRConfig(dim=48, num_db_blocks=4, num_sr_blocks=4, num_rcab=5, reduction=8,
                                          flow_dim=16), overrides, renamed={"num_seq": "unroll"})


def hoffr_loss(out: Mapping[str, Any], *, hr: Tensor, lr_sharp: Tensor, weights: HOFFRLossWeights = HOFFRLossWeights()
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """HOFFR's loss and its terms (detached).

    Args:
        out: ``HOFFR.forward``: outputs ``[B, 3, T, sH, sW]``, deblurred ``[B, 3, T, H, W]``,
            flows (a list of ``[B, 2, T, h, w]``, coarsest first, finest at LR).
        hr: sharp HR frames; lr_sharp: sharp LR frames ``[B, 3, T, H, W]``.
    """
    terms = {"restore": F.mse_loss(out["outputs"], hr), "deblur": F.mse_loss(out["deblurred"], lr_sharp)}
    flow_term = hr.new_zeros(())
    for flow in out["flows"]:
        size = flow.shape[-2:]
        sharp = lr_sharp if size == lr_sharp.shape[-2:] else per_frame(
            lambda x: F.interpolate(x, size=size, mode="area"), lr_sharp)
        frames = sharp.transpose(1, 2)  # [B, T, 3, h, w]
        # frame 0's predecessor is itself: its flow is not trained
        warped = flow_warp(frames[:, :-1].flatten(0, 1), flow[:, :, 1:].transpose(1, 2).flatten(0, 1))
        flow_term = flow_term + F.mse_loss(warped, frames[:, 1:].flatten(0, 1))
    terms["flow_warp"] = flow_term
    total = terms["restore"] + weights.hoffr_db * terms["deblur"] + weights.hoffr_flow * flow_term
    terms["total"] = total
    return total, {k: v.detach() for k, v in terms.items()}
