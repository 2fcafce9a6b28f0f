"""2D convolutions with the elementwise work after them folded in: an activation, or a sum.

On a CPU, oneDNN applies a LeakyReLU or adds into an existing tensor while a convolution's
output is still in cache ("post-ops"), where the plain path writes the output, reads it back
for ``leaky_relu`` or ``add_`` and writes it again. FMA-Net's residual dense blocks are
mostly such sums of small convolutions, so in inference that second pass was a fifth of the
CPU's time. Same arithmetic; the sum is formed in the accumulator's dtype either way.

Every function falls back to ``F.conv2d`` plus the plain op where oneDNN's fused kernels do
not apply: gradients being recorded, a device other than the CPU, a dtype other than fp32 or
bf16, or operands not in channels-last memory.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["conv2d_lrelu", "conv2d_gelu", "conv2d_mul", "conv2d_add", "conv2d_add_", "fusable", "unfused"]

_enabled = True


@contextmanager
def unfused() -> Iterator[None]:
    """Run the plain ops inside: the same numbers, but visible to ``torch.utils.flop_counter``
    (which counts ``aten.convolution`` and not oneDNN's fused kernels)."""
    global _enabled
    before, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = before

_HAS_ONEDNN = torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_convolution_pointwise")
_FUSED_DTYPES = (torch.float32, torch.bfloat16)


def _channels_last(x: Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)


def fusable(x: Tensor, weight: Tensor, *others: Tensor) -> bool:
    """Whether oneDNN's fused kernels take these operands (else the plain path runs)."""
    # Not while torch.export/compile traces: the fused kernels have no fake-tensor rules, and a
    # traced graph (ONNX) should hold plain convolutions anyway.
    return (_enabled and _HAS_ONEDNN and x.device.type == "cpu" and not torch.compiler.is_compiling()
            and x.dtype in _FUSED_DTYPES and weight.dtype == x.dtype
            and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
            and _channels_last(x) and all(_channels_last(o) and o.dtype == x.dtype for o in others))


def _pads(weight: Tensor, padding: int | None) -> list[int]:
    p = weight.shape[-1] // 2 if padding is None else padding
    return [p, p]


def conv2d_lrelu(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, padding: int | None = None,
                 slope: float = 0.2) -> Tensor:
    """``leaky_relu(conv2d(x, weight, bias), slope)``; ``x [N, Cin, H, W]`` -> ``[N, Cout, H, W]``.

    ``padding`` defaults to k // 2 ("same" for odd kernels).
    """
    if fusable(x, weight):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, _pads(weight, padding), [1, 1], [1, 1], 1,
                                                       "leaky_relu", [slope], "")
    return F.leaky_relu(F.conv2d(x, weight, bias, padding=_pads(weight, padding)), slope, inplace=True)


def conv2d_gelu(x: Tensor, weight: Tensor, bias: Tensor | None = None, *, padding: int | None = None,
                groups: int = 1) -> Tensor:
    """``gelu(conv2d(x, weight, bias))`` with the exact (erf) GELU; ``[N, Cin, H, W]`` -> ``[N, Cout, H, W]``."""
    if fusable(x, weight):
        return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, _pads(weight, padding), [1, 1], [1, 1],
                                                       groups, "gelu", [], "none")
    return F.gelu(F.conv2d(x, weight, bias, padding=_pads(weight, padding), groups=groups))


def conv2d_mul(x: Tensor, other: Tensor, weight: Tensor, bias: Tensor | None = None, *,
               padding: int | None = None, groups: int = 1) -> Tensor:
    """``conv2d(x, weight, bias) * other``; ``other`` ``[N, Cout, H, W]`` is left alone."""
    if fusable(x, weight, other):
        return torch.ops.mkldnn._convolution_pointwise.binary(x, other, weight, bias, _pads(weight, padding),
                                                              [1, 1], [1, 1], groups, "mul", 1.0, None, [], None)
    return F.conv2d(x, weight, bias, padding=_pads(weight, padding), groups=groups) * other


def conv2d_add(x: Tensor, other: Tensor, weight: Tensor, bias: Tensor | None = None, *,
               padding: int | None = None) -> Tensor:
    """``conv2d(x, weight, bias) + other`` as a new tensor; ``other`` ``[N, Cout, H, W]`` is left alone."""
    if fusable(x, weight, other):
        return torch.ops.mkldnn._convolution_pointwise.binary(x, other, weight, bias, _pads(weight, padding),
                                                              [1, 1], [1, 1], 1, "add", 1.0, None, [], None)
    return F.conv2d(x, weight, bias, padding=_pads(weight, padding)) + other


def conv2d_add_(acc: Tensor, x: Tensor, weight: Tensor, bias: Tensor | None = None, *,
                padding: int | None = None) -> Tensor:
    """``acc + conv2d(x, weight, bias)`` ``[N, Cout, H, W]``, formed in ``acc`` when no gradients are
    recorded (then ``acc`` itself is returned), else as a new tensor so that autograd keeps ``acc``.

    ``acc`` must be a tensor of its own (not a view into a wider one) for the fused kernel.
    """
    if fusable(x, weight, acc) and acc.data_ptr() != x.data_ptr():
        return torch.ops.mkldnn._convolution_pointwise_.binary(acc, x, weight, bias, _pads(weight, padding),
                                                               [1, 1], [1, 1], 1, "add", 1.0, None, [], None)
    y = F.conv2d(x, weight, bias, padding=_pads(weight, padding))
    return acc + y if torch.is_grad_enabled() else acc.add_(y)
