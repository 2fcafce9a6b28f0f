"""Score a model on whole clips against bicubic upsampling of the blurry input.

Frames are restored by the streaming ``Restorer`` (every frame, like ``vsrdb restore``);
scores follow the paper's protocol: frames whose T-window is incomplete (the first and last
T // 2) are excluded unless ``all_frames``.
"""

from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn as nn

from ..data.datasets import Clip
from ..data.resize import imresize
from ..data.video import _read_image, to_tensor
from ..restore import Restorer
from .metrics import psnr, ssim

__all__ = ["score_clips"]


def score_clips(model: nn.Module, clips: list[Clip], *, all_frames: bool = False, device: str = "cpu",
                scale: int = 4) -> dict:
    """Per-clip and average PSNR/SSIM of the model and of bicubic upsampling.

    Returns ``{"clips": {name: {...}}, "average": {...}, "seconds_per_frame": s}`` where each
    score dict has psnr, ssim, bicubic_psnr, bicubic_ssim and frames.
    """
    t = model.config.num_seq
    lo, hi = t // 2, t - 1 - t // 2
    restorer = Restorer(model, device=device)
    result, spent, count = {}, 0.0, 0
    for clip in clips:
        lr = [to_tensor(_read_image(p)) for p in clip.blur]
        if clip.blur_is_hr:
            lr = [imresize(f, 1 / scale).clamp(0, 1) for f in lr]
        keep = range(len(lr)) if all_frames else range(lo, len(lr) - hi)
        scores = {"psnr": [], "ssim": [], "bicubic_psnr": [], "bicubic_ssim": []}
        start = time.perf_counter()
        for i, out in enumerate(restorer.run(iter(lr))):
            if i not in keep:
                continue
            gt = to_tensor(_read_image(clip.sharp[i]))
            bic = imresize(lr[i], float(scale)).clamp(0, 1)
            scores["psnr"].append(psnr(out, gt))
            scores["ssim"].append(ssim(out, gt))
            scores["bicubic_psnr"].append(psnr(bic, gt))
            scores["bicubic_ssim"].append(ssim(bic, gt))
        spent += time.perf_counter() - start
        count += len(lr)
        result[clip.name] = {k: float(np.mean(v)) for k, v in scores.items()} | {"frames": len(scores["psnr"])}
    keys = ("psnr", "ssim", "bicubic_psnr", "bicubic_ssim")
    average = {k: float(np.mean([r[k] for r in result.values()])) for k in keys}
    average["frames"] = sum(r["frames"] for r in result.values())
    return {"clips": result, "average": average, "seconds_per_frame": spent / max(count, 1)}
