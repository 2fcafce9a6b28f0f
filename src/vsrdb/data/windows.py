"""Sliding windows over clips: which frames a window centred on a frame holds."""

from __future__ import annotations

__all__ = ["window_indices"]


def window_indices(centre: int, length: int, num_frames: int | None = None) -> list[int]:
    """The ``length`` frame indices of the window centred on ``centre`` (``length // 2`` before it).

    At the clip's ends the nearest frame is repeated (index 0, or ``num_frames - 1`` when the
    clip's length is known), as the released FMA-Net pads its test windows.
    """
    c = length // 2
    last = None if num_frames is None else num_frames - 1
    return [max(centre + k, 0) if last is None else min(max(centre + k, 0), last) for k in range(-c, length - c)]
