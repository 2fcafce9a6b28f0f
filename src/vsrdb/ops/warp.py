"""Backward warping: plain, multi-flow-mask (features) and scaled image warping.

Flows are in pixels, channel 0 = horizontal dx, channel 1 = vertical dy, and point from the
centre frame into the frame being warped (backward warping: out(p) = x(p + flow(p))).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .inference import eager_inference

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
    return _sample(x, _flow_grid(flow)).to(x.dtype)


def _sample(x: Tensor, grid: Tensor) -> Tensor:
    """``flow_warp``'s bilinear sampling in fp32: ``[N, C, H, W]`` at ``grid [N, H, W, 2]`` -> fp32."""
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True)


def _flow_grid(flow: Tensor) -> Tensor:
    """``flow [N, 2, H, W]`` in pixels -> grid_sample's normalised fp32 grid ``[N, H, W, 2]``.

    Positions are always fp32: bf16/fp16 hold integers exactly only up to 256/2048, so pixel
    coordinates in larger frames would snap to even pixels. (Sampling is fp32 too: grid_sample
    in bf16 is also about 3x slower on CPU.)
    """
    n, _, h, w = flow.shape
    flow = flow.float()
    xs, ys = _base_grid(h, w, flow)
    # align_corners=True with a 2/(size-1) normalisation, as the release does: pixel
    # centres map exactly onto grid_sample's corner convention.
    gx = (xs + flow[:, 0]) * (2.0 / max(w - 1, 1)) - 1.0
    gy = (ys + flow[:, 1]) * (2.0 / max(h - 1, 1)) - 1.0
    return torch.stack((gx, gy), dim=-1)


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
    frames = feat.flatten(0, 1)
    if eager_inference() and frames.is_contiguous(memory_format=torch.channels_last):
        from . import kernels  # here, not at the top: `python -m vsrdb.ops.kernels` imports this package first

        kernel = kernels.multi_flow_warp() if frames.device.type == "cpu" else None
        if kernel is not None and frames.dtype in (torch.float32, torch.bfloat16):
            # ops/csrc/multi_flow_warp.cpp: this branch's arithmetic in one pass, 4x faster
            return kernel(frames, flow_mask.flatten(0, 1).float(), n).unflatten(0, (b, t))
        return _multi_flow_warp_channels_last(frames, flow_mask.flatten(0, 1), n).unflatten(0, (b, t))
    # One grid_sample call for all frames and groups: fold (B, T, n) into the batch.
    groups = feat.reshape(b * t * n, c // n, h, w)
    fm = flow_mask.reshape(b * t * n, 3, h, w)
    warped = flow_warp(groups, fm[:, :2])
    mask = torch.sigmoid(fm[:, 2:3])
    warped = warped * mask if torch.is_grad_enabled() else warped.mul_(mask)
    return warped.reshape(b, t, c, h, w)


def _multi_flow_warp_channels_last(frames: Tensor, flow_mask: Tensor, n: int) -> Tensor:
    """Inference: ``multi_flow_warp`` on channels-last frames ``[N, C, H, W]``, result channels-last.

    A group of a channels-last frame is a strided view, which grid_sample reads as fast as a
    dense copy; writing each group's result straight into its place in a channels-last output
    spares the two layout copies around the batched call (the next convolution wants this
    layout), about a tenth of the warps' time.
    """
    nf, c, h, w = frames.shape
    out = torch.empty_like(frames, memory_format=torch.channels_last)

    def by_group(x: Tensor) -> Tensor:  # [C, H, W] channels-last -> [n, C/n, H, W] view
        return x.permute(1, 2, 0).reshape(h, w, n, c // n).permute(2, 3, 0, 1)

    for i in range(nf):
        fm = flow_mask[i].reshape(n, 3, h, w)
        # masked in fp32, converted to the features' dtype by the copy into place
        warped = _sample(by_group(frames[i]), _flow_grid(fm[:, :2])).mul_(torch.sigmoid(fm[:, 2:3].float()))
        by_group(out[i]).copy_(warped)
    return out


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
