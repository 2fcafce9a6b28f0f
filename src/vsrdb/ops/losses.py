"""Loss functions more than one family uses: JFFRA's occlusion-aware temporal consistency loss
(which any family can add with ``loss.temporal``) and a per-frame helper.

Pure tensor functions; each family's own loss lives with the family (``vsrdb.models``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .warp import flow_warp, resize_flow

__all__ = ["temporal_consistency_loss", "temporal_terms", "per_frame"]


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


def per_frame(fn, x: Tensor) -> Tensor:
    """Apply a ``[N, C, H, W]`` function to every frame of ``[B, C, T, H, W]``."""
    b, t = x.shape[0], x.shape[2]
    return fn(x.transpose(1, 2).flatten(0, 1)).unflatten(0, (b, t)).transpose(1, 2)
