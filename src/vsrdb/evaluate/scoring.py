"""Scoring one clip as a stream of (output, target) frames, with the paper's frame protocol.

The paper scores only frames whose T-window is complete: the first and last ``T // 2``
frames of each clip are left out (``excluded_ends``). tOF is averaged over the consecutive
pairs of scored frames. Each scored frame also gets its motion magnitude, the mean flow norm
between the previous target frame and it (the next one for a clip's first frame), for the
motion bins of the paper's Table 3.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from torch import Tensor

from ..errors import InputError
from .metrics import crop_border, farneback, flow_difference, motion_magnitude, psnr, ssim, to_grey_u8, to_y

__all__ = ["METRICS", "MOTION_BINS", "ScoreOptions", "ClipScore", "SequenceScorer", "excluded_ends", "average",
           "motion_bins", "exposure_levels"]

METRICS = ("psnr", "ssim", "tof")
MOTION_BINS = ((0.0, 20.0, "[0,20)"), (20.0, 40.0, "[20,40)"), (40.0, float("inf"), ">=40"))


def excluded_ends(num_seq: int) -> tuple[int, int]:
    """Frames left out at the start and end of a clip for a T-frame model (T=3: one each)."""
    return num_seq // 2, num_seq - 1 - num_seq // 2


@dataclass(frozen=True)
class ScoreOptions:
    """How frames are scored. The defaults are the paper's protocol.

    num_seq: the T whose incomplete windows are excluded; all_frames scores every frame.
    y_channel / border: luma-only PSNR/SSIM and a border crop, for comparison with other papers
    (tOF is always on the whole grey frame).
    """

    num_seq: int = 3
    all_frames: bool = False
    y_channel: bool = False
    border: int = 0

    def kept(self, index: int, length: int) -> bool:
        if self.all_frames:
            return True
        lo, hi = excluded_ends(self.num_seq)
        return lo <= index < length - hi


@dataclass
class ClipScore:
    """Per-frame scores of one clip; ``frames`` are the scored frame indices."""

    frames: list[int] = field(default_factory=list)
    psnr: list[float] = field(default_factory=list)
    ssim: list[float] = field(default_factory=list)
    motion: list[float] = field(default_factory=list)
    tof_pairs: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        """``{"psnr", "ssim", "tof", "frames"}``: means over scored frames (tOF over scored pairs)."""
        return {"psnr": _mean(self.psnr), "ssim": _mean(self.ssim), "tof": _mean(self.tof_pairs),
                "frames": len(self.frames)}


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


class SequenceScorer:
    """Feed a clip's frames in order with ``add``; ``result()`` gives its ``ClipScore``.

    Only the previous grey frames and target flow are held, so clips of any length stream.
    ``length`` is the clip's frame count, which the protocol's exclusion needs up front.
    """

    def __init__(self, length: int, options: ScoreOptions) -> None:
        self.length = length
        self.opt = options
        self.score = ClipScore()
        self._index = 0
        self._prev: tuple[np.ndarray, np.ndarray, bool] | None = None  # grey output, grey target, kept
        self._first_target: np.ndarray | None = None

    def add(self, output: Tensor, target: Tensor) -> None:
        """One ``[3, H, W]`` output frame in [0, 1] and its target, equal sizes (checked by the caller)."""
        i, opt = self._index, self.opt
        kept = opt.kept(i, self.length)
        grey_out, grey_gt = to_grey_u8(output), to_grey_u8(target)
        if kept:
            h, w = output.shape[-2:]
            if min(h, w) - 2 * opt.border < 11:  # SSIM's 11x11 window must fit what is left
                raise InputError(f"--crop-border {opt.border} leaves {w - 2 * opt.border}x{h - 2 * opt.border} of "
                                 f"{w}x{h} frames; PSNR/SSIM need at least 11x11")
            a, b = (to_y(output), to_y(target)) if opt.y_channel else (output, target)
            a, b = crop_border(a, opt.border), crop_border(b, opt.border)
            self.score.frames.append(i)
            self.score.psnr.append(psnr(a, b))
            self.score.ssim.append(ssim(a, b))
        if self._prev is not None:
            p_out, p_gt, p_kept = self._prev
            flow_gt = farneback(p_gt, grey_gt)
            if kept:
                self.score.motion.append(motion_magnitude(flow_gt))
                if p_kept:
                    self.score.tof_pairs.append(flow_difference(farneback(p_out, grey_out), flow_gt))
            if i == 1 and opt.kept(0, self.length):  # a clip's first frame takes the motion to its successor
                self.score.motion.insert(0, motion_magnitude(flow_gt))
        elif kept and self.length == 1:
            self.score.motion.append(0.0)
        self._prev = (grey_out, grey_gt, kept)
        self._index += 1

    def result(self) -> ClipScore:
        if self._index != self.length:
            raise ValueError(f"scored {self._index} frames of a clip said to have {self.length}")
        return self.score


def average(summaries: dict[str, dict]) -> dict[str, float | int]:
    """The average row over clips: the mean of the clips' means (each clip counts once), frames summed."""
    rows = list(summaries.values())
    out = {k: float(np.nanmean([r[k] for r in rows])) if rows else float("nan") for k in METRICS}
    out["frames"] = int(sum(r["frames"] for r in rows))
    return out


def motion_bins(scores: dict[str, ClipScore]) -> dict[str, dict[str, float | int]]:
    """PSNR/SSIM over all scored frames of all clips, binned by motion magnitude (Table 3's bins).

    tOF is binned by the motion of the pair's second frame. Empty bins are left out.
    """
    out = {}
    for lo, hi, label in MOTION_BINS:
        p, s, t, n = [], [], [], 0
        for sc in scores.values():
            tof_at = dict(zip(_pair_ends(sc), sc.tof_pairs))
            for f, m, a, b in zip(sc.frames, sc.motion, sc.psnr, sc.ssim):
                if lo <= m < hi:
                    p.append(a)
                    s.append(b)
                    n += 1
                    if f in tof_at:
                        t.append(tof_at[f])
        if n:
            out[label] = {"psnr": _mean(p), "ssim": _mean(s), "tof": _mean(t), "frames": n}
    return out


def exposure_levels(scores: dict[str, ClipScore], levels: dict[str, tuple[int, ...]]) -> dict[str, dict]:
    """PSNR/SSIM/tOF over all scored frames grouped by their exposure level (datasets made with
    ``vsrdb synth --exposure``: REDS-ME clips have one level, REDS-RE clips change it); tOF goes
    by the pair's second frame, as for the motion bins."""
    groups: dict[int, tuple[list, list, list]] = {}
    for name, sc in scores.items():
        if name not in levels:
            continue
        tof_at = dict(zip(_pair_ends(sc), sc.tof_pairs))
        for f, a, b in zip(sc.frames, sc.psnr, sc.ssim):
            p, s_, t = groups.setdefault(levels[name][f], ([], [], []))
            p.append(a)
            s_.append(b)
            if f in tof_at:
                t.append(tof_at[f])
    return {f"5:{lvl}": {"psnr": _mean(p), "ssim": _mean(s_), "tof": _mean(t), "frames": len(p)}
            for lvl, (p, s_, t) in sorted(groups.items())}


def _pair_ends(sc: ClipScore) -> list[int]:
    """The second frame of each scored tOF pair, in order."""
    kept = set(sc.frames)
    return [f for f in sc.frames if f - 1 in kept]
