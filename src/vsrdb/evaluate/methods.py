"""What ``vsrdb evaluate`` can score: a trained model, or a classical baseline.

Every method turns a stream of blurry LR frames ``[3, H, W]`` in [0, 1] into a stream of
``[3, 4H, 4W]`` frames, one per input frame, so all are scored by the same code.

Baselines (no learning, nothing to download):
- ``bicubic``: MATLAB-compatible bicubic x4 of the blurry frame (the paper's reference point).
- ``lanczos``: Lanczos-3 x4 (Pillow's filter, on float data so nothing is rounded in between).
- ``rl-bicubic``: a classical deblur-then-upsample cascade: 5 Richardson-Lucy iterations with a
  Gaussian PSF of sigma 0.5 LR pixel, then bicubic x4. The PSF is not estimated: after x4
  shrinking most REDS-style blur is about one LR pixel, and on held-out clips a wider PSF or
  more iterations ring more than they sharpen (sigma 1, 10 iterations: -2.5 dB vs bicubic;
  sigma 0.5, 5 iterations: +0.15 dB on one Megamind frame).
"""

from __future__ import annotations

from typing import Callable, Iterable, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..data.resize import imresize
from ..errors import InputError
from ..models.family import RestorationModel

__all__ = ["BASELINES", "Method", "ModelMethod", "FrameMethod", "baseline", "richardson_lucy", "lanczos"]


class Method:
    """A named frame-stream restorer with the figures ``vsrdb evaluate`` reports."""

    name: str
    scored_window: int = 1  # the T of the protocol's frame exclusion (``FrameNeed.scored_window``)
    parameters: int = 0
    model: RestorationModel | None = None

    def run(self, frames: Iterable[Tensor]) -> Iterator[Tensor]:
        raise NotImplementedError


class FrameMethod(Method):
    """A per-frame function as a method (the baselines)."""

    def __init__(self, name: str, fn: Callable[[Tensor], Tensor]) -> None:
        self.name, self.fn = name, fn

    def run(self, frames: Iterable[Tensor]) -> Iterator[Tensor]:
        for f in frames:
            yield self.fn(f).clamp(0, 1)


class ModelMethod(Method):
    """A restoration model driven by the streaming ``Restorer`` (exactly what ``vsrdb restore`` does)."""

    def __init__(self, name: str, model: RestorationModel, *, device: str = "cpu", scale: int | None = None,
                 **restorer_args) -> None:
        """``scale``: the scale scored, at most the model's (default its own). A x4 model scored at
        x2 is shrunk by area averaging after each frame, as ``vsrdb restore --outscale 2`` does."""
        from ..restore import Restorer

        self.name, self.model, self.native = name, model, model.scale
        self.scale = model.scale if scale is None else scale
        if not 1 <= self.scale <= model.scale:
            raise InputError(f"{name}: a x{model.scale} model cannot be scored at x{self.scale}")
        self.scored_window = model.frames.scored_window
        self.parameters = sum(p.numel() for p in model.parameters())
        self.restorer = Restorer(model, device=device, **restorer_args)

    def run(self, frames: Iterable[Tensor]) -> Iterator[Tensor]:
        from ..data.resize import resample

        for out in self.restorer.run(frames):
            out = out.float().cpu()
            if self.scale != self.native:
                h, w = (n * self.scale // self.native for n in out.shape[-2:])
                out = resample(out, (h, w))
            yield out


def _gaussian_psf(sigma: float) -> Tensor:
    r = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    g = torch.exp(-x ** 2 / (2 * sigma ** 2))
    k = g[:, None] * g[None, :]
    return k / k.sum()


def richardson_lucy(img: Tensor, *, sigma: float = 0.5, iterations: int = 5) -> Tensor:
    """Richardson-Lucy deconvolution of ``[3, H, W]`` in [0, 1] with a Gaussian PSF; same shape out."""
    psf = _gaussian_psf(sigma).to(img)
    r = psf.shape[-1] // 2
    w = psf.expand(3, 1, *psf.shape)  # symmetric, so it is its own mirror image

    def blur(z: Tensor) -> Tensor:
        return F.conv2d(F.pad(z[None], (r, r, r, r), mode="replicate"), w, groups=3)[0]

    observed = img.clamp_min(1e-4)
    estimate = observed.clone()
    for _ in range(iterations):
        estimate = estimate * blur(observed / blur(estimate).clamp_min(1e-6))
    return estimate.clamp(0, 1)


def lanczos(img: Tensor, scale: int = 4) -> Tensor:
    """Lanczos-3 upsampling of ``[3, H, W]`` in [0, 1] (Pillow, per channel in float)."""
    from PIL import Image

    h, w = img.shape[-2:]
    planes = [np.asarray(Image.fromarray(c.numpy().astype(np.float32), mode="F").resize(
        (w * scale, h * scale), Image.Resampling.LANCZOS)) for c in img.float().cpu()]
    return torch.from_numpy(np.stack(planes))


BASELINES: dict[str, Callable[[Tensor, int], Tensor]] = {
    # at x1, bicubic is the blurry input itself: the baseline a deblurring model must beat
    "bicubic": lambda f, s: imresize(f, float(s)) if s > 1 else f,
    "lanczos": lambda f, s: lanczos(f, s) if s > 1 else f,
    "rl-bicubic": lambda f, s: imresize(richardson_lucy(f), float(s)) if s > 1 else richardson_lucy(f),
}


def baseline(name: str, scale: int = 4) -> FrameMethod:
    """A classical method at ``scale`` (1: the input as it is, or Richardson-Lucy for rl-bicubic)."""
    if name not in BASELINES:
        raise InputError(f"unknown baseline {name!r} (choose from {', '.join(BASELINES)})")
    fn = BASELINES[name]
    label = "input" if name == "bicubic" and scale == 1 else name
    return FrameMethod(label, lambda f: fn(f, scale))
