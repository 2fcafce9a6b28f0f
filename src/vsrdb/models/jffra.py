"""JFFRA (Merugu et al.): joint flow and feature refinement using attention, adapted to x4 joint
video super-resolution and deblurring.

For a window of T = 2N+1 blurry LR frames around frame t:

1. Temporal context: 3-D convolutions over the stacked frames give per-frame features F^0.
2. Initial flow Delta^0 from frame t to each neighbour, from a pluggable estimator run on
   the input frames (``vsrdb.data.flow.initial_flows``; DIS by default, the paper uses RAFT).
   It is an input, not learned: no gradient flows into it. The caller computes it (the
   family's ``input_flow`` names the estimator), so the model is a pure tensor function.
3. JFFR modules (Eq. 1) at every level of a U-Net, encoder and decoder. Each one, per
   neighbour: warps the neighbour's features by the current flow (Eq. 2), builds the L1
   cost volume against the centre's features over a 9x9 window (Eqs. 3-4), lets a flow
   head predict a flow residual from the cost volume and both features (Eq. 5), and warps
   again with the refined flow (Eqs. 6-7). The centre features and the two updated
   neighbours are concatenated, projected to queries, keys and values (Eqs. 8-9), and
   attention inside 8x8 windows yields one residual per frame (Eqs. 10-11).
4. An upsampling tail (pixel shuffle x4, on a bicubic upscale of the frame) restores every
   frame of the window; the centre is the output, and its neighbours feed the temporal
   consistency loss (``vsrdb.ops.losses.temporal_consistency_loss``, Eqs. 12-15).

Choices where the paper is silent (its Fig. 2 did not survive in our copy):

- The U-Net has ``len(dims)`` levels with stride-2 convolutions down and pixel-shuffle up,
  skip connections added; flows go down by area averaging and up bilinearly (both
  rescaled), so each level refines the flow of the level before it.
- The flow head is conv-LeakyReLU-conv-LeakyReLU-conv with its last layer zero-initialised,
  so training starts from the estimator's flow (the offset learning of Eq. 5). The cost
  volume is the channel mean of the L1 distance (the sum divided by C).
- Attention has ``num_heads`` heads over the concatenated T*C channels and an output
  projection; per Eq. 11 the residual of each neighbour is added to its unwarped features.
- For T > 3, every non-centre frame is a neighbour (the paper describes T = 3).

Public tensors are ``[B, C, T, H, W]`` in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..errors import InputError
from ..ops.attention import window_attention
from ..ops.cost_volume import l1_cost_volume
from ..ops.losses import temporal_terms
from ..ops.warp import flow_warp, resize_flow
from .blocks import compute_dtype, lrelu
from .family import FrameNeed, LossFn, RestorationModel, TrainingStage
from .inputs import check_video_inputs
from .layers import Upsampler, conv3x3
from .registry import check_positive, check_rules, from_preset, register_model

__all__ = ["JFFRAConfig", "JFFRALossWeights", "JFFR", "JFFRA", "jffra_loss"]


@dataclass(frozen=True)
class JFFRALossWeights:
    """Eq. 15: L1 on the centre frame + w1 L^T_{t,t-1} + w2 L^T_{t,t+1} (w1 = w2 = ``temporal``)."""

    temporal: float = 0.2        # w1 = w2 (0 switches the temporal terms off)
    temporal_alpha: float = 0.2  # alpha of Eq. 13, on 8-bit pixel values (ops.losses)


@dataclass(frozen=True)
class JFFRAConfig:
    """JFFRA hyper-parameters.

    Attributes:
        dims: feature channels per U-Net level, finest first (JFFR runs at every level).
        num_heads: attention heads (each level's T*dim must be divisible by it).
        window: attention window (the paper: 8).
        radius: cost-volume search radius (the paper's 9x9 window: 4).
        num_seq: T = 2N+1 input frames (the paper: 3); the centre is restored.
        flow_estimator: initial flow (``vsrdb.data.flow.FLOW_ESTIMATORS``).
    """

    in_channels: int = 3
    dims: tuple[int, ...] = (64, 96, 128)
    num_heads: int = 4
    window: int = 8
    radius: int = 4
    num_seq: int = 3
    scale: int = 4
    flow_estimator: str = "dis"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dims", tuple(self.dims))  # JSON and YAML give lists
        check_positive(self, ("in_channels", "num_heads", "window", "radius", "num_seq"))
        if not self.dims or any(not isinstance(d, int) or d < 1 for d in self.dims):
            raise ValueError(f"JFFRAConfig.dims must be positive integers, got {self.dims!r}")
        if self.num_seq % 2 == 0 or self.num_seq < 3:
            raise ValueError(f"JFFRAConfig.num_seq must be odd and at least 3 (2N+1), got {self.num_seq}")
        bad = [d for d in self.dims if (self.num_seq * d) % self.num_heads]
        if bad:
            raise ValueError(f"JFFRAConfig: T*dim ({self.num_seq}*{bad[0]}) is not divisible by "
                             f"num_heads={self.num_heads}")
        check_rules(self, [(self.scale == 4, "scale: only x4 is implemented")])

    def inference_values_per_pixel(self) -> int:
        """Live floats per LR pixel at the peak of one window's inference: the finest level's
        features, q/k/v and residuals of all T frames, and the centre's x4 tail."""
        return 8 * self.num_seq * self.dims[0] + 36 * self.dims[0]


class JFFR(nn.Module):
    """One joint flow and feature refinement step (Eqs. 1-11).

    ``forward(feats, flows)``: ``feats [B, T, C, H, W]`` and ``flows [B, T, 2, H, W]`` (centre
    to each frame; the centre's is zero) -> refined ``(feats, flows)`` of the same shapes.
    """

    def __init__(self, dim: int, num_seq: int, *, num_heads: int, window: int, radius: int) -> None:
        super().__init__()
        self.t, self.c = num_seq, num_seq // 2
        self.window, self.heads, self.radius = window, num_heads, radius
        cost = (2 * radius + 1) ** 2
        self.flow_head = nn.Sequential(conv3x3(cost + 2 * dim, dim), lrelu(), conv3x3(dim, dim), lrelu(),
                                       conv3x3(dim, 2))
        last: nn.Conv2d = self.flow_head[-1]  # type: ignore[assignment]  # Sequential indexes as Module
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)  # type: ignore[arg-type]  # conv3x3 has a bias
        self.qkv = nn.Conv2d(num_seq * dim, 3 * num_seq * dim, 1)
        self.proj = nn.Conv2d(num_seq * dim, num_seq * dim, 1)

    def forward(self, feats: Tensor, flows: Tensor) -> tuple[Tensor, Tensor]:
        b, t, c, h, w = feats.shape
        ref = feats[:, self.c]
        others = [i for i in range(t) if i != self.c]
        # All neighbours in one batch: [B*(T-1), ...]
        nb = feats[:, others].flatten(0, 1)
        nb_flow = flows[:, others].flatten(0, 1)
        ref_rep = ref.repeat_interleave(t - 1, dim=0)
        projected = flow_warp(nb, nb_flow)                                          # Eq. 2
        cost = l1_cost_volume(ref_rep, projected, self.radius)                      # Eqs. 3-4
        nb_flow = nb_flow + self.flow_head(torch.cat((cost, ref_rep, nb), dim=1))   # Eq. 5
        updated = flow_warp(nb, nb_flow).unflatten(0, (b, t - 1))                   # Eqs. 6-7
        aligned = [ref if i == self.c else updated[:, others.index(i)] for i in range(t)]
        con = torch.cat(aligned, dim=1)                                             # Eq. 8
        q, k, v = self.qkv(con).chunk(3, dim=1)                                     # Eq. 9
        residual = self.proj(window_attention(q, k, v, window=self.window, heads=self.heads))  # Eq. 10
        feats = feats + residual.unflatten(1, (t, c))                               # Eq. 11
        new_flows = flows.clone()
        new_flows[:, others] = nb_flow.unflatten(0, (b, t - 1))
        return feats, new_flows


class JFFRA(RestorationModel):
    """JFFRA for x4 joint SR and deblurring; see the module docstring.

    ``forward(lr, hr=None, *, flows)`` with ``lr [B, 3, T, H, W]`` and the initial flows
    ``[B, T, 2, H, W]`` (``vsrdb.data.flow.initial_flows(lr, model.input_flow)``) returns:

    - ``outputs`` ``[B, 3, T, 4H, 4W]``: every frame of the window restored;
    - ``output`` ``[B, 3, 4H, 4W]``: the centre frame;
    - ``flows`` ``[B, 2, T, H, W]``: the refined flows at LR from the centre to each frame.

    Training: one stage, Eq. 15 (L1 on the centre plus the occlusion-aware temporal loss on
    its two neighbours, weight 0.2 unless ``loss.temporal`` says otherwise).
    """

    preset = "jffra"
    casts_inputs = True  # images stay fp32; the feature path is cast (see vsrdb.precision)

    def __init__(self, config: JFFRAConfig | None = None, **overrides: Any) -> None:
        super().__init__()
        cfg = config or JFFRAConfig()
        self.config = replace(cfg, **overrides) if overrides else cfg
        cfg = self.config
        d, t = cfg.dims, cfg.num_seq
        self.context = nn.Sequential(nn.Conv3d(cfg.in_channels, d[0], 3, padding=(1, 1, 1)), lrelu(),
                                     nn.Conv3d(d[0], d[0], 3, padding=(1, 1, 1)), lrelu())

        def jffr(dim: int) -> JFFR:
            return JFFR(dim, t, num_heads=cfg.num_heads, window=cfg.window, radius=cfg.radius)

        self.encoder = nn.ModuleList(jffr(di) for di in d)
        self.down = nn.ModuleList(nn.Sequential(conv3x3(d[i], d[i + 1], stride=2), lrelu())
                                  for i in range(len(d) - 1))
        self.up = nn.ModuleList(nn.Sequential(conv3x3(d[i + 1], 4 * d[i]), nn.PixelShuffle(2), lrelu())
                                for i in range(len(d) - 1))
        self.decoder = nn.ModuleList(jffr(d[i]) for i in range(len(d) - 1))
        self.tail = Upsampler(d[0], cfg.in_channels)
        self.channel_order = "RGB"

    @property
    def frames(self) -> FrameNeed:
        return FrameNeed("window", self.config.num_seq)

    @property
    def min_size(self) -> int:
        return 2 ** (len(self.config.dims) - 1)

    @property
    def input_flow(self) -> str | None:
        return self.config.flow_estimator

    def inference_values_per_pixel(self) -> int:
        return self.config.inference_values_per_pixel()

    def check_inputs(self, lr: Tensor, hr: Tensor | None = None) -> None:
        """Raise ValueError naming what was expected and what came."""
        cfg = self.config
        check_video_inputs(lr, hr, in_channels=cfg.in_channels, scale=cfg.scale, min_size=self.min_size,
                           num_seq=cfg.num_seq)

    def _features(self, lr: Tensor, flows: Tensor | None) -> tuple[Tensor, Tensor]:
        """Finest-level refined features ``[B, T, C, H, W]`` and flows ``[B, T, 2, H, W]``."""
        b, _, t, h, w = lr.shape
        if flows is None:
            raise InputError("JFFRA takes its initial flow as an input: pass flows=vsrdb.data.flow.initial_flows("
                             "lr, model.input_flow)")
        if tuple(flows.shape) != (b, t, 2, h, w):
            raise InputError(f"flows must have shape {(b, t, 2, h, w)} ([B, T, 2, H, W]), got {tuple(flows.shape)}")
        m = self.min_size
        ph, pw = -h % m, -w % m
        x = lr
        if ph or pw:  # every level halves the size: pad to a multiple, crop at the end
            x = F.pad(lr.flatten(1, 2), (0, pw, 0, ph), mode="replicate").unflatten(1, lr.shape[1:3])
            flows = F.pad(flows.flatten(1, 2), (0, pw, 0, ph), mode="replicate").unflatten(1, flows.shape[1:3])
        flows = flows.float()  # pixel offsets stay fp32 whatever the compute dtype
        feats = self.context(x.to(compute_dtype(self))).transpose(1, 2)  # [B, T, C, H, W]
        skips = []
        for i, enc in enumerate(self.encoder):
            feats, flows = enc(feats, flows)
            if i < len(self.down):
                skips.append((feats, flows))
                feats = self.down[i](feats.flatten(0, 1)).unflatten(0, (b, t))
                flows = resize_flow(flows.flatten(0, 1), 0.5).unflatten(0, (b, t))
        for i in reversed(range(len(self.decoder))):
            skip, _ = skips[i]
            feats = self.up[i](feats.flatten(0, 1)).unflatten(0, (b, t)) + skip
            flows = resize_flow(flows.flatten(0, 1), 2.0).unflatten(0, (b, t))
            feats, flows = self.decoder[i](feats, flows)
        return feats[..., :h, :w], flows[..., :h, :w]

    def _tail(self, feats: Tensor, frames: Tensor) -> Tensor:
        """``feats [N, C, H, W]``, ``frames [N, 3, H, W]`` -> ``[N, 3, 4H, 4W]``."""
        s = self.config.scale
        return F.interpolate(frames, scale_factor=s, mode="bicubic", align_corners=False) + self.tail(feats)

    def forward(self, lr: Tensor, hr: Tensor | None = None, *, flows: Tensor | None = None) -> dict[str, Tensor]:
        self.check_inputs(lr, hr)
        b, _, t = lr.shape[:3]
        feats, refined = self._features(lr, flows)
        outs = self._tail(feats.flatten(0, 1), lr.transpose(1, 2).flatten(0, 1)).unflatten(0, (b, t))
        outs = outs.transpose(1, 2)
        return {"outputs": outs, "output": outs[:, :, t // 2], "flows": refined.transpose(1, 2)}

    def restore(self, lr: Tensor, *, features: list[Tensor] | None = None, flows: Tensor | None = None) -> Tensor:
        """Inference: ``lr [B, 3, T, H, W]`` and its initial ``flows`` -> the restored centre frame
        ``[B, 3, 4H, 4W]``."""
        self.check_inputs(lr)
        c = lr.shape[2] // 2
        feats, _ = self._features(lr, flows)
        return self._tail(feats[:, c], lr[:, :, c])

    loss_weights_type = JFFRALossWeights

    def loss_terms(self, stage: TrainingStage, weights: JFFRALossWeights) -> tuple[str, ...]:
        return ("total", "restore") + (("temporal",) if weights.temporal else ())

    def training_stages(self, weights: JFFRALossWeights) -> list[TrainingStage]:
        return [TrainingStage("main", "model", self.config.num_seq)]

    def training_loss(self, forward: LossFn, batch: Mapping[str, Tensor], stage: TrainingStage,
                      weights: JFFRALossWeights) -> tuple[Tensor, dict[str, Tensor]]:
        out = forward(batch["lr"], batch["hr"], flows=batch["input_flow"])
        return jffra_loss(out, hr=batch["hr"], flow_gt=batch["flow"], temporal=weights.temporal,
                          alpha=weights.temporal_alpha)


@register_model("jffra")
def jffra(**overrides: Any) -> JFFRA:
    """JFFRA with T=3, 8x8 attention windows and a 9x9 cost volume (the paper's settings);
    the widths are ours (the paper gives none)."""
    return from_preset(JFFRA, JFFRAConfig(), overrides)


@register_model("jffra-cpu")
def jffra_cpu(**overrides: Any) -> JFFRA:
    """A JFFRA with about fmanet-cpu's parameter count, for equal-budget CPU comparisons."""
    return from_preset(JFFRA, JFFRAConfig(dims=(32, 40, 56), num_heads=4), overrides)


def jffra_loss(out: Mapping[str, Any], *, hr: Tensor, flow_gt: Tensor, temporal: float, alpha: float = 0.2
               ) -> tuple[Tensor, dict[str, Tensor]]:
    """JFFRA's Eq. 15 and its terms (detached).

    Args:
        out: ``JFFRA.forward``: outputs ``[B, 3, T, sH, sW]``.
        hr: sharp HR window; flow_gt: pseudo-GT flow at LR from the centre ``[B, 2, T, H, W]``.
        temporal: the temporal terms' weight (w1 = w2; 0 switches them off); alpha: Eq. 13's.
    """
    c = hr.shape[2] // 2
    terms = {"restore": F.l1_loss(out["outputs"][:, :, c], hr[:, :, c])}
    total = terms["restore"]
    if temporal:
        terms["temporal"] = temporal_terms(out["outputs"][:, :, c - 1:c + 2], hr[:, :, c - 1:c + 2],
                                           flow_gt[:, :, c - 1:c + 2], alpha)
        total = total + temporal * terms["temporal"]
    terms["total"] = total
    return total, {k: v.detach() for k, v in terms.items()}
