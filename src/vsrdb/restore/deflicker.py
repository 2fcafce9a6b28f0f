"""Deflicker: each restored frame blended with the previous one, warped onto it (``--deflicker``).

A window model restores every frame from its own window, so nothing ties an output to the one
before: codec noise that changes from frame to frame comes out as detail that changes too, which
a viewer sees as flicker (docs/builtin-model.md, issue 38). This ties them after the fact. The
previous *deflickered* output is warped onto the new one by DIS optical flow between the two
(``data.flow``, OpenCV), and blended in with weight ``alpha * exp(-d^2 / sigma^2)`` per pixel, where d is the RGB
distance between the warped previous frame and the new one: where they match (still or tracked
content) the blend averages codec noise away, where they do not (occlusions, failed matches, new
content) the new frame stays as it is. On held-out camera clips under H.264 at CRF 23 it brings
FMA-Net's tOF below bicubic's on tree and carphone with PSNR a little up; it does not cure the
flicker of fast motion (bikes), where the model's frames are wrong in different ways.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..data.flow import estimate_flow
from ..ops.warp import flow_warp

__all__ = ["SIGMA", "deflicker", "parse_share"]

SIGMA = 0.05  # the RGB distance (0-1 units) at which a match counts e^-1 of a full one


def parse_share(value: str | float) -> float:
    """The blend share ``--deflicker`` takes (command line, page, API, Restorer): a number in (0, 1].

    Raises ValueError("must be more than 0 and at most 1"); callers put the value and their own
    words for the option in front.
    """
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = math.nan
    if not 0 < share <= 1:
        raise ValueError("must be more than 0 and at most 1")
    return share


def deflicker(frame: Tensor, previous: Tensor | None, alpha: float, sigma: float = SIGMA) -> Tensor:
    """``frame`` ``[3, H, W]`` (float RGB in [0, 1], CPU) blended with ``previous`` (the last
    deflickered frame, same shape) warped onto it; ``frame`` itself when there is no previous."""
    if previous is None:
        return frame
    flow = estimate_flow(frame, previous, "dis")  # [2, H, W]: from frame to previous, pixels
    # Outside the previous frame the warp gives zeros: no match there, so the frame is kept.
    warped = flow_warp(previous.float().unsqueeze(0), flow.unsqueeze(0))[0]
    weight = (warped - frame).pow(2).mean(0, keepdim=True).div(-sigma ** 2).exp().mul(alpha)
    return torch.lerp(frame.float(), warped, weight)
