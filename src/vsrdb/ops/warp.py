"""Backward warping: plain, multi-flow-mask (features) and scaled image warping.

Flows are in pixels, channel 0 = horizontal dx, channel 1 = vertical dy, and point from the
centre frame into the frame being warped (backward warping: out(p) = x(p + flow(p))).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["flow_warp", "multi_flow_warp", "image_flow_warp", "resize_flow"]


def _base_grid(h: int, w: int, ref: Tensor) -> tuple[Tensor, Tensor]:
    ys = torch.arange(h, device=ref.device, dtype=ref.dtype).view(h, 1).expand(h, w)
    xs = torch.arange(w, device=ref.device, dtype=ref.dtype).view(1, w).expand(h, w)
    return xs, ys


def flow_warp(x: Tensor, flow: Tensor) -> Tensor:
    """Bilinear backward warp with zero padding.

    Args:
        x: ``[N, C, H, W]``.
        flow: ``[N, 2, H, W]`` in pixels (dx, dy).
    Returns:
        ``[N, C, H, W]``: ``x`` sampled at ``pixel + flow``; samples outside are zero.
    """
    n, _, h, w = x.shape
    # Positions are always fp32: bf16/fp16 hold integers exactly only up to 256/2048, so
    # pixel coordinates in larger frames would snap to even pixels. Sampling is fp32 too
    # (grid_sample in bf16 is also about 3x slower on CPU); the result keeps x's dtype.
    flow = flow.float()
    xs, ys = _base_grid(h, w, flow)
    # align_corners=True with a 2/(size-1) normalisation, as the release does: pixel
    # centres map exactly onto grid_sample's corner convention.
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    grid = torch.stack((gx, gy), dim=-1)
    out = F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out.to(x.dtype)


def multi_flow_warp(feat: Tensor, flow_mask: Tensor) -> Tensor:
    """Warp n channel groups of a feature sequence, each by its own flow and occlusion mask.

    Args:
        feat: ``[B, T, C, H, W]`` with C divisible by n.
        flow_mask: ``[B, T, 3n, H, W]``: n consecutive triples (dx, dy, mask logit).
    Returns:
        ``[B, T, C, H, W]``: group j of frame t warped by triple j of frame t and multiplied
        by sigmoid(mask logit); group order is kept.
    """
    b, t, c, h, w = feat.shape
    n = flow_mask.shape[2] // 3
    if flow_mask.shape[2] != 3 * n or c % n:
        raise ValueError(f"multi_flow_warp: {c} feature channels cannot be split into {flow_mask.shape[2]}/3 groups")
    # One grid_sample call for all frames and groups: fold (B, T, n) into the batch.
    groups = feat.reshape(b * t * n, c // n, h, w)
    fm = flow_mask.reshape(b * t * n, 3, h, w)
    warped = flow_warp(groups, fm[:, :2])
    mask = torch.sigmoid(fm[:, 2:3])
    warped = warped * mask if torch.is_grad_enabled() else warped.mul_(mask)
    return warped.reshape(b, t, c, h, w)


def image_flow_warp(image: Tensor, flow_mask: Tensor, scale: int = 1) -> tuple[Tensor, Tensor]:
    """Warp an image sequence by one flow-mask triple per frame given at 1/scale resolution.

    Args:
        image: ``[B, T, C, sH, sW]``.
        flow_mask: ``[B, T, 3, H, W]``: (dx, dy, mask logit) at LR resolution.
        scale: s; the flow is bilinearly upsampled and multiplied by s, the mask upsampled.
    Returns:
        ``(validity, warped)``, both ``[B, T, C, sH, sW]``: the warped all-ones image times
        the mask, and the warped image times the mask.
    """
    b, t, c, hh, ww = image.shape
    fm = flow_mask.reshape(b * t, 3, *flow_mask.shape[-2:]).float()  # flows in pixels need fp32
    flow = fm[:, :2]
    mask = torch.sigmoid(fm[:, 2:3])
    if scale > 1:
        flow = F.interpolate(flow, scale_factor=scale, mode="bilinear", align_corners=False) * scale
        mask = F.interpolate(mask, scale_factor=scale, mode="bilinear", align_corners=False)
    if flow.shape[-2:] != (hh, ww):
        raise ValueError(f"image_flow_warp: image is {hh}x{ww} but flow x{scale} is {tuple(flow.shape[-2:])}")
    # The validity map is the warp of an all-ones image: one extra channel in the same
    # grid_sample call gives it, identical in every colour channel.
    ones = torch.ones_like(image[:, :, :1]).reshape(b * t, 1, hh, ww)
    both = flow_warp(torch.cat((image.reshape(b * t, c, hh, ww), ones), dim=1), flow) * mask
    warped = both[:, :c].reshape(b, t, c, hh, ww)
    validity = both[:, c:].reshape(b, t, 1, hh, ww).expand(b, t, c, hh, ww)
    return validity, warped


def resize_flow(flow: Tensor, scale: float) -> Tensor:
    """A flow field ``[N, 2, H, W]`` resampled to ``scale`` times its size, in the new pixels.

    Bilinear for enlarging; area averaging for shrinking (so a coarse level sees the mean
    motion of the pixels it covers). The vectors are multiplied by ``scale`` too.
    """
    if scale == 1:
        return flow
    if scale > 1:
        out = F.interpolate(flow, scale_factor=scale, mode="bilinear", align_corners=False)
    else:
        out = F.interpolate(flow, scale_factor=scale, mode="area")
    return out * scale
