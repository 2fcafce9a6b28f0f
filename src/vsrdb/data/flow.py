"""Optical flow from a pluggable estimator: FMA-Net's pseudo-ground-truth flow, JFFRA's initial flow.

Convention (the model's): the flow of frame t goes from the centre frame to frame t, in
pixels (dx, dy), so backward-warping frame t by it reproduces the centre frame. The paper
uses RAFT; DIS (OpenCV, no weights) is the default here, Farneback the alternative.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

__all__ = ["FLOW_ESTIMATORS", "estimate_flow", "window_flows", "initial_flows", "neighbour_flows",
           "register_flow_estimator"]

# name -> fn(centre_gray uint8 [H, W], other_gray uint8 [H, W]) -> float32 [H, W, 2]
FLOW_ESTIMATORS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {}
MIN_SIZE = 16  # smaller frames are edge-padded to this before estimation


def register_flow_estimator(name: str):
    def decorator(fn):
        FLOW_ESTIMATORS[name] = fn
        return fn
    return decorator


@register_flow_estimator("dis")
def _dis(centre: np.ndarray, other: np.ndarray) -> np.ndarray:
    import cv2

    dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)  # type: ignore[attr-defined]  # cv2's stubs
    return dis.calc(centre, other, None)


@register_flow_estimator("farneback")
def _farneback(centre: np.ndarray, other: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.calcOpticalFlowFarneback(centre, other, None, 0.5, 3, 15, 3, 5, 1.2, 0)  # type: ignore[call-overload, unused-ignore]


def _gray(frame: Tensor | np.ndarray) -> np.ndarray:
    """RGB ``[3, H, W]`` float in [0, 1] (or ``[H, W, 3]`` uint8) -> uint8 grey ``[H, W]``."""
    import cv2

    if isinstance(frame, Tensor):
        frame = (frame.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
    return cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY)


def estimate_flow(centre: Tensor | np.ndarray, other: Tensor | np.ndarray, method: str = "dis") -> Tensor:
    """Flow from ``centre`` to ``other`` as float32 ``[2, H, W]`` (dx, dy)."""
    if method not in FLOW_ESTIMATORS:
        raise ConfigError(f"unknown flow estimator {method!r}; known: {', '.join(sorted(FLOW_ESTIMATORS))}")
    a, b = _gray(centre), _gray(other)
    h, w = a.shape
    if min(h, w) < MIN_SIZE:  # DIS refuses frames under 12 px (tiny patches, JFFRA's smallest levels)
        import cv2

        ph, pw = max(0, MIN_SIZE - h), max(0, MIN_SIZE - w)
        a, b = (cv2.copyMakeBorder(z, 0, ph, 0, pw, cv2.BORDER_REPLICATE) for z in (a, b))
    flow = FLOW_ESTIMATORS[method](a, b)[:h, :w]
    return torch.from_numpy(np.ascontiguousarray(flow, dtype=np.float32)).permute(2, 0, 1)


def window_flows(frames: Tensor, method: str = "dis") -> Tensor:
    """Flows from the centre frame to every frame of a window.

    Args:
        frames: sharp LR window ``[3, T, H, W]``.
    Returns:
        ``[2, T, H, W]``; zero for the centre frame.
    """
    t = frames.shape[1]
    c = t // 2
    flows = [torch.zeros(2, *frames.shape[-2:]) if i == c else estimate_flow(frames[:, c], frames[:, i], method)
             for i in range(t)]
    return torch.stack(flows, dim=1)


def initial_flows(lr: Tensor, method: str = "dis") -> Tensor:
    """The estimator's flow from the centre frame to each frame of a batch of windows, for
    families with an ``input_flow`` (JFFRA): ``[B, 3, T, H, W]`` -> ``[B, T, 2, H, W]`` fp32 on
    ``lr``'s device (zero for the centre). Computed on the CPU, with no gradient."""
    with torch.no_grad():
        frames = lr.detach().float().cpu()
        flows = torch.stack([window_flows(frames[i], method) for i in range(frames.shape[0])])
    return flows.transpose(1, 2).to(lr.device, torch.float32)  # pixel offsets need fp32


def neighbour_flows(frames: Tensor, method: str = "dis") -> Tensor:
    """Flows from every frame to its next and previous frames, for sequence models (FMA-Net++'s
    pseudo-ground truth): ``[B, 3, T, H, W]`` -> ``[B, 4, T, H, W]`` fp32 (dx, dy towards i+1,
    then towards i-1; zero where the neighbour is the frame itself, at the sequence's ends)."""
    with torch.no_grad():
        x = frames.detach().float().cpu()
        b, _, t, h, w = x.shape
        out = torch.zeros(b, 4, t, h, w)
        for k in range(b):
            for i in range(t):
                if i + 1 < t:
                    out[k, 0:2, i] = estimate_flow(x[k, :, i], x[k, :, i + 1], method)
                if i > 0:
                    out[k, 2:4, i] = estimate_flow(x[k, :, i], x[k, :, i - 1], method)
    return out.to(frames.device)
