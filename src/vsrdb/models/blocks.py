"""Building blocks the families share: RDB/RRDB, Restormer-style attention and feed-forward, and
FMA-Net's FRMA (which FMA-Net++'s HRBA builds on).

Layout: sequences are frames-major ``[B, T, C, H, W]`` inside the model, so a "2D-per-frame"
convolution is a plain conv2d over ``B*T`` frames, and activations are kept channels-last
(oneDNN's native layout: no reorder around every conv). Together about 3x faster on CPU
than the release's ``Conv3d`` with a ``(1, k, k)`` kernel in NCHW. Parameters keep the
release's 5-D shapes so its checkpoints load unchanged.
"""

from __future__ import annotations

from typing import Callable, Sequence, cast

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from ..ops.fused_conv import conv2d_add, conv2d_add_, conv2d_gelu, conv2d_lrelu, conv2d_mul
from ..ops.inference import eager_inference
from ..ops.warp import multi_flow_warp

__all__ = [
    "FrameConv",
    "ConvStack",
    "TemporalConv3d",
    "cat_channels",
    "stack_frames",
    "channels_last",
    "compute_dtype",
    "lrelu",
    "DenseLayer",
    "RDB",
    "RRDB",
    "LayerNorm2d",
    "GuidedTransposedAttention",
    "GatedFeedForward",
    "MultiAttention",
    "FRMA",
    "seq_to_channels",
    "channels_to_seq",
]


def lrelu() -> nn.LeakyReLU:
    return nn.LeakyReLU(0.2, inplace=True)


def channels_last(x: Tensor) -> Tensor:
    """A 4-D tensor in channels-last memory (a no-op when it already is).

    A batch of one may carry any stride on its batch dimension (``[B, T, ...]`` frames
    flattened with B = T = 1 keep the frame stride); PyTorch calls that channels-last, but
    oneDNN's convolution then copies the input to NCHW unless the weight is channels-last too,
    so such a view gets the canonical stride (still a view).
    """
    x = x.contiguous(memory_format=torch.channels_last)
    n, c, h, w = x.shape
    if n == 1 and x.stride(0) != c * h * w:
        x = x.as_strided(x.shape, (c * h * w, 1, w * c, c))
    return x


def compute_dtype(module: nn.Module) -> torch.dtype:
    """The dtype a model's convolutions run in: its parameters' (fp32, or bf16/fp16 when cast).

    Models take images in fp32 and cast them here for their feature paths only; warping,
    dynamic filtering and the image-space sums stay in fp32 (see ``vsrdb.precision``).
    """
    return next(module.parameters()).dtype


def flatten_frames(x: Tensor) -> Tensor:
    """``[B, T, C, H, W]`` -> channels-last ``[B*T, C, H, W]`` (a view when already laid out so)."""
    return channels_last(x.flatten(0, 1))


def channel_softmax(x: Tensor) -> Tensor:
    """Softmax over the channels of ``[N, C, H, W]``, in and out channels-last.

    ``torch.softmax(x, 1)`` on channels-last input returns a contiguous tensor, and the next
    convolution then copies it back: at C = 1200 (FMA-Net++'s K^D) that costs more than the
    softmax itself.
    """
    return torch.softmax(channels_last(x).permute(0, 2, 3, 1), dim=-1).permute(0, 3, 1, 2)


def stack_frames(frames: Sequence[Tensor]) -> Tensor:
    """T maps ``[B, C, H, W]`` -> a sequence ``[B, T, C, H, W]`` whose frames are channels-last.

    (``torch.stack`` gives a contiguous 5-D tensor, which every per-frame conv would copy back.)
    """
    b, c, h, w = frames[0].shape
    out = frames[0].new_empty(b, len(frames), h, w, c).permute(0, 1, 4, 2, 3)
    for i, f in enumerate(frames):
        out[:, i] = f
    return out


def cat_channels(*xs: Tensor) -> Tensor:
    """Concatenate ``[B, T, C_i, H, W]`` sequences along C, keeping channels-last frames.

    (A 5-D ``torch.cat`` would fall back to a contiguous layout.)
    """
    b, t = xs[0].shape[:2]
    return torch.cat([flatten_frames(x) for x in xs], dim=1).unflatten(0, (b, t))


class FrameConv(nn.Conv3d):
    """The same k x k 2D convolution applied to every frame of ``[B, T, C, H, W]``.

    A ``Conv3d`` with kernel ``(1, k, k)`` in the release; stored with that weight shape.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, *, bias: bool) -> None:
        super().__init__(in_channels, out_channels, (1, kernel_size, kernel_size),
                         padding=(0, kernel_size // 2, kernel_size // 2), bias=bias)

    def forward(self, x: Tensor, *, lrelu_slope: float | None = None) -> Tensor:
        """``[B, T, Cin, H, W]`` -> ``[B, T, Cout, H, W]``, with a LeakyReLU folded in when a slope is given."""
        b, t = x.shape[:2]
        w = self.weight.squeeze(2)
        if lrelu_slope is not None:
            return conv2d_lrelu(flatten_frames(x), w, self.bias, padding=int(self.padding[1]), slope=lrelu_slope
                                ).unflatten(0, (b, t))
        return F.conv2d(flatten_frames(x), w, self.bias, padding=self.padding[1:]).unflatten(0, (b, t))


class ConvStack(nn.Sequential):
    """An ``nn.Sequential`` that runs each ``FrameConv`` followed by a ``LeakyReLU`` as one fused op.

    The layers and their state-dict names are those of the plain Sequential (the release's
    checkpoints load unchanged); only the activation's separate pass over memory goes.
    """

    def forward(self, x: Tensor) -> Tensor:
        layers = list(self)
        i = 0
        while i < len(layers):
            layer = layers[i]
            nxt = layers[i + 1] if i + 1 < len(layers) else None
            if isinstance(layer, FrameConv) and isinstance(nxt, nn.LeakyReLU):
                x = layer(x, lrelu_slope=nxt.negative_slope)
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


class TemporalConv3d(nn.Conv3d):
    """A full 3x3x3 ``Conv3d`` (zero-padded in time and space) on ``[B, T, C, H, W]``.

    Computed as three per-frame conv2d taps summed over neighbouring frames: the same
    arithmetic, but without the volume-to-column buffer of CPU Conv3d (27*C_in channels
    per pixel: 2.5 GB for the released K^D at 180x320) and in the fast 2D kernels.
    """

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool) -> None:
        super().__init__(in_channels, out_channels, 3, padding=1, bias=bias)

    def forward(self, x: Tensor) -> Tensor:  # [B, T, Cin, H, W] -> [B, T, Cout, H, W]
        b, t = x.shape[:2]
        w = self.weight
        out = F.conv2d(flatten_frames(x), w[:, :, 1], self.bias, padding=1).unflatten(0, (b, t))
        if t > 1:
            # out[t] += W[0] * x[t-1] and W[2] * x[t+1]: each tap only on the frames it reaches.
            prev = F.conv2d(flatten_frames(x[:, :-1]), w[:, :, 0], padding=1).unflatten(0, (b, t - 1))
            nxt = F.conv2d(flatten_frames(x[:, 1:]), w[:, :, 2], padding=1).unflatten(0, (b, t - 1))
            out = torch.cat((out[:, :1] + nxt[:, :1],
                             out[:, 1:-1] + prev[:, :-1] + nxt[:, 1:],
                             out[:, -1:] + prev[:, -1:]), dim=1) if t > 2 else torch.stack(
                (out[:, 0] + nxt[:, 0], out[:, 1] + prev[:, 0]), dim=1)
        return out

    def forward_streamed(self, frame: Callable[[int], Tensor], t: int) -> Tensor:
        """The same conv when input frames are made on demand: ``frame(i) -> [B, 1, Cin, H, W]``.

        Each input frame is made once, added into the (at most three) outputs it reaches and
        dropped, so the T-frame input never exists at once. (NetR's K^D embedding: the input
        is k_d^2 = 400 channels per frame for the released model.)
        """
        w = self.weight
        c_out = w.shape[0]
        out: list[Tensor | None] = [None] * t
        for i in range(t):
            x = flatten_frames(frame(i))
            # out[j] = W0 * x[j-1] + W1 * x[j] + W2 * x[j+1]. The taps that reach an output frame
            # run as one conv with their weights stacked: a wider output is faster than separate
            # convs (144 -> 3 x 36 at 180x320 on an AMX Xeon: fp32 1.3x, bf16 1.3x).
            taps = [(tap, j) for tap, j in ((1, i), (0, i + 1), (2, i - 1)) if 0 <= j < t]
            bias = None
            if self.bias is not None:  # only the centre tap (listed first) carries the bias
                bias = torch.cat([self.bias, self.bias.new_zeros((len(taps) - 1) * c_out)])
            y = F.conv2d(x, torch.cat([w[:, :, tap] for tap, _ in taps]), bias, padding=1)
            for part, (_, j) in zip(y.split(c_out, dim=1), taps):
                acc = out[j]
                out[j] = part if acc is None else acc.add_(part)
            del x, y
        return torch.stack(out, dim=1)  # type: ignore[arg-type]  # every frame got its centre tap


def seq_to_channels(x: Tensor) -> Tensor:
    """``[B, T, C, H, W]`` -> channels-last ``[B, C*T, H, W]``, channel index c*T + t (r_4->3)."""
    b, t, c, h, w = x.shape
    return x.permute(0, 3, 4, 2, 1).reshape(b, h, w, c * t).permute(0, 3, 1, 2)


def channels_to_seq(x: Tensor, t: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, T, C/T, H, W]``, the inverse channel order of ``seq_to_channels``."""
    b, c, h, w = x.shape
    return x.reshape(b, c // t, t, h, w).transpose(1, 2)


class DenseLayer(nn.Module):
    """Per-frame conv + LeakyReLU whose output is concatenated after its input (see ``RDB``)."""

    def __init__(self, in_channels: int, growth_rate: int, *, bias: bool) -> None:
        super().__init__()
        self.conv = FrameConv(in_channels, growth_rate, 3, bias=bias)


class RDB(nn.Module):
    """Residual dense block [Zhang et al. 2018] on ``[B, T, dim, H, W]``.

    Dense layer i convolves concat(x, o_1 .. o_i); a conv of a concatenation is the sum of
    convs of its parts, so each part is convolved once into each later layer's partial sum.
    Same arithmetic as the release's concatenations, without copying the growing feature
    stack four times (faster on CPU in fp32; reduced precision inference uses the
    concatenations, see ``_concatenated``).
    """

    def __init__(self, dim: int, growth_rate: int, num_layers: int, *, bias: bool) -> None:
        super().__init__()
        self.layers = nn.Sequential(*[DenseLayer(dim + i * growth_rate, growth_rate, bias=bias)
                                      for i in range(num_layers)])
        # The release gives this 1x1 fusion a bias whatever the bias flag says.
        self.fuse = FrameConv(dim + num_layers * growth_rate, dim, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        b, t = x.shape[:2]
        convs = [cast(DenseLayer, layer).conv for layer in self.layers]
        xf = flatten_frames(x)
        if eager_inference() and xf.dtype != torch.float32:
            return self._concatenated(xf, convs).unflatten(0, (b, t))
        if self.per_layer_sums:
            return self._per_layer(xf, convs).unflatten(0, (b, t))
        return self._wide(xf, convs).unflatten(0, (b, t))

    @property
    def per_layer_sums(self) -> bool:
        """Whether fp32 uses ``_per_layer`` (else ``_wide``): when the growth rate fills oneDNN's
        16-wide fp32 channel blocks at least to 3/4 (12, 16, 24, 32, ...). Measured on an AMD EPYC,
        one RDB at 180x320: dim 36 / growth 12 (fmanet-cpu) 69 against 82 ms, dim 48 / growth 16 as
        fast or faster, dim 90 / growth 18 (the release) 304-320 against 256-259 ms, where each
        18-channel convolution computes 32 channels and the wide form's 72 only 80."""
        g = cast(DenseLayer, self.layers[0]).conv.out_channels
        return 4 * (-g % 16) <= g + (-g % 16)

    def _per_layer(self, xf: Tensor, convs: list[FrameConv]) -> Tensor:
        """The sum form with every partial sum a tensor of its own: oneDNN adds a convolution
        into, or onto, whole channels-last tensors only, and then the last term of each layer's
        sum and every term of the block's fusion cost no pass of their own."""
        c, g, n = xf.shape[1], convs[0].out_channels, len(convs)
        x_terms = [cv.weight[:, :c, 0].contiguous() for cv in convs]
        o = conv2d_lrelu(xf, x_terms[0], convs[0].bias, padding=1)
        partial = [F.conv2d(xf, w, cv.bias, padding=1) for w, cv in zip(x_terms[1:], convs[1:])]
        fuse_w = self.fuse.weight[:, :, 0]
        # The 1x1 fusion accumulates term by term, the block's residual x first.
        out = conv2d_add(xf, xf, fuse_w[:, :c].contiguous(), self.fuse.bias)
        inplace = not torch.is_grad_enabled()  # inference: accumulate without new buffers
        for i in range(n):
            cols = slice(c + i * g, c + (i + 1) * g)
            out = conv2d_add_(out, o, fuse_w[:, cols].contiguous())
            if i + 1 == n:
                break
            for j in range(i + 2, n):  # o_i's terms in the layers after the next
                partial[j - 1] = conv2d_add_(partial[j - 1], o, convs[j].weight[:, cols, 0].contiguous())
            # o_i's term completes the next layer's sum; its LeakyReLU runs in place.
            w = convs[i + 1].weight[:, cols, 0].contiguous()
            o = F.leaky_relu(conv2d_add(o, partial[i], w), 0.2, inplace=inplace)
        return out

    def _wide(self, xf: Tensor, convs: list[FrameConv]) -> Tensor:
        """The sum form with every layer's x-term from one wide convolution and each o_i
        convolved once for all later layers (fewer, wider convolutions; separate adds)."""
        c, g, n = xf.shape[1], convs[0].out_channels, len(convs)
        biases = [cv.bias for cv in convs if cv.bias is not None]  # all or none (one bias flag)
        bias = torch.cat(biases) if biases else None
        partial = list(F.conv2d(xf, torch.cat([cv.weight[:, :c, 0] for cv in convs]), bias, padding=1).split(g, 1))
        fuse_w = self.fuse.weight[:, :, 0]
        # The 1x1 fusion accumulates term by term, the block's residual x first: in inference each
        # term is added inside its convolution (ops.fused_conv), with no output of its own.
        out = conv2d_add(xf, xf, fuse_w[:, :c].contiguous(), self.fuse.bias)
        inplace = not torch.is_grad_enabled()  # inference: accumulate without new buffers
        for i in range(n):
            o = F.leaky_relu(partial[i], 0.2)
            cols = slice(c + i * g, c + (i + 1) * g)
            if i + 1 < n:
                later = F.conv2d(o, torch.cat([cv.weight[:, cols, 0] for cv in convs[i + 1:]]), padding=1)
                for j, term in enumerate(later.split(g, 1), start=i + 1):
                    partial[j] = partial[j].add_(term) if inplace else partial[j] + term
            out = conv2d_add_(out, o, fuse_w[:, cols].contiguous())
        return out

    def _concatenated(self, xf: Tensor, convs: list[FrameConv]) -> Tensor:
        """The release's form, for bf16/fp16 inference: each layer convolves the growing
        concatenation (LeakyReLU inside the conv), one 1x1 fusion adds the residual.

        In reduced precision the concatenations cost less than the many small convolutions of
        the sum form: on an AMX Xeon, 2.3x faster at fmanet-cpu's size (dim 36, growth 12) and
        1.6x at fmanet's; in fp32 the sum form is as fast at dim 36 and 1.4x faster at dim 90,
        where an 18-channel output fills AVX-512's 16-wide fp32 lanes badly.
        """
        feats = xf
        for conv in convs:
            feats = torch.cat((feats, conv2d_lrelu(feats, conv.weight[:, :, 0], conv.bias, padding=1)), dim=1)
        return conv2d_add(feats, xf, self.fuse.weight[:, :, 0], self.fuse.bias, padding=0)


class RRDB(nn.Module):
    """Chain of RDBs whose concatenated outputs are fused back to dim, plus the input."""

    def __init__(self, dim: int, growth_rate: int, num_layers: int, num_rdb: int, *, bias: bool) -> None:
        super().__init__()
        self.rdbs = nn.ModuleList([RDB(dim, growth_rate, num_layers, bias=bias) for _ in range(num_rdb)])
        self.fuse = FrameConv(dim * num_rdb, dim, 1, bias=bias)
        self.conv = FrameConv(dim, dim, 3, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        # The 1x1 fusion of the concatenated RDB outputs is a sum of per-RDB 1x1 convs:
        # accumulating it keeps one RDB output alive instead of num_rdb of them.
        b, t = x.shape[:2]
        weights = self.fuse.weight.flatten(1).chunk(len(self.rdbs), dim=1)
        fused = None
        h = x
        for rdb, w in zip(self.rdbs, weights):
            h = rdb(h)
            w4 = w[:, :, None, None].contiguous()
            fused = F.conv2d(flatten_frames(h), w4) if fused is None else conv2d_add_(fused, flatten_frames(h), w4)
        assert fused is not None  # num_rdb >= 1
        if self.fuse.bias is not None:
            fused = fused + self.fuse.bias.view(1, -1, 1, 1)
        # The final conv and the residual in one op.
        return conv2d_add(fused, flatten_frames(x), self.conv.weight.squeeze(2), self.conv.bias,
                          padding=int(self.conv.padding[1])).unflatten(0, (b, t))


class LayerNorm2d(nn.Module):
    """LayerNorm over channels at each pixel of ``[B, C, H, W]`` (Restormer's two types).

    ``with_bias``: (x - mean) / sqrt(var + eps) * w + b. Bias-free: x / sqrt(var + eps) * w,
    where x is not centred but the variance still is (Restormer's BiasFree_LayerNorm).
    """

    def __init__(self, dim: int, *, with_bias: bool, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.bias = nn.Parameter(torch.zeros(dim)) if with_bias else None
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = x.permute(0, 2, 3, 1)
        if self.bias is not None:
            y = F.layer_norm(y, y.shape[-1:], self.weight, self.bias, self.eps)
        else:
            y = y * torch.rsqrt(y.var(dim=-1, keepdim=True, unbiased=False) + self.eps) * self.weight
        return y.permute(0, 3, 1, 2)


class GuidedTransposedAttention(nn.Module):
    """Restormer's MDTA with queries from a guide: the paper's CO and DA attention (Eq. 3).

    Attention is across channels (a C/heads x C/heads map per head), so its cost is linear
    in the number of pixels.

    Args (forward):
        x: ``[B, C, H, W]``, gives keys and values (the normalised warped feature).
        guide: ``[B, C, H, W]``, gives queries (F0_c for CO, k^D for DA).
    Returns:
        ``[B, C, H, W]``.
    """

    def __init__(self, dim: int, num_heads: int, *, bias: bool) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1))
        self.q = nn.Conv2d(dim, dim, 1, bias=bias)
        self.q_dwconv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=bias)
        self.kv_conv = nn.Conv2d(dim, 2 * dim, 1, bias=bias)
        self.kv_dwconv = nn.Conv2d(2 * dim, 2 * dim, 3, padding=1, groups=2 * dim, bias=bias)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias)

    def forward(self, x: Tensor, guide: Tensor, residual: Tensor | None = None) -> Tensor:
        """``residual``, if given, is added to the output.

        Computed without forming the normalised q and k or the attention output: the
        normalisation only scales each channel, so the per-head Gram matrices of the raw q and
        k, divided by the two channels' norms, give the same logits; and the output projection
        of ``blockdiag(attn) v`` is one C x C matrix applied to v. Maps stay channels-last
        ("pixel rows" ``[B, H*W, C]`` are views of them), and the last product starts from the
        residual, so the block makes one new map instead of five. Same result as Restormer's
        formulation up to float rounding, on any device and under autograd.
        """
        b, c, h, w = x.shape
        heads, d = self.num_heads, c // self.num_heads
        q = _pixel_rows(self.q_dwconv(self.q(guide)))                     # [B, HW, C]
        kv = _pixel_rows(self.kv_dwconv(self.kv_conv(x)))                 # [B, HW, 2C]
        k, v = kv[..., :c], kv[..., c:]
        gram = torch.bmm(q.transpose(1, 2), k)                            # [B, C, C]
        # F.normalize(z, dim=-1) divides by max(|z|, 1e-12) over the pixels. The squared norms
        # are the diagonals of q^T q and k^T k: two more small products read the maps faster
        # than a reduction across pixel rows.
        nq = _norms(q).view(b, heads, d, 1)
        nk = _norms(k).view(b, heads, 1, d)
        blocks = gram.view(b, heads, d, heads, d).diagonal(dim1=1, dim2=3).permute(0, 3, 1, 2)  # [B, heads, d, d]
        attn = torch.softmax(blocks.float() / (nq * nk) * self.temperature.float(), dim=-1)
        # project_out(blockdiag(attn) v) = (W_o blockdiag(attn)) v, per pixel
        w_o = self.project_out.weight.view(c, heads, d).float()
        mix = torch.einsum("ohi,bhij->bohj", w_o, attn).reshape(b, c, c).transpose(1, 2).to(v.dtype)  # [B, C, C]^T
        if residual is None:
            out = torch.bmm(v, mix)
        else:
            out = torch.baddbmm(_pixel_rows(residual).to(v.dtype), v, mix)
        if self.project_out.bias is not None:
            out = out + self.project_out.bias.to(out.dtype)
        return out.view(b, h, w, c).permute(0, 3, 1, 2)


def _norms(rows: Tensor) -> Tensor:
    """L2 norms over the pixels of ``[B, HW, C]`` pixel rows, at least 1e-12: ``[B, C]`` (fp32)."""
    return torch.bmm(rows.transpose(1, 2), rows).diagonal(dim1=1, dim2=2).float().clamp_min(0).sqrt().clamp_min(1e-12)


def _pixel_rows(x: Tensor) -> Tensor:
    """``[B, C, H, W]`` -> ``[B, H*W, C]``: a view of a channels-last map (else a copy)."""
    b, c, h, w = x.shape
    return x.permute(0, 2, 3, 1).reshape(b, h * w, c)


class GatedFeedForward(nn.Module):
    """Restormer's GDFN: 1x1 up, depthwise 3x3, gelu(x1) * x2, 1x1 down. ``[B,C,H,W]``."""

    def __init__(self, dim: int, expansion: float, *, bias: bool) -> None:
        super().__init__()
        hidden = int(dim * expansion)
        self.project_in = nn.Conv2d(dim, 2 * hidden, 1, bias=bias)
        self.dwconv = nn.Conv2d(2 * hidden, 2 * hidden, 3, padding=1, groups=2 * hidden, bias=bias)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias)

    def forward(self, x: Tensor, residual: Tensor | None = None) -> Tensor:
        """``residual``, if given, is added to the output (inside the last conv where it can be).

        The two halves x1, x2 are made by separate convolutions (the same weights, split): the
        depthwise conv giving x1 then applies the GELU, and the one giving x2 multiplies by it,
        each inside the convolution (``ops.fused_conv``). Halves of one map are strided views,
        and the elementwise pass over them cost as much as the block's three convolutions.
        """
        n = self.project_out.in_channels
        w_in, w_dw = self.project_in.weight, self.dwconv.weight
        b_in, b_dw = self.project_in.bias, self.dwconv.bias

        def half(z: Tensor | None, i: int) -> Tensor | None:
            return None if z is None else z[i * n:(i + 1) * n]

        x1 = F.conv2d(x, w_in[:n], half(b_in, 0))
        x2 = F.conv2d(x, w_in[n:], half(b_in, 1))
        gated = conv2d_mul(x2, conv2d_gelu(x1, w_dw[:n], half(b_dw, 0), padding=1, groups=n),
                           w_dw[n:], half(b_dw, 1), padding=1, groups=n)
        return _project(self.project_out, gated, residual)


def _project(conv: nn.Conv2d, x: Tensor, residual: Tensor | None) -> Tensor:
    """A block's output 1x1 conv, plus the residual stream when given (one fused op on CPU)."""
    if residual is None:
        return conv(x)
    return conv2d_add(channels_last(x), channels_last(residual), conv.weight, conv.bias, padding=0)


class MultiAttention(nn.Module):
    """Fig. 4(b): CO attention + FFN, and in NetR also DA attention + FFN, pre-norm residuals.

    Args (forward):
        fw: ``[B, C, H, W]`` warped feature F_w.
        f0c: ``[B, C, H, W]`` centre initial feature F0_c (CO queries; not normalised).
        kd: ``[B, C, H, W]`` degradation feature k^D (DA queries), NetR only.
    """

    def __init__(self, dim: int, num_heads: int, ffn_expansion: float, *, bias: bool,
                 layernorm_bias: bool, degradation_aware: bool) -> None:
        super().__init__()
        self.norm1 = LayerNorm2d(dim, with_bias=layernorm_bias)
        self.co_attn = GuidedTransposedAttention(dim, num_heads, bias=bias)
        self.norm2 = LayerNorm2d(dim, with_bias=layernorm_bias)
        self.ffn1 = GatedFeedForward(dim, ffn_expansion, bias=bias)
        self.degradation_aware = degradation_aware
        if degradation_aware:
            self.norm3 = LayerNorm2d(dim, with_bias=layernorm_bias)
            self.da_attn = GuidedTransposedAttention(dim, num_heads, bias=bias)
            self.norm4 = LayerNorm2d(dim, with_bias=layernorm_bias)
            self.ffn2 = GatedFeedForward(dim, ffn_expansion, bias=bias)

    def forward(self, fw: Tensor, f0c: Tensor, kd: Tensor | None = None) -> Tensor:
        fw = self.co_attn(self.norm1(fw), f0c, residual=fw)
        fw = self.ffn1(self.norm2(fw), residual=fw)
        if self.degradation_aware:
            assert kd is not None  # NetR's blocks always get k^D
            fw = self.da_attn(self.norm3(fw), kd, residual=fw)
            fw = self.ffn2(self.norm4(fw), residual=fw)
        return fw


class FRMA(nn.Module):
    """Iterative feature refinement with multi-attention (Sec. 3.2, Fig. 4(a), Eqs. 1-3).

    Refines the unwarped feature F, the warped feature F_w and the multi-flow-mask pairs f.

    Args:
        has_flow_in: an f comes in (all blocks except NetD's first, which starts f from F).
        has_fw_in: an F_w comes in (all blocks except each network's first).
        degradation_aware: NetR's blocks: DA attention on k^D from the NetD kernels.
    """

    def __init__(self, *, dim: int, num_seq: int, num_flow: int, growth_rate: int,
                 num_dense_layer: int, num_transformer_block: int, num_heads: int,
                 ffn_expansion: float, bias: bool, layernorm_bias: bool,
                 has_flow_in: bool, has_fw_in: bool, degradation_aware: bool) -> None:
        super().__init__()
        self.has_flow_in = has_flow_in
        self.has_fw_in = has_fw_in
        self.degradation_aware = degradation_aware
        self.rdb = RDB(dim, growth_rate, num_dense_layer, bias=bias)
        if degradation_aware:
            self.rdb_kd = RDB(dim, growth_rate, num_dense_layer, bias=bias)
            self.conv_kd = nn.Conv2d(dim * num_seq, dim, 1, bias=bias)
        self.conv_fw = nn.Conv2d(dim * num_seq + (dim if has_fw_in else 0), dim, 1, bias=bias)
        f_in = dim + (3 * num_flow + dim if has_flow_in else dim)
        self.conv_f = ConvStack(FrameConv(f_in, 3 * num_flow, 3, bias=bias), lrelu(),
                                    FrameConv(3 * num_flow, 3 * num_flow, 3, bias=bias))
        self.attn_blocks = nn.ModuleList([
            MultiAttention(dim, num_heads, ffn_expansion, bias=bias, layernorm_bias=layernorm_bias,
                           degradation_aware=degradation_aware)
            for _ in range(num_transformer_block)])

    def forward(self, feat: Tensor, fw: Tensor | None, flow: Tensor | None, f0c: Tensor,
                kd_feat: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """
        Args:
            feat: F ``[B, T, C, H, W]``.
            fw: F_w ``[B, C, H, W]`` or None.
            flow: f ``[B, T, 3n, H, W]`` or None.
            f0c: F0_c ``[B, C, H, W]``.
            kd_feat: NetR's embedded K^D ``[B, T, C, H, W]``.
        Returns:
            (F, F_w, f) with the shapes above.
        """
        t = feat.shape[1]
        feat = self.rdb(feat)
        f0c_seq = f0c.unsqueeze(1).expand(-1, t, -1, -1, -1)
        if self.has_flow_in:
            assert flow is not None  # every block after the first gets the previous block's flow
            flow = flow + self.conv_f(cat_channels(f0c_seq, flow, multi_flow_warp(feat, flow)))  # Eq. 1
        else:
            flow = self.conv_f(cat_channels(f0c_seq, feat))
        warped = seq_to_channels(multi_flow_warp(feat, flow))
        if self.has_fw_in:
            assert fw is not None  # every block after the first gets the previous block's F_w
            fw = self.conv_fw(torch.cat((fw, warped), dim=1))  # Eq. 2
        else:
            fw = self.conv_fw(warped)
        kd = self.conv_kd(seq_to_channels(self.rdb_kd(kd_feat))) if self.degradation_aware else None
        for block in self.attn_blocks:
            fw = block(fw, f0c, kd)
        return feat, fw, flow
