"""FMA-Net's training losses (paper Eqs. 8-9, with the released weights).

Stage 1 (NetD alone):
    L_D = l1(recon, X_c) + 0.1 l1(hr_warp, Y_c over T) + 1e-4 l1(f^Y, pseudo-GT flow)
          + 0.1 l1(NetD anchor, X_sharp)
Stage 2 (both):
    L = l1(Y_hat, Y_c) + 0.1 L_D + 0.1 l1(X_w, X_c over T) + 0.1 l1(NetR anchor, X_sharp)

X_sharp is the bicubic-downsampled sharp sequence; the pseudo-GT flow goes from the centre
frame to each frame on X_sharp (zero for the centre), at LR size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

__all__ = ["LossWeights", "fmanet_loss"]


@dataclass(frozen=True)
class LossWeights:
    """lambda_1..lambda_6 of Eqs. 8-9 (grid-searched by the authors)."""

    hr_warp: float = 0.1     # lambda_1: warping loss in Y
    flow: float = 1e-4       # lambda_2: pseudo-GT flow
    anchor_d: float = 0.1    # lambda_3: NetD's temporal anchor
    lr_warp: float = 0.1     # lambda_4: warping loss in X
    anchor_r: float = 0.1    # lambda_5: NetR's temporal anchor
    stage1: float = 0.1      # lambda_6: L_D inside the stage-2 loss


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
