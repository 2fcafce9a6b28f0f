"""JFFRA's L1 cost volume (paper Eqs. 3-4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["l1_cost_volume"]


def l1_cost_volume(ref: Tensor, other: Tensor, radius: int = 4) -> Tensor:
    """L1 distance between each reference feature and the other map's features around it.

    ``C[l, m, h, w] = mean_c |ref[c, h, w] - other[c, h + l, w + m]|`` for ``l, m`` in
    ``[-radius, radius]`` (9x9 for the paper's radius 4). The paper writes the summed L1
    norm; the channel mean is the same up to the factor C and keeps the volume's scale
    independent of the feature width. Positions outside ``other`` read zeros.

    Args:
        ref: ``[N, C, H, W]``, the reference (centre) frame's features.
        other: ``[N, C, H, W]``, a neighbour's features already warped towards ``ref``.
        radius: search radius r; the window is (2r+1) x (2r+1).
    Returns:
        ``[N, (2r+1)^2, H, W]``, offsets in row-major order (l outer, m inner).
    """
    if ref.shape != other.shape:
        raise ValueError(f"l1_cost_volume: ref {tuple(ref.shape)} and other {tuple(other.shape)} differ")
    h, w = ref.shape[-2:]
    padded = F.pad(other, (radius, radius, radius, radius))
    # One offset at a time: an unfold of all (2r+1)^2 shifts would hold 81 copies of the map.
    costs = [(ref - padded[..., dy:dy + h, dx:dx + w]).abs().mean(1)
             for dy in range(2 * radius + 1) for dx in range(2 * radius + 1)]
    return torch.stack(costs, dim=1)
