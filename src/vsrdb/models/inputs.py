"""The input check every model in the registry runs before its forward pass.

One function so that every model rejects a bad clip with the same one-line message: restore and
evaluate pass these messages on to users, naming what was expected and what came.
"""

from __future__ import annotations

from torch import Tensor

from ..errors import InputError

__all__ = ["check_video_inputs"]


def check_video_inputs(lr: Tensor, hr: Tensor | None, *, in_channels: int, scale: int, min_size: int,
                       num_seq: int | None = None) -> None:
    """Raise InputError unless ``lr`` is ``[B, in_channels, T, H, W]`` floating point with H, W >= min_size,
    T == num_seq (any T when None), and ``hr`` (if given) is ``lr``'s shape with H, W times ``scale``."""
    t_name = "T" if num_seq is None else str(num_seq)
    if not isinstance(lr, Tensor) or lr.dim() != 5:
        got = f"{lr.dim()}-D {tuple(lr.shape)}" if isinstance(lr, Tensor) else type(lr).__name__
        raise InputError(f"lr must be a 5-D tensor [B, {in_channels}, {t_name}, H, W], got {got}")
    b, c, t, h, w = lr.shape
    if c != in_channels:
        raise InputError(f"lr must have {in_channels} channels in dim 1 ([B, C, T, H, W]), got {c} "
                         f"(shape {tuple(lr.shape)})")
    if num_seq is not None and t != num_seq:
        raise InputError(f"lr must have T={num_seq} frames in dim 2, got {t} (shape {tuple(lr.shape)})")
    if h < min_size or w < min_size:
        raise InputError(f"lr frames must be at least {min_size}x{min_size}, got {h}x{w}")
    if not lr.is_floating_point():
        raise InputError(f"lr must be a floating-point tensor in [0, 1], got {lr.dtype}")
    if hr is not None:
        want = (b, c, t, h * scale, w * scale)
        if not isinstance(hr, Tensor) or tuple(hr.shape) != want:
            got = str(tuple(hr.shape)) if isinstance(hr, Tensor) else type(hr).__name__
            raise InputError(f"hr must have shape {want} (lr x{scale}), got {got}")
