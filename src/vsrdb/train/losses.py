"""Training losses: FMA-Net's (paper Eqs. 8-9, with the released weights), HOFFR's, JFFRA's,
and JFFRA's occlusion-aware temporal consistency loss, which any model can add.

FMA-Net:

Stage 1 (NetD alone):
    L_D = l1(recon, X_c) + 0.1 l1(hr_warp, Y_c over T) + 1e-4 l1(f^Y, pseudo-GT flow)
          + 0.1 l1(NetD anchor, X_sharp)
Stage 2 (both):
    L = l1(Y_hat, Y_c) + 0.1 L_D + 0.1 l1(X_w, X_c over T) + 0.1 l1(NetR anchor, X_sharp)

X_sharp is the bicubic-downsampled sharp sequence; the pseudo-GT flow goes from the centre
frame to each frame on X_sharp (zero for the centre), at LR size.

HOFFR (its note's Eq. 10, all L2): SR on every output frame + lambda_DB * deblurred LR frames
vs sharp LR + lambda_OF * multi-scale warping of each previous sharp LR frame onto the next.

JFFRA (Eq. 15): L1 on the centre frame + w1 * L^T_{t,t-1} + w2 * L^T_{t,t+1}.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..ops.warp import flow_warp, resize_flow

__all__ = ["LossWeights", "fmanet_loss", "hoffr_loss", "jffra_loss", "temporal_consistency_loss",
           "temporal_terms"]


@dataclass(frozen=True)
class LossWeights:
    """lambda_1..lambda_6 of Eqs. 8-9 (grid-searched by the authors)."""

    hr_warp: float = 0.1     # lambda_1: warping loss in Y
    flow: float = 1e-4       # lambda_2: pseudo-GT flow
    anchor_d: float = 0.1    # lambda_3: NetD's temporal anchor
    lr_warp: float = 0.1     # lambda_4: warping loss in X
    anchor_r: float = 0.1    # lambda_5: NetR's temporal anchor
    stage1: float = 0.1      # lambda_6: L_D inside the stage-2 loss
    hr_warp_pp: float = 1e-4  # FMA-Net++'s lambda_1 (its lambda_2 is ``flow``, lambda_3 ``stage1``)
    hoffr_db: float = 1.0    # HOFFR's lambda_DB (the note gives no value)
    hoffr_flow: float = 1.0  # HOFFR's lambda_OF
    # JFFRA's occlusion-aware temporal loss (w1 = w2). None: the family's default (JFFRA's
    # paper: 0.2; off for the others); a value switches it on for any model.
    temporal: float | None = None
    temporal_alpha: float = 0.2  # alpha of Eq. 13, on 8-bit pixel values (see temporal_consistency_loss)


def fmanet_loss(out: dict[str, Tensor], *, lr: Tensor, hr: Tensor, lr_sharp: Tensor, flow_gt: Tensor,
                stage: int, weights: LossWeights = LossWeights()) -> tuple[Tensor, dict[str, Tensor]]:
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


def temporal_consistency_loss(restored: Tensor, restored_nb: Tensor, gt: Tensor, gt_nb: Tensor, flow: Tensor,
                              alpha: float = 0.2) -> Tensor:
    """JFFRA's occlusion-aware temporal consistency loss L^T_{t,t'} (Eqs. 12-14), averaged.

    The restored neighbour is warped onto the restored frame by the ground-truth flow
    (Eq. 12) and compared in L1 (Eq. 14), weighted by m = exp(-alpha ||I_t - W(I_t')||_2^2)
    (Eq. 13), which is near 1 where the sharp frames agree after warping and near 0 where
    they do not (occlusions, pixels warped in from outside the frame).

    The norm is taken on 8-bit pixel values: that is the scale on which the paper's
    alpha = 0.2 gives the "fast transition from 1 to 0" it asks for (a 5-level difference
    gives m < 0.01); on [0, 1] values the mask would stay above 0.5 everywhere.

    Args:
        restored, restored_nb: restored frames t and t' ``[B, 3, H, W]``.
        gt, gt_nb: the sharp frames t and t' ``[B, 3, H, W]``.
        flow: ``[B, 2, H, W]`` from frame t to frame t' (backward warping of t' onto t).
    """
    with torch.no_grad():
        diff = (gt - flow_warp(gt_nb, flow)) * 255.0
        mask = torch.exp(-alpha * diff.pow(2).sum(1, keepdim=True))
    return (mask * (restored - flow_warp(restored_nb, flow)).abs()).mean()


def temporal_terms(restored: Tensor, hr: Tensor, flow_lr: Tensor, alpha: float) -> Tensor:
    """Eq. 15's temporal part for a restored window, summed over the centre's two neighbours.

    Args:
        restored: restored frames c-1, c, c+1 ``[B, 3, 3, sH, sW]``.
        hr: their sharp frames, the same shape.
        flow_lr: the pseudo-GT flow at LR from the centre to each of them ``[B, 2, 3, H, W]``;
            the ground-truth flow of Eq. 12 is it upscaled to HR.
    """
    s = hr.shape[-1] / flow_lr.shape[-1]
    total = hr.new_zeros(())
    for j in (0, 2):
        flow = resize_flow(flow_lr[:, :, j], s)
        total = total + temporal_consistency_loss(restored[:, :, 1], restored[:, :, j], hr[:, :, 1], hr[:, :, j],
                                                  flow, alpha)
    return total


def _per_frame(fn, x: Tensor) -> Tensor:
    """Apply a ``[N, C, H, W]`` function to every frame of ``[B, C, T, H, W]``."""
    b, t = x.shape[0], x.shape[2]
    return fn(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (b, t)).transpose(1, 2)


def hoffr_loss(out: dict, *, hr: Tensor, lr_sharp: Tensor, weights: LossWeights = LossWeights()
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
        sharp = lr_sharp if size == lr_sharp.shape[-2:] else _per_frame(
            lambda x: F.interpolate(x, size=size, mode="area"), lr_sharp)
        frames = sharp.transpose(1, 2)  # [B, T, 3, h, w]
        # frame 0's predecessor is itself: its flow is not trained
        warped = flow_warp(frames[:, :-1].flatten(0, 1), flow[:, :, 1:].transpose(1, 2).flatten(0, 1))
        flow_term = flow_term + F.mse_loss(warped, frames[:, 1:].flatten(0, 1))
    terms["flow_warp"] = flow_term
    total = terms["restore"] + weights.hoffr_db * terms["deblur"] + weights.hoffr_flow * flow_term
    terms["total"] = total
    return total, {k: v.detach() for k, v in terms.items()}


def jffra_loss(out: dict, *, hr: Tensor, flow_gt: Tensor, temporal: float, alpha: float = 0.2
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
