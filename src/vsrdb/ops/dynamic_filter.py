"""Dynamic filtering over a frame sequence: FGDF down- and upsampling (paper Eqs. 6-7).

Both functions take frames that are already warped towards the centre frame (flow-guided
dynamic filtering, Eq. 6); given unwarped frames they are the conventional dynamic
filtering of Eq. 5. The kernels are per-pixel and span all T frames jointly.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

from .inference import eager_inference

__all__ = [
    "dynamic_upsample_streamed",
    "normalize_downsampling_kernels",
    "normalize_upsampling_kernels",
    "dynamic_downsample",
    "dynamic_upsample",
]


def normalize_downsampling_kernels(logits: Tensor) -> Tensor:
    """Softmax over all T*k*k entries of each pixel's kernel.

    The paper says sigmoid; the release normalises jointly with a softmax, so that a blur
    kernel over the whole window sums to one.

    Args:
        logits: ``[B, T, k*k, H, W]``.
    Returns:
        ``[B, T, k*k, H, W]``, non-negative, summing to 1 over (T, k*k) at each pixel.
    """
    b, t, kk, h, w = logits.shape
    # fp32 whatever the logits: the T*k*k weights are small and must sum to one.
    return torch.softmax(logits.reshape(b, t * kk, h, w), dim=1, dtype=torch.float32).reshape(b, t, kk, h, w)


def normalize_upsampling_kernels(logits: Tensor, scale: int) -> Tensor:
    """Shift each sub-pixel kernel to sum to one: K - mean(K) + 1/(T*k*k).

    The release uses this instead of a softmax so restoration kernels can be negative
    (sharpening). Channel order of the logits is (s1, s2, k1, k2).

    Args:
        logits: ``[B, T, s*s*k*k, H, W]``.
    Returns:
        ``[B, T, s*s, k*k, H, W]``, each (sub-pixel) kernel summing to 1 over (T, k*k).
    """
    b, t, c, h, w = logits.shape
    kk = c // (scale * scale)
    k = logits.float().reshape(b, t, scale * scale, kk, h, w)  # fp32: the mean shift is a small difference
    return k - k.mean(dim=(1, 3), keepdim=True) + 1.0 / (t * kk)


def _frame_patches(x: Tensor, size: int, stride: int, pad: int) -> Tensor:
    """``[B, T, C, H, W]`` -> ``[B, T, C, size*size, Ho, Wo]`` of replicate-padded windows."""
    b, t, c, h, w = x.shape
    xp = F.pad(x.reshape(b * t, c, h, w), (pad, pad, pad, pad), mode="replicate")
    cols = F.unfold(xp, kernel_size=size, stride=stride)
    ho = (h + 2 * pad - size) // stride + 1
    wo = (w + 2 * pad - size) // stride + 1
    return cols.reshape(b, t, c, size * size, ho, wo)


def dynamic_downsample(warped: Tensor, validity: Tensor, kernels: Tensor, scale: int) -> Tensor:
    """Flow-guided dynamic downsampling (Eq. 7): re-degrade an HR sequence into the LR centre.

    Each LR pixel (h, w) sees the k x k window starting at row h*s, column w*s of the HR
    frames replicate-padded by (k - s)/2, in every frame; the result is normalised by the
    same filter applied to the validity map so occluded or out-of-frame samples do not
    darken it.

    Args:
        warped: ``[B, T, C, sH, sW]`` masked, warped HR frames.
        validity: ``[B, T, C or 1, sH, sW]`` masked, warped all-ones frames.
        kernels: ``[B, T, k*k, H/u, W/u]`` normalised (``normalize_downsampling_kernels``); with
            u > 1 (the body on a pixel-unshuffled input, at x1 and x2) each kernel serves the
            u x u LR pixels of its cell: blur varies slowly across a frame, and a kernel per LR
            pixel would cost u^2 times the kernel head's and K^D embedding's work.
        scale: s.
    Returns:
        ``[B, C, H, W]``: the re-degraded blurry LR centre frame.
    """
    ks = int(round(kernels.shape[2] ** 0.5))
    if (ks - scale) % 2:
        raise ValueError(f"dynamic_downsample: kernel size {ks} minus scale {scale} must be even")
    pad = (ks - scale) // 2
    c = warped.shape[2]
    # Validity is identical across colour channels: filter one channel of it, not C.
    both = torch.cat((warped, validity[:, :, :1]), dim=2)
    h, w = both.shape[-2] // scale, both.shape[-1] // scale
    u = _grid_factor((h, w), (kernels.shape[-2], kernels.shape[-1]), "dynamic_downsample")
    if u == 1:
        patches = _frame_patches(both, ks, scale, pad)  # [B, T, C+1, k*k, H, W]
        filtered = torch.einsum("btckhw,btkhw->bchw", patches, kernels)
    else:
        filtered = _downsample_cells(both, kernels, scale, pad)
    return filtered[:, :c] / (filtered[:, c:] + 1e-8)


def _downsample_cells(both: Tensor, kernels: Tensor, scale: int, pad: int) -> Tensor:
    """``dynamic_downsample``'s filtering when one kernel serves a cell of u x u LR pixels (x2, x1).

    Per-pixel patches would be (C+1) k^2 values per LR pixel, and there are u^2 times x4's LR
    pixels per cell (532 MB for a batch of four 128 px patches at x1, and 2.5 s forward and
    backward). Per cell instead: the cell's union window U (L x L HR pixels, L = (u-1) s + k)
    times a matrix M whose column for LR pixel o holds the kernel shifted to o's window, zeros
    elsewhere, in one batched product. 0.5 s for the same batch.

    Args:
        both: ``[B, T, C+1, sH, sW]`` (warped frames and validity); kernels ``[B, T, k*k, H/u, W/u]``.
    Returns:
        ``[B, C+1, H, W]``, summed over T.
    """
    b, t, c1 = both.shape[:3]
    ks = int(round(kernels.shape[2] ** 0.5))
    gh, gw = kernels.shape[-2:]
    u = both.shape[-2] // scale // gh
    size = (u - 1) * scale + ks
    xp = F.pad(both.flatten(0, 1), (pad,) * 4, mode="replicate")
    cells = F.unfold(xp, size, stride=u * scale)  # [B*T, (C+1) L L, cells]
    cells = cells.view(b * t, c1, size * size, gh * gw).permute(0, 3, 1, 2).reshape(-1, c1, size * size)
    # M's column for LR pixel (oy, ox): the kernel placed at (oy s, ox s) in an L x L field of zeros
    # (zero-padding, whose gradient is a slice: a gather's would be a slow scatter-add)
    taps = kernels.permute(0, 1, 3, 4, 2).reshape(-1, ks, ks)
    shifted = torch.stack([F.pad(taps, (ox * scale, size - ks - ox * scale, oy * scale, size - ks - oy * scale))
                           for oy in range(u) for ox in range(u)], dim=1)
    shifted = shifted.view(-1, u * u, size * size).transpose(1, 2)  # M: [cells, L L, u u]
    out = torch.bmm(cells.to(shifted.dtype), shifted)  # [cells, C+1, u u]
    out = out.view(b, t, gh, gw, c1, u, u).sum(1)
    return out.permute(0, 3, 1, 4, 2, 5).reshape(b, c1, gh * u, gw * u)


def _grid_factor(frames_hw: tuple[int, int], kernels_hw: tuple[int, int], where: str) -> int:
    """u: how many frame pixels a kernel grid cell covers on each side (1 when the kernels are
    predicted at the frames' own size, as at x4; 2 or 4 when the network's body runs on a
    pixel-unshuffled input, at x2 and x1)."""
    u = frames_hw[0] // kernels_hw[0]
    if u < 1 or frames_hw != (kernels_hw[0] * u, kernels_hw[1] * u):
        raise ValueError(f"{where}: frames {frames_hw} are not a whole multiple of the kernel grid {kernels_hw}")
    return u


def dynamic_upsample(frames: Tensor, kernels: Tensor, scale: int) -> Tensor:
    """Flow-guided dynamic x s upsampling: one T*k*k kernel per HR pixel.

    HR pixel (r, q) = sum over t and the k x k window centred on frame pixel (r // s, q // s)
    of its kernel times the frame, frames replicate-padded by k//2. Kernels come on a grid of
    cells u frame pixels wide (u = 1 at x4), each cell holding the (u*s)^2 kernels of the HR
    pixels it covers: HR pixel (r, q) takes cell (r // (u*s), q // (u*s)), sub-pixel
    (r % (u*s), q % (u*s)).

    Args:
        frames: ``[B, T, C, uH, uW]`` (warped frames at the input's size).
        kernels: ``[B, T, (u*s)^2, k*k, H, W]`` (``normalize_upsampling_kernels`` with u*s).
        scale: s.
    Returns:
        ``[B, C, s*uH, s*uW]``.
    """
    b, t, c, hi, wi = frames.shape
    h, w = kernels.shape[-2:]
    u = _grid_factor((hi, wi), (h, w), "dynamic_upsample")
    ks = int(round(kernels.shape[3] ** 0.5))
    patches = _frame_patches(frames, ks, 1, ks // 2)  # [B, T, C, k*k, uH, uW]
    # frame pixel (g*u + x, h*u + y); sub-pixel (x*s + i, y*s + j) of cell (g, h)
    patches = patches.reshape(b, t, c, ks * ks, h, u, w, u)
    kern = kernels.reshape(b, t, u, scale, u, scale, ks * ks, h, w)
    out = torch.einsum("btckgxhy,btxiyjkgh->bcgxihyj", patches, kern)
    return out.reshape(b, c, hi * scale, wi * scale)


def _pixel_windows(x: Tensor, ks: int) -> Tensor:
    """``[B, C, H, W]`` -> ``[B*H*W, C + 1, k*k]``: each pixel's replicate-padded k x k window
    per channel (pixels in row-major order), and a last row of ones.

    The row of ones makes one matrix product give each kernel's sum next to the filtered
    values (see ``dynamic_upsample_streamed``).
    """
    b, c, h, w = x.shape
    pad = ks // 2
    xp = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    sb, sc, sh, sw = xp.stride()
    windows = xp.as_strided((b, h, w, c, ks, ks), (sb, sh, sw, sc, sh, sw))
    out = x.new_empty(b * h * w, c + 1, ks * ks)
    out[:, :c].view(b, h, w, c, ks, ks).copy_(windows)
    out[:, c].fill_(1.0)
    return out


def _upsample_by_taps(frame: Callable[[int], tuple[Tensor, Tensor]], t: int, scale: int) -> Tensor:
    """``dynamic_upsample_streamed`` when the kernels come on a grid coarser than the frames (x2, x1).

    Each HR pixel then has its own window of the input-sized frame, shared with at most s*s - 1
    others: gathering windows per pixel (as the x4 path does) would copy k*k values per output
    pixel. Instead every (sub-pixel, tap) pair is one multiply-add on the kernel grid: the kernel
    plane is one channel of the logits, and the frame values it weighs are a shifted slice of one
    of the padded frame's u*u phase planes (frame pixel (g*u + a) is cell g + a // u, phase
    a % u), made dense once per frame. Nothing else is permuted to
    the input's size but the output, once: interleaving 400 kernel planes into input-sized ones
    cost more than the filtering at x1 (docs/benchmarks.md). The normalisation's sum of each
    window is one box filter of the frames' sum at the end, read on the grid the same way.
    """
    if torch.compiler.is_compiling():
        # Exporting (ONNX) or compiling: the u*u*s*s*k*k multiply-adds per frame below would be
        # as many graph nodes (400 at x1); the batched form is a handful, with the same result.
        xs, ls = zip(*(frame(i) for i in range(t)))
        u = _grid_factor(tuple(xs[0].shape[-2:]), tuple(ls[0].shape[-2:]), "dynamic_upsample_streamed")
        return dynamic_upsample(torch.stack(xs, 1), normalize_upsampling_kernels(torch.stack(ls, 1), u * scale), scale)
    acc = ksum = frames_sum = None
    kk = ks = u = 0
    shape = (0, 0, 0, 0)
    for i in range(t):
        x, logits = frame(i)
        b, c, hi, wi = x.shape
        h, w = logits.shape[-2:]
        u = _grid_factor((hi, wi), (h, w), "dynamic_upsample_streamed")
        subs = u * u * scale * scale
        kk = logits.shape[1] // subs
        ks = int(round(kk ** 0.5))
        shape = (b, c, h, w)
        dtype = torch.promote_types(x.dtype, torch.float32)
        # Padded by k//2, then to whole cells (the extra rows and columns are never read).
        pad = ks // 2
        rows, cols = -(-(hi + 2 * pad) // u), -(-(wi + 2 * pad) // u)
        xp = F.pad(F.pad(x.to(dtype), (pad,) * 4, mode="replicate"),
                   (0, cols * u - wi - 2 * pad, 0, rows * u - hi - 2 * pad))
        frames_sum = xp if frames_sum is None else frames_sum.add_(xp)
        # The u x u phases of the padded frame as dense planes: frame pixel (g*u + a, h*u + e) is
        # phases[..., a, e, g, h], so every tap below reads rows of adjacent values (a strided
        # view of xp read one value in u and took 1.5x as long at x1).
        phases = xp.view(b, c, rows, u, cols, u).permute(0, 1, 3, 5, 2, 4).contiguous()
        if acc is None:
            acc = x.new_zeros(subs, b, c, h, w, dtype=dtype)
            ksum = x.new_zeros(b, subs, h, w, dtype=dtype)
        assert ksum is not None
        for sub in range(subs):
            # One sub-pixel's k*k planes made dense (the head writes channels-last): each tap's
            # kernel plane is then one [h, w] block. Sub-pixel by sub-pixel, the copies are small
            # enough to reuse freed memory; all 400 channels at once faulted in fresh pages.
            lg = logits[:, sub * kk:(sub + 1) * kk].to(dtype).contiguous()
            ksum[:, sub] += lg.sum(1)
            # sub = ((y*s + i)*u + x)*s + j for HR pixel ((g*u + y)*s + i, (h*u + x)*s + j): its window
            # is centred on frame pixel (g*u + y, h*u + x)
            sy, sx = sub // (u * scale * scale), (sub % (u * scale)) // scale
            for j in range(kk):
                dy, dx = divmod(j, ks)
                ay, ax = sy + dy, sx + dx
                acc[sub].addcmul_(phases[:, :, ay % u, ax % u, ay // u:ay // u + h, ax // u:ax // u + w],
                                  lg[:, j:j + 1])
            del lg
        del xp, phases
    if acc is None or ksum is None or frames_sum is None:
        raise ValueError("dynamic_upsample_streamed needs at least one frame")
    b, c, h, w = shape
    box = F.avg_pool2d(frames_sum, ks, stride=1) * kk  # each window's sum over T and k*k, at frame pixels
    box = box[..., :h * u, :w * u].reshape(b, c, h, u, w, u)
    n = t * kk
    for sub in range(u * u * scale * scale):
        sy, sx = sub // (u * scale * scale), (sub % (u * scale)) // scale
        acc[sub].addcmul_(box[:, :, :, sy, :, sx], (1.0 - ksum[:, sub:sub + 1]) / n)  # K - mean(K) + 1/n
    # [(y, i, x, j), B, C, g, h] -> [B, C, (g, y, i), (h, x, j)]
    out = acc.view(u, scale, u, scale, b, c, h, w).permute(4, 5, 6, 0, 1, 7, 2, 3)
    return out.reshape(b, c, h * u * scale, w * u * scale)


TapsKernel = Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, int, int, bool, int], None]


def _taps_kernel(x: Tensor, logits: Tensor) -> TapsKernel | None:
    """ops/csrc's one-pass FGDF upsampling where it applies (eager CPU inference on image channels
    in fp32 or bf16), else None."""
    allowed = (torch.float32, torch.bfloat16)
    if (not eager_inference() or x.device.type != "cpu" or x.shape[1] > 4 or x.dtype not in allowed
            or logits.dtype not in allowed):
        return None
    from . import kernels  # here, not at the top: `python -m vsrdb.ops.kernels` imports this package first

    return kernels.fgdf_taps()


def _upsample_with_kernel(taps: TapsKernel, frame: Callable[[int], tuple[Tensor, Tensor]], t: int,
                             scale: int) -> Tensor:
    """``dynamic_upsample_streamed`` as ops/csrc/fgdf_taps.cpp does it, at every scale: 16 output
    pixels at a time, their kernels read from the logits as the head wrote them, the frame values
    from a padded band of rows made once per row of grid cells; 3-5x faster than the PyTorch forms
    below (docs/benchmarks.md)."""
    acc = ksum = psum = None
    for i in range(t):
        x, logits = frame(i)
        b, c, hi, wi = x.shape
        h, w = logits.shape[-2:]
        u = _grid_factor((hi, wi), (h, w), "dynamic_upsample_streamed")
        if acc is None:
            acc = x.new_empty(b, c, hi * scale, wi * scale, dtype=torch.float32)
            psum = torch.empty_like(acc)
            ksum = x.new_empty(b, hi * scale, wi * scale, dtype=torch.float32)
        assert ksum is not None and psum is not None
        # the last frame's call writes acc + psum * (1 - sum(K)) / n: K - mean(K) + 1/n, applied after the sums
        n = t * logits.shape[1] // (u * u * scale * scale) if i == t - 1 else 0
        taps(x, logits.contiguous(memory_format=torch.channels_last), acc, ksum, psum, u, scale, i == 0, n)
    if acc is None:
        raise ValueError("dynamic_upsample_streamed needs at least one frame")
    return acc


def dynamic_upsample_streamed(frame: Callable[[int], tuple[Tensor, Tensor]], t: int, scale: int) -> Tensor:
    """``dynamic_upsample(frames, normalize_upsampling_kernels(logits))`` one frame at a time.

    The normalisation K - mean(K) + 1/(T*k*k) is linear, so
    sum(K_norm * P) = sum(K * P) + (1/(T*k*k) - mean(K)) * sum(P),
    and every sum accumulates frame by frame: the T * s^2 * k^2 kernel channels (1200 per
    pixel for the released model) never exist at once.

    On CPU in eager inference, ops/csrc/fgdf_taps.cpp does each frame in one pass where it is
    built (``_upsample_with_kernel``). Otherwise, at x4, each pixel's sum over its window is a
    small matrix product, windows ``[C+1, k*k]`` times kernels ``[k*k, s*s]`` (the extra row of
    ones gives sum(K)), done for all pixels by one batched matmul per frame: about 30x faster
    than k*k strided multiply-adds over the HR-sized accumulator, and no extra pass over the
    kernels for their sums; at x2 and x1, ``_upsample_by_taps``.

    Args:
        frame: ``i -> (frame_i [B, C, uH, uW], logits_i [B, (u*s)^2*k*k, H, W])``; the logits are
            read fastest channels-last (as the kernel head's convolution writes them). u = 1
            at x4; see ``dynamic_upsample`` for the sub-pixel order when u > 1.
        t: number of frames T.
    Returns:
        ``[B, C, s*uH, s*uW]``, equal to the batched version up to float rounding.
    """
    x, logits = frame(0)

    def reuse_first(i: int) -> tuple[Tensor, Tensor]:  # frame 0 is already made
        return (x, logits) if i == 0 else frame(i)

    taps = _taps_kernel(x, logits)
    if taps is not None:
        return _upsample_with_kernel(taps, reuse_first, t, scale)
    if x.shape[-1] != logits.shape[-1]:  # kernels on a coarser grid (x2, x1)
        return _upsample_by_taps(reuse_first, t, scale)
    acc = psum = None
    kk = 0
    shape = None
    for i in range(t):
        if i:
            x, logits = frame(i)
        b, c, h, w = x.shape
        kk = logits.shape[1] // (scale * scale)
        ks = int(round(kk ** 0.5))
        # Sums of T*k*k terms accumulate in fp32 at least, whatever the kernels' dtype.
        dtype = torch.promote_types(x.dtype, torch.float32)
        windows = _pixel_windows(x.to(dtype), ks)  # [N, C+1, k*k], N = B * H * W
        # [B, s*s*k*k, H, W] -> [N, k*k, s*s] (a view when the logits are channels-last; converted
        # first, while the layout is dense, which is twice as fast as converting the view)
        kernels = logits.to(dtype).permute(0, 2, 3, 1).reshape(b * h * w, scale * scale, kk).transpose(1, 2)
        if acc is None:
            acc = torch.bmm(windows, kernels)  # [N, C+1, s*s]: filtered values, and sum(K) last
            psum = windows[:, :c].sum(dim=2, keepdim=True)
            shape = (b, c, h, w)
        else:
            assert psum is not None
            acc.baddbmm_(windows, kernels)
            psum += windows[:, :c].sum(dim=2, keepdim=True)
        del windows, kernels
    if acc is None or psum is None or shape is None:
        raise ValueError("dynamic_upsample_streamed needs at least one frame")
    b, c, h, w = shape
    n = t * kk
    out = acc[:, :c].addcmul_(psum, (1.0 - acc[:, c:]) / n)  # [N, C, s*s]
    # (pixel, channel, sub-pixel i*s + j) -> HR pixel (h*s + i, w*s + j)
    out = out.view(b, h, w, c, scale, scale).permute(0, 3, 1, 4, 2, 5)
    return out.reshape(b, c, h * scale, w * scale)
