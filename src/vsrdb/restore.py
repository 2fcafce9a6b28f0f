"""Streaming restoration of whole videos: ``vsrdb restore INPUT -o OUTPUT``.

read frames -> sliding T-windows (ends replicated) -> model, tile by tile -> blend -> write.
Recurrent models (HOFFR) instead take one frame at a time with their previous output.

- Every input frame gives an output frame: the window of frame i holds frames
  clamp(i - N .. i + N), so the first and last frames see replicated neighbours.
- Streaming: only the T frames of the current window (and their cached features) are held.
- NetD's initial features depend on one frame only, so each frame's are computed once (per
  tile) and reused by the T windows that contain it (models with ``encode_frame``).
- Any resolution: frames larger than the memory budget allows are restored in overlapping
  tiles blended with smooth weights; the budget comes from the memory available (or
  ``--max-memory``), or the tile size is given (``--tile``).
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator

import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["Restorer", "TilePlan", "plan_tiles", "estimate_forward_bytes", "pick_device", "restore_video",
           "add_subcommand"]


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA, else Apple MPS, else CPU."""
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_memory(device: torch.device) -> int:
    """Bytes this process may still use on ``device`` (free GPU memory, or MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


# On CPU, tiles down to about 20k LR pixels restore as fast as whole frames (measured with
# fmanet at 180x320, 2 threads: 19.2 s/frame untiled, 19.9 s in three tiles), so a larger
# working set buys no speed; this keeps memory low by default.
CPU_DEFAULT_BUDGET = int(0.3 * (1 << 30))


def default_budget(device: torch.device) -> int:
    """Bytes for one tile's forward pass: 80% of free GPU memory; on CPU the smaller of half
    the available memory and ``CPU_DEFAULT_BUDGET``."""
    if device.type == "cpu":
        return min(CPU_DEFAULT_BUDGET, available_memory(device) // 2)
    return int(0.8 * available_memory(device))


def estimate_forward_bytes(cfg, height: int, width: int, *, bytes_per_value: int = 4) -> int:
    """Peak working memory of one window's inference forward at LR size height x width:
    the model config's ``inference_values_per_pixel``, with a quarter added for the allocator."""
    return int(height * width * cfg.inference_values_per_pixel() * bytes_per_value * 1.25)


def feature_bytes(cfg, height: int, width: int, *, bytes_per_value: int = 4) -> int:
    """Memory of one frame's cached NetD features."""
    return height * width * cfg.dim * bytes_per_value


@dataclass(frozen=True)
class TilePlan:
    """LR tiles: ``size`` x ``size`` windows at ``ys`` x ``xs`` starts, ``overlap`` pixels shared."""

    height: int
    width: int
    size_y: int
    size_x: int
    overlap: int
    ys: tuple[int, ...] = field(default=())
    xs: tuple[int, ...] = field(default=())

    @property
    def tiled(self) -> bool:
        return len(self.ys) * len(self.xs) > 1

    def tiles(self) -> list[tuple[int, int, int, int]]:
        return [(y, x, min(self.size_y, self.height), min(self.size_x, self.width)) for y in self.ys for x in self.xs]


def _starts(length: int, size: int, overlap: int) -> tuple[int, ...]:
    if size >= length:
        return (0,)
    step = size - overlap
    n = math.ceil((length - size) / step) + 1
    # Spread the tiles evenly so every overlap is at least `overlap`.
    return tuple(round(i * (length - size) / (n - 1)) for i in range(n))


def plan_tiles(height: int, width: int, *, tile: int | None, overlap: int, config=None, budget: int | None = None,
               bytes_per_value: int = 4, min_size: int = 8) -> TilePlan:
    """Choose LR tiles.

    ``tile`` given: tiles of at most tile x tile. Otherwise the grid (ny x nx) whose tiles'
    forward passes each fit ``budget`` bytes with the least total area, overlaps included;
    one tile when the whole frame fits. The T frames' cached features
    (``feature_bytes`` each) and the output frame come on top.
    """
    if tile is not None:
        if tile < max(height, width) and tile <= 2 * overlap:
            raise ValueError(f"tile {tile} must exceed twice the overlap ({overlap})")
        sy, sx = min(tile, height), min(tile, width)
        return TilePlan(height, width, sy, sx, overlap, _starts(height, sy, overlap), _starts(width, sx, overlap))
    best = (1, 1)
    if config is not None and budget is not None:
        best, best_area = (64, 64), None
        for ny in range(1, 65):
            for nx in range(1, 65):
                sy = _tile_len(height, ny, overlap)
                sx = _tile_len(width, nx, overlap)
                if (ny > 1 and sy < max(min_size, 2 * overlap + 1)) or (nx > 1 and sx < max(min_size, 2 * overlap + 1)):
                    continue
                area = ny * nx * sy * sx
                fits = estimate_forward_bytes(config, sy, sx, bytes_per_value=bytes_per_value) <= budget
                if fits and (best_area is None or area < best_area):
                    best, best_area = (ny, nx), area
    sy, sx = _tile_len(height, best[0], overlap), _tile_len(width, best[1], overlap)
    return TilePlan(height, width, sy, sx, overlap, _starts(height, sy, overlap), _starts(width, sx, overlap))


def _tile_len(length: int, n: int, overlap: int) -> int:
    """Tile length so that n tiles sharing ``overlap`` pixels cover ``length``."""
    return length if n == 1 else min(length, math.ceil((length + (n - 1) * overlap) / n))


def _ramp(length: int, start_soft: bool, end_soft: bool, overlap: int, device, dtype) -> Tensor:
    """1-D blending weight: raised-cosine ramps over the overlaps that touch other tiles."""
    w = torch.ones(length, device=device, dtype=dtype)
    if overlap > 0:
        r = 0.5 - 0.5 * torch.cos(torch.linspace(0, math.pi, overlap + 2, device=device, dtype=dtype)[1:-1])
        if start_soft:
            w[:overlap] = r
        if end_soft:
            w[-overlap:] = r.flip(0)
    return w


class _Frame:
    """One input frame in the window, with its NetD features cached per tile."""

    __slots__ = ("lr", "feats")

    def __init__(self, lr: Tensor) -> None:
        self.lr = lr  # [3, H, W] on the device, in the model's channel order
        self.feats: dict[int, Tensor] = {}


class Restorer:
    """Restore a stream of frames with any registry model.

    Window models (FMA-Net, JFFRA) get each frame's T-window through ``model.restore``;
    recurrent ones (``model.recurrent``, HOFFR) get each frame with its predecessor and
    their previous output through ``model.step``.

    Args:
        model: a stage-2 model from ``vsrdb.build`` / ``vsrdb.load_checkpoint``.
        device: where to run; ``half`` runs in float16 (GPU only).
        tile: LR tile size, or None to choose from ``max_memory`` (bytes; None = what is available).
        overlap: LR pixels shared by neighbouring tiles.
    """

    def __init__(self, model: nn.Module, *, device: torch.device | str = "cpu", half: bool = False,
                 tile: int | None = None, overlap: int = 8, max_memory: int | None = None) -> None:
        if getattr(model, "net_r", True) is None:
            raise ValueError("model is stage 1 (NetD alone): it re-degrades frames but cannot restore them")
        self.device = torch.device(device)
        if half and self.device.type == "cpu":
            raise ValueError("--half needs a GPU (float16 convolutions on CPU are slow and inexact)")
        self.dtype = torch.float16 if half else torch.float32
        self.model = model.to(self.device, self.dtype).eval()
        self.cfg = model.config
        self.tile = tile
        self.overlap = overlap
        self.max_memory = max_memory
        self.bgr = getattr(model, "channel_order", "RGB") == "BGR"
        self.plan: TilePlan | None = None

    def _make_plan(self, height: int, width: int) -> TilePlan:
        budget = self.max_memory if self.max_memory is not None else default_budget(self.device)
        return plan_tiles(height, width, tile=self.tile, overlap=self.overlap, config=self.cfg, budget=budget,
                          bytes_per_value=2 if self.dtype == torch.float16 else 4,
                          min_size=max(8, self.model.min_size))

    @torch.no_grad()
    def _restore_window(self, window: list[_Frame]) -> Tensor:
        plan = self.plan
        scale = self.cfg.scale
        lr = torch.stack([f.lr for f in window], dim=1).unsqueeze(0)  # [1, 3, T, H, W]
        if not plan.tiled:
            return self._run(window, lr, 0, (0, 0, plan.height, plan.width))[0]
        out = torch.zeros(3, plan.height * scale, plan.width * scale, device=self.device, dtype=torch.float32)
        for idx, (y, x, h, w) in enumerate(plan.tiles()):
            tile_out = self._run(window, lr[..., y:y + h, x:x + w], idx, (y, x, h, w))[0].float()
            out[:, y * scale:(y + h) * scale, x * scale:(x + w) * scale] += tile_out * self._blend[idx]
            del tile_out
            _release_free_memory()
        return out

    def _blend_weights(self, plan: TilePlan) -> list[Tensor]:
        """Per tile, its HR blending weights divided by the sum over all tiles (made once per plan)."""
        scale = self.cfg.scale
        ov = self.overlap * scale
        ramps, total = [], torch.zeros(plan.height * scale, plan.width * scale, device=self.device)
        for y, x, h, w in plan.tiles():
            wy = _ramp(h * scale, y > 0, y + h < plan.height, ov, self.device, torch.float32)
            wx = _ramp(w * scale, x > 0, x + w < plan.width, ov, self.device, torch.float32)
            ramps.append(wy[:, None] * wx[None, :])
            total[y * scale:(y + h) * scale, x * scale:(x + w) * scale] += ramps[-1]
        return [r / total[y * scale:(y + h) * scale, x * scale:(x + w) * scale]
                for r, (y, x, h, w) in zip(ramps, plan.tiles())]

    def _run(self, window: list[_Frame], lr: Tensor, idx: int, box: tuple[int, int, int, int]) -> Tensor:
        y, x, h, w = box
        if not hasattr(self.model, "encode_frame"):
            return self.model.restore(lr)
        feats = []
        for frame in window:
            if idx not in frame.feats:
                crop = frame.lr[:, y:y + h, x:x + w]
                frame.feats[idx] = self.model.encode_frame(crop.unsqueeze(0))
            feats.append(frame.feats[idx])
        return self.model.restore(lr, feat0=feats)

    @torch.no_grad()
    def _run_recurrent(self, prepare, head: list[Tensor], rest: Iterator[Tensor]) -> Iterator[Tensor]:
        """One ``model.step`` per frame and tile; each tile's previous output is its crop of the
        previous blended frame, so tiles stay consistent across their seams over time."""
        plan, scale = self.plan, self.cfg.scale
        prev: _Frame | None = None
        hr_prev: Tensor | None = None
        for img in itertools.chain(head, rest):
            cur = prepare(img)
            before = prev or cur  # the first frame is its own predecessor
            out = torch.zeros(3, plan.height * scale, plan.width * scale, device=self.device, dtype=torch.float32)
            for idx, (y, x, h, w) in enumerate(plan.tiles()):
                box = (slice(None), slice(y * scale, (y + h) * scale), slice(x * scale, (x + w) * scale))
                state = None if hr_prev is None else hr_prev[box].unsqueeze(0).to(self.dtype)
                tile = self.model.step(before.lr[:, y:y + h, x:x + w].unsqueeze(0),
                                       cur.lr[:, y:y + h, x:x + w].unsqueeze(0), state)[0].float()
                out[box] += tile * self._blend[idx] if plan.tiled else tile
            # The model is fed its own (unclamped) output, as in training.
            hr_prev, prev = out, cur
            yield (out.flip(0) if self.bgr else out).cpu()

    def run(self, frames: Iterable[Tensor]) -> Iterator[Tensor]:
        """Frames ``[3, H, W]`` float RGB in [0, 1] -> restored frames ``[3, 4H, 4W]`` (float32, RGB, CPU).

        Raises ValueError when the stream has fewer than T frames or changes size.
        """
        t = 1 if getattr(self.model, "recurrent", False) else self.cfg.num_seq
        before = t // 2  # window of frame i: frames i - before .. i + (t - 1 - before)
        it = iter(frames)
        head = []
        for frame in it:
            head.append(frame)
            if len(head) == t:
                break
        if len(head) < t:
            raise ValueError(f"has {len(head)} frame(s); the model needs at least T={t}")
        height, width = head[0].shape[-2:]
        if min(height, width) < self.model.min_size:
            raise ValueError(f"frames are {width}x{height}; the model needs at least "
                             f"{self.model.min_size}x{self.model.min_size}")
        self.plan = self._make_plan(height, width)
        self._blend = self._blend_weights(self.plan) if self.plan.tiled else []

        def prepare(img: Tensor) -> _Frame:
            if img.shape[-2:] != (height, width):
                raise ValueError(f"a frame is {img.shape[-1]}x{img.shape[-2]}, the first is {width}x{height}")
            img = img.to(self.device, self.dtype, non_blocking=True)
            return _Frame(img.flip(0) if self.bgr else img)

        if t == 1 and getattr(self.model, "recurrent", False):
            yield from self._run_recurrent(prepare, head, it)
            return
        pending = deque(prepare(f) for f in head)
        window: deque[_Frame] = deque([pending[0]] * before)  # replicated before the first frame
        for _ in range(t - before):
            window.append(pending.popleft())
        n_read = t
        exhausted = False

        def pull() -> _Frame:
            """The next frame, or the last one again past the end."""
            nonlocal n_read, exhausted
            if pending:
                return pending.popleft()
            if not exhausted:
                nxt = next(it, None)
                if nxt is not None:
                    n_read += 1
                    return prepare(nxt)
                exhausted = True
            return window[-1]

        produced = 0
        while produced < n_read:  # n_read grows as frames are pulled
            out = self._restore_window(list(window)).float()
            yield (out.flip(0) if self.bgr else out).cpu()
            produced += 1
            window.popleft()
            window.append(pull())


def restore_video(input_path: str, output_path: str, model: nn.Module, *, device: str = "auto", half: bool = False,
                  tile: int | None = None, overlap: int = 8, max_memory: int | None = None, overwrite: bool = False,
                  lossless: bool = False, crf: int = 18, progress: bool = True) -> dict:
    """Restore a video file or frame folder into a video file or PNG folder. Returns a summary."""
    from tqdm import tqdm

    from .data.video import InputError, check_output_path, open_frames, open_writer, to_array, to_tensor

    check_output_path(output_path, overwrite=overwrite)  # before any work
    source = open_frames(input_path)
    restorer = Restorer(model, device=pick_device(device), half=half, tile=tile, overlap=overlap,
                        max_memory=max_memory)
    bits = 8
    start = time.perf_counter()
    with source:
        def checked() -> Iterator[Tensor]:
            nonlocal bits
            for arr in source:
                if arr.dtype.itemsize == 2:
                    bits = 16
                yield to_tensor(arr)
        try:
            stream = restorer.run(checked())
            with open_writer(output_path, fps=source.fps, overwrite=overwrite, lossless=lossless, crf=crf) as writer:
                bar = tqdm(total=source.num_frames, unit="frame", desc="restore", disable=not progress,
                           dynamic_ncols=True, file=sys.stderr)
                with bar:
                    for out in stream:
                        writer.write(to_array(out, bits=bits))
                        bar.update(1)
                        elapsed = time.perf_counter() - start
                        bar.set_postfix_str(f"{elapsed / writer.count:.2f} s/frame")
                count = writer.count
        except ValueError as e:
            if isinstance(e, InputError):
                raise
            raise InputError(f"{input_path}: {e}") from None
    plan = restorer.plan
    elapsed = time.perf_counter() - start
    return {"frames": count, "seconds": elapsed, "seconds_per_frame": elapsed / max(count, 1),
            "fps": float(source.fps), "input_size": (source.width, source.height),
            "tiles": len(plan.tiles()) if plan else 0, "device": str(restorer.device)}


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("restore", help="restore a blurry low-resolution video (or frame folder) at x4",
                       description="Restore every frame of a video file or a folder of frames. "
                                   "OUTPUT is a video file (.mp4 H.264 by default) or, without an extension, "
                                   "a folder of PNG frames.")
    p.add_argument("input", help="video file (anything FFmpeg decodes) or folder of png/jpg/tif frames")
    p.add_argument("-o", "--output", required=True, help="output video file, or folder for PNG frames")
    p.add_argument("--weights", help="checkpoint: our folder format or the authors' model_D/R_best.pt folder")
    p.add_argument("--device", default="auto", help="auto (CUDA, MPS, else CPU), cpu, cuda, cuda:1, mps")
    p.add_argument("--half", action="store_true", help="float16 on GPU")
    p.add_argument("--tile", type=int, help="LR tile size in pixels (default: chosen from the memory available)")
    p.add_argument("--overlap", type=int, default=8, help="LR pixels shared by neighbouring tiles (default 8)")
    p.add_argument("--max-memory", type=float,
                   help="GB for one tile's forward pass (default: 80%% of free GPU memory; on CPU "
                        "min(half the available memory, 0.3))")
    p.add_argument("--lossless", action="store_true", help="lossless RGB H.264 instead of CRF-18 yuv420p")
    p.add_argument("--crf", type=int, default=18, help="H.264 quality for lossy output (default 18)")
    p.add_argument("--threads", type=int, help="CPU threads (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_restore)


def _cmd_restore(args: argparse.Namespace) -> int:
    from .checkpoints import load_checkpoint
    from .cli import CLIError
    from .data.video import check_output_path

    check_output_path(args.output, overwrite=args.overwrite)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.weights is None:
        weights = _builtin_weights()
        if weights is None:
            raise CLIError("no built-in model ships with this version yet; pass --weights PATH "
                           "(a vsrdb checkpoint folder or the authors' folder with model_D_best.pt/model_R_best.pt)")
    else:
        weights = args.weights
    model = load_checkpoint(weights)
    _use_heap_allocator()
    summary = restore_video(args.input, args.output, model, device=args.device, half=args.half, tile=args.tile,
                            overlap=args.overlap, overwrite=args.overwrite, lossless=args.lossless, crf=args.crf,
                            max_memory=int(args.max_memory * (1 << 30)) if args.max_memory else None,
                            progress=not args.quiet)
    print(f"wrote {args.output}: {summary['frames']} frames, {summary['seconds_per_frame']:.2f} s/frame on "
          f"{summary['device']}" + (f", {summary['tiles']} tiles" if summary["tiles"] > 1 else ""))
    return 0


_LIBC = None


def _release_free_memory() -> None:
    """Return freed heap pages to the OS between tiles (see ``_use_heap_allocator``).

    With the heap allocator, memory freed by one tile stays resident; trimming between
    tiles keeps peak RSS near the live set of one tile, for the price of faulting those
    pages in again (a few hundred ms against seconds of compute per tile).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def _builtin_weights():
    from importlib import resources

    try:
        folder = resources.files("vsrdb") / "weights" / "builtin"
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    return str(folder) if folder.is_dir() and (folder / "config.json").is_file() else None


def _use_heap_allocator() -> None:
    """Keep freed tensor memory for reuse instead of returning it to the OS.

    glibc serves blocks over 32 MB with fresh mmap()s whose pages the kernel zeroes on first
    touch; a forward pass allocates and frees hundreds of such activations, and the page
    faults cost about a third of CPU inference time. Serving them from the heap removes that.
    """
    if sys.platform != "linux" or os.environ.get("VSRDB_KEEP_MALLOC"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        return
    global _LIBC
    _LIBC = libc
