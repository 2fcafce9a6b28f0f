"""Streaming restoration of a sequence of frames with any registry model.

frames -> sliding T-windows (ends replicated) -> model, tile by tile -> blend -> frames.
Recurrent models (HOFFR) instead take one frame at a time with their previous output.

- Every input frame gives an output frame: the window of frame i holds frames
  clamp(i - N .. i + N), so the first and last frames see replicated neighbours.
- Streaming: only the T frames of the current window (and their cached features) are held.
- Features that depend on one frame only (FMA-Net's NetD initial features: the family's
  ``encode_frame``) are computed once per frame and tile and reused by the T windows that
  contain it.
- Families with an ``input_flow`` (JFFRA) get it computed here, per window and tile.
- Any resolution: frames larger than the memory budget allows are restored in overlapping
  tiles blended with smooth weights; the budget comes from the memory available (or
  ``--max-memory``), or the tile size is given (``--tile``).
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor

from .. import interrupts
from ..data.flow import initial_flows
from ..data.windows import window_indices
from ..devices import available_memory, release_free_memory
from ..errors import InputError
from ..models.family import RestorationModel
from ..precision import Precision, resolve_precision
from .deflicker import deflicker, parse_share

__all__ = ["Restorer", "TilePlan", "plan_tiles"]


# On CPU, tiles down to about 20k LR pixels restore nearly as fast as whole frames (measured
# with fmanet at 180x320, 2 threads: 19.2 s/frame untiled, 19.9 s in three tiles), so a larger
# working set buys little speed; this keeps memory low by default while the default model
# (fmanet-cpu, 0.37 GB at 180x320 in fp32) restores 180x320 in one tile, without the 5 %
# of its pixels that a second tile's overlap recomputes.
CPU_DEFAULT_BUDGET = int(0.5 * (1 << 30))


def default_budget(device: torch.device) -> int:
    """Bytes for one tile's forward pass: 80% of free GPU memory; on CPU the smaller of half
    the available memory and ``CPU_DEFAULT_BUDGET``."""
    if device.type == "cpu":
        return min(CPU_DEFAULT_BUDGET, available_memory(device) // 2)
    return int(0.8 * available_memory(device))


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

    @classmethod
    def grid(cls, height: int, width: int, size_y: int, size_x: int, overlap: int) -> "TilePlan":
        """Tiles of size_y x size_x spread evenly over the frame, sharing at least ``overlap``."""
        return cls(height, width, size_y, size_x, overlap, _starts(height, size_y, overlap),
                   _starts(width, size_x, overlap))


def _starts(length: int, size: int, overlap: int) -> tuple[int, ...]:
    if size >= length:
        return (0,)
    step = size - overlap
    n = math.ceil((length - size) / step) + 1
    # Spread the tiles evenly so every overlap is at least `overlap`.
    return tuple(round(i * (length - size) / (n - 1)) for i in range(n))


def plan_tiles(height: int, width: int, *, tile: int | None, overlap: int,
               tile_bytes: Callable[[int, int], int] | None = None, budget: int | None = None,
               min_size: int = 8) -> TilePlan:
    """Choose LR tiles.

    ``tile`` given: tiles of at most tile x tile. Otherwise the grid (ny x nx) whose tiles'
    forward passes each fit ``budget`` bytes (``tile_bytes(h, w)``: the model's
    ``inference_bytes``) with the least total area, overlaps included; one tile when the whole
    frame fits. The T frames' cached features and the output frame come on top.
    """
    if tile is not None:
        if tile < max(height, width) and tile <= 2 * overlap:
            raise InputError(f"tile {tile} must exceed twice the overlap ({overlap})")
        return TilePlan.grid(height, width, min(tile, height), min(tile, width), overlap)
    best: tuple[int, int] | None = (1, 1)
    if tile_bytes is not None and budget is not None:
        best, best_area = None, None
        for ny in range(1, 65):
            for nx in range(1, 65):
                sy = _tile_len(height, ny, overlap)
                sx = _tile_len(width, nx, overlap)
                if (ny > 1 and sy < max(min_size, 2 * overlap + 1)) or (nx > 1 and sx < max(min_size, 2 * overlap + 1)):
                    continue
                area = ny * nx * sy * sx
                fits = tile_bytes(sy, sx) <= budget
                if fits and (best_area is None or area < best_area):
                    best, best_area = (ny, nx), area
        if best is None:
            smallest = max(min_size, 2 * overlap + 1)
            need = tile_bytes(min(height, smallest), min(width, smallest))
            if need <= budget:  # small tiles fit, but a frame this large needs more than 64 x 64 of them
                raise InputError(f"frames of {width}x{height} need more than 64x64 tiles within "
                                 f"{budget / (1 << 30):.3g} GB; raise --max-memory or pass --tile")
            raise InputError(f"a memory budget of {budget / (1 << 30):.3g} GB is too small for this model at any "
                             f"tile size (a {smallest}x{smallest} tile with overlap {overlap} needs "
                             f"{need / (1 << 30):.3g} GB); raise --max-memory or pass --tile")
    ny, nx = best or (1, 1)
    return TilePlan.grid(height, width, _tile_len(height, ny, overlap), _tile_len(width, nx, overlap), overlap)


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
    """One input frame in the window, with its per-frame features (``encode_frame``) cached per tile."""

    __slots__ = ("lr", "features")

    def __init__(self, lr: Tensor) -> None:
        self.lr = lr  # [3, H, W] on the device, in the model's channel order
        self.features: dict[int, Tensor | None] = {}


class _FrameBuffer:
    """The frames of an indexed stream that a window or chunk still needs, read ahead on demand.

    ``end`` is the clip's length once the stream has ended (None before).
    """

    def __init__(self, stream: Iterator[tuple[int, _Frame]]) -> None:
        self.stream = stream
        self.frames: dict[int, _Frame] = {}
        self.end: int | None = None
        self.upcoming: int | None = None  # index of the next frame the stream gives

    def fill(self, last: int) -> None:
        """Read frames up to index ``last`` (or to the stream's end)."""
        while self.end is None and (self.upcoming is None or self.upcoming <= last):
            nxt = next(self.stream, None)
            if nxt is None:
                self.end = self.upcoming or 0
                return
            self.frames[nxt[0]] = nxt[1]
            self.upcoming = nxt[0] + 1

    def drop_before(self, index: int) -> None:
        for j in [j for j in self.frames if j < index]:
            del self.frames[j]


class Restorer:
    """Restore a stream of frames with any registry model.

    How frames reach the model follows ``model.frames.mode``, chosen once: window families
    (FMA-Net, JFFRA) get each frame's T-window through ``model.restore``; recurrent ones (HOFFR)
    each frame with its predecessor and their previous output through ``model.step``; sequence
    ones (FMA-Net++) a ``model.sequence_stream`` fed a few frames at a time. Tiles, whichever
    the mode, are blended by ``_blend``.

    Args:
        model: a model that can restore (``model.can_restore``), from ``vsrdb.build`` /
            ``vsrdb.load_checkpoint``; it is left as it was (a copy is cast when its device or
            dtype differ from ``device`` and ``precision``).
        device: where to run.
        precision: ``fp32`` (the release's numbers), ``bf16``, ``fp16`` or ``auto``, resolved for
            ``device`` by ``vsrdb.precision.resolve_precision``; the weights are cast to it, the
            frames stay fp32 (the model casts its feature path).
        tile: LR tile size, or None to choose from ``max_memory`` (bytes; None = what is available).
        overlap: LR pixels shared by neighbouring tiles.
        deflicker: blend each output with the previous one warped onto it, at most this share
            (``restore.deflicker``; 0.5 is ``--deflicker``'s); outputs then depend on the frames
            before them, so the restorer runs as a recurrent one (its ``state`` is the last output).
    """

    def __init__(self, model: RestorationModel, *, device: torch.device | str = "cpu",
                 precision: str | Precision = "fp32",
                 tile: int | None = None, overlap: int = 8, max_memory: int | None = None,
                 deflicker: float | None = None) -> None:
        if not model.can_restore:
            raise InputError(f"{model.preset} is a partial model (an early training stage's): it trains but "
                             "cannot restore frames")
        if deflicker is not None:
            try:
                parse_share(deflicker)
            except ValueError as e:
                raise InputError(f"deflicker {deflicker}: {e}") from None
        if deflicker is not None and model.frames.mode == "recurrent":
            raise InputError(f"{model.preset} is recurrent already (each output takes the previous one); "
                             "deflicker is for window and sequence models")
        self.device = torch.device(device)
        self.precision = precision if isinstance(precision, Precision) else resolve_precision(precision, self.device)
        self.dtype = self.precision.dtype
        # The caller's model stays as it was (device, dtype): a copy is cast when either differs.
        moved = any(t.device != self.device or (t.is_floating_point() and t.dtype != self.dtype)
                    for t in itertools.chain(model.parameters(), model.buffers()))
        self.model = (copy.deepcopy(model) if moved else model).to(self.device, self.dtype).eval()
        self.tile = tile
        self.overlap = overlap
        self.max_memory = max_memory
        # Images stay fp32 for the families that cast their own feature path (see precision);
        # any other family gets them in its weights' dtype.
        self.input_dtype = torch.float32 if model.casts_inputs else self.dtype
        self.bgr = model.channel_order == "BGR"
        self.scale = model.scale
        self.plan: TilePlan | None = None  # chosen from the first frame's size, or given
        self._weights: list[Tensor] = []   # per tile, its share of the blended HR frame
        self.state: Tensor | None = None  # a recurrent model's last output (or the last deflickered one)
        self.deflicker = deflicker
        mode = model.frames.mode
        self._drive = {"window": self._windows, "recurrent": self._recurrent, "sequence": self._sequence}[mode]
        # Frames one model call restores together: a sequence family's push (more use a GPU better).
        self.sequence_chunk = 1 if mode != "sequence" or self.device.type == "cpu" else model.frames.length

    def budget(self) -> int:
        """Bytes for one tile's forward pass: ``max_memory``, or what the device has."""
        return self.max_memory if self.max_memory is not None else default_budget(self.device)

    def make_plan(self, height: int, width: int) -> TilePlan:
        """The tiles for frames of this LR size under the memory budget (or ``tile``)."""
        budget = self.budget()
        return plan_tiles(height, width, tile=self.tile, overlap=self.overlap, budget=budget,
                          tile_bytes=self._tile_bytes,
                          min_size=max(8, self.model.min_size))

    def _tile_bytes(self, height: int, width: int) -> int:
        # (what a sequence family's blocks hold between pushes comes on top)
        return self.model.inference_bytes(height, width, frames=self.sequence_chunk,
                                          bytes_per_value=self.dtype.itemsize)

    def _blend(self, tiles: Iterable[Tensor]) -> Tensor:
        """The HR frame ``[3, sH, sW]`` (fp32) from its tiles' outputs ``[3, sh, sw]`` in plan order,
        each weighted by its share. ``tiles`` is consumed one at a time, so a generator keeps
        one tile's output alive at once."""
        plan, s = self._plan(), self.scale
        if not plan.tiled:
            return next(iter(tiles)).float()
        out = torch.zeros(3, plan.height * s, plan.width * s, device=self.device, dtype=torch.float32)
        for idx, ((y, x, h, w), tile) in enumerate(zip(plan.tiles(), tiles)):
            out[:, y * s:(y + h) * s, x * s:(x + w) * s] += tile.float() * self._weights[idx]
            del tile
            release_free_memory()
        return out

    @torch.no_grad()
    def _windows(self, frames: Iterator[tuple[int, _Frame]], start: int, stop: int | None,
                 state: Tensor | None) -> Iterator[Tensor]:
        """Window families: frame i from the clamped window i - N .. i + N, read ahead as needed."""
        before, after = self.context
        buffer = _FrameBuffer(frames)
        i = start
        while stop is None or i < stop:
            buffer.fill(i + after)
            if buffer.end is not None and i >= buffer.end:
                break
            window = [buffer.frames[j] for j in window_indices(i, before + after + 1, buffer.end)]
            lr = torch.stack([f.lr for f in window], dim=1).unsqueeze(0)  # [1, 3, T, H, W]
            out = self._blend(self._run(window, lr[..., y:y + h, x:x + w], idx, (y, x, h, w))[0]
                              for idx, (y, x, h, w) in enumerate(self._plan().tiles()))
            yield (out.flip(0) if self.bgr else out).cpu()
            i += 1
            buffer.drop_before(i - before)

    def _tile_weights(self, plan: TilePlan) -> list[Tensor]:
        """Per tile, its HR blending weights divided by the sum over all tiles (made once per plan)."""
        scale = self.scale
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
        inputs = {}
        if self.model.input_flow is not None:
            inputs["flows"] = initial_flows(lr, self.model.input_flow)
        features: list[Tensor | None] = []
        for frame in window:
            if idx not in frame.features:
                crop = frame.lr[:, y:y + h, x:x + w]
                frame.features[idx] = self.model.encode_frame(crop.unsqueeze(0))
            features.append(frame.features[idx])
        if any(f is None for f in features):  # the family caches nothing per frame
            return self.model.restore(lr, flows=inputs.get("flows"))
        return self.model.restore(lr, features=[f for f in features if f is not None], flows=inputs.get("flows"))

    @torch.no_grad()
    def _recurrent(self, frames: Iterator[tuple[int, _Frame]], start: int, stop: int | None,
                   state: Tensor | None) -> Iterator[Tensor]:
        """One ``model.step`` per frame and tile; each tile's previous output is its crop of the
        previous blended frame, so tiles stay consistent across their seams over time."""
        plan, scale = self._plan(), self.scale
        prev: _Frame | None = None
        hr_prev = state
        for index, cur in frames:
            if stop is not None and index >= stop:
                return
            if index < start:  # the predecessor of the first frame, when resuming mid-clip
                prev = cur
                continue
            before = prev or cur  # the first frame is its own predecessor

            def tiles() -> Iterator[Tensor]:
                for y, x, h, w in plan.tiles():
                    tile_state = None if hr_prev is None else \
                        hr_prev[:, y * scale:(y + h) * scale, x * scale:(x + w) * scale].unsqueeze(0).to(self.input_dtype)
                    yield self.model.step(before.lr[:, y:y + h, x:x + w].unsqueeze(0),
                                          cur.lr[:, y:y + h, x:x + w].unsqueeze(0), tile_state)[0]

            out = self._blend(tiles())
            # The model is fed its own (unclamped) output, as in training.
            hr_prev, prev = out, cur
            self.state = out
            yield (out.flip(0) if self.bgr else out).cpu()

    @torch.no_grad()
    def _sequence(self, frames: Iterator[tuple[int, _Frame]], start: int, stop: int | None,
                  state: Tensor | None) -> Iterator[Tensor]:
        """Sequence families: one ``model.sequence_stream`` per tile, fed ``sequence_chunk`` frames at
        a time. A stream takes its first frame as the clip's start (run() checked that it is, or
        lies ``reach`` frames or more before ``start``: what the stream's start changes reaches
        only the ``reach`` frames after it) and ends the clip only when the frames end, so every
        output equals the whole-clip forward's."""
        plan, reach = self._plan(), self.model.frames.reach
        streams = [self.model.sequence_stream(self.sequence_chunk) for _ in plan.tiles()]
        chunk: list[Tensor] = []
        first: int | None = None  # clip index of the first frame, hence of the first output
        done = 0                  # outputs blended so far

        def push(end: bool) -> list[list[Tensor]]:
            outs: list[list[Tensor]] = [[] for _ in streams]
            if chunk:
                lr = torch.stack(chunk, dim=1).unsqueeze(0)  # [1, 3, K, H, W]
                outs = [s.push(lr[..., y:y + h, x:x + w]) for s, (y, x, h, w) in zip(streams, plan.tiles())]
                chunk.clear()
            if end:
                outs = [o + s.finish() for o, s in zip(outs, streams)]
            release_free_memory()
            return outs

        def blend(per_tile: list[list[Tensor]]) -> Iterator[tuple[int, Tensor]]:
            nonlocal done
            for parts in zip(*per_tile):
                out = self._blend(tile[0] for tile in parts)
                assert first is not None  # set by the first frame pushed
                yield first + done, (out.flip(0) if self.bgr else out).cpu()
                done += 1

        def outputs() -> Iterator[tuple[int, Tensor]]:
            nonlocal first
            ended = True
            for i, frame in frames:
                if i < start - reach:
                    continue  # a stream started here gives frame start exactly (see the docstring)
                first = i if first is None else first
                if stop is not None and i >= stop + reach:
                    ended = False  # the frames from here on change no output before stop
                    break
                chunk.append(frame.lr)
                if len(chunk) == self.sequence_chunk:
                    yield from blend(push(end=False))
            yield from blend(push(end=ended))

        for j, out in outputs():
            if stop is not None and j >= stop:
                return
            if j >= start:
                yield out

    def _plan(self) -> TilePlan:
        if self.plan is None:
            raise RuntimeError("no tile plan: run() or use_plan() sets one")
        return self.plan

    def use_plan(self, plan: TilePlan) -> None:
        """Restore with these tiles from now on (a resumed or shared job keeps its first plan)."""
        self.plan = plan
        self._weights = self._tile_weights(plan) if plan.tiled else []

    @property
    def recurrent(self) -> bool:
        """Whether each output depends on the one before (a recurrent model, or deflicker)."""
        return self.model.frames.mode == "recurrent" or self.deflicker is not None

    @property
    def context(self) -> tuple[int, int]:
        """Frames before and after a frame that its restoration reads (the window's reach)."""
        return self.model.frames.context

    def run(self, frames: Iterable[Tensor], *, first: int = 0, start: int | None = None, stop: int | None = None,
            state: Tensor | None = None) -> Iterator[Tensor]:
        """Frames ``[3, H, W]`` float RGB in [0, 1] -> restored frames ``[3, 4H, 4W]`` (float32, RGB, CPU).

        ``frames`` are frames ``first, first + 1, ...`` of a clip; the outputs are those of frames
        ``start`` (default ``first``) to ``stop - 1`` (default: to the clip's end). A frame's
        window is clamped to the clip, so restoring a clip in pieces, each given its
        ``context`` frames, equals restoring it whole; ``first`` must be ``max(0, start - before)``
        or less. Recurrent models and deflicker take ``state``, the previous output (``self.state``
        after a run).

        Raises InputError when frames change size or are smaller than the model allows.
        """
        start = first if start is None else start
        before = self.context[0]
        if first > max(0, start - before):
            raise InputError(f"frame {start}'s window needs frames from {max(0, start - before)}; given from {first}")
        it = iter(frames)
        head = next(it, None)
        if head is None:
            raise InputError("has no frames")
        height, width = head.shape[-2:]
        if min(height, width) < self.model.min_size:
            raise InputError(f"frames are {width}x{height}; the model needs at least "
                             f"{self.model.min_size}x{self.model.min_size}")
        if self.plan is None or (self.plan.height, self.plan.width) != (height, width):
            self.use_plan(self.make_plan(height, width))

        def prepare(img: Tensor) -> _Frame:
            interrupts.check()  # each frame: a Ctrl-C that a library swallowed still stops the run
            if img.shape[-2:] != (height, width):
                raise InputError(f"a frame is {img.shape[-1]}x{img.shape[-2]}, the first is {width}x{height}")
            img = img.to(self.device, self.input_dtype, non_blocking=True)
            return _Frame(img.flip(0) if self.bgr else img)

        indexed = ((first + k, prepare(img)) for k, img in enumerate(itertools.chain([head], it)))
        if self.deflicker is None:
            yield from self._drive(indexed, start, stop, state)
            return
        previous = None if state is None else state.cpu()
        for out in self._drive(indexed, start, stop, None):
            previous = self.state = deflicker(out, previous, self.deflicker)
            yield previous
