"""One restoration job: one input (video file or frame folder) to one output, done in
resumable work units.

The frames are cut into segments of ``segment`` frames. A segment's restored frames are
kept losslessly in the job's work folder (``OUTPUT.vsrdb-work``, next to the output) as
each is finished, and when the segment is complete they are encoded into a closed-GOP
segment file. A killed run therefore loses at most the frame in progress; ``--resume``
re-encodes the kept frames of an unfinished segment and carries on, and since every
frame's window, tiles and encoder input are the same, the result equals an uninterrupted
run's. Segments are independent (each gets its ``context`` frames around it), so several
processes can restore one file's segments side by side. The join at the end copies the
segments' packets into the output with the input's timestamps, sound and metadata, checks
the frame count, and moves the result into place.

``job.json`` in the work folder records everything that decides the output's bits (input
identity, model fingerprint, format, tiles); resuming with anything different is refused.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
from collections import deque
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from ..data.resize import resample
from ..errors import InputError
from ..files import format_bytes, hold_folder, mark_output_folder, release_folder, replace_atomically, write_atomically
from ..models.family import RestorationModel
from ..video import (
    OutputFormat,
    VideoEncoder,
    check_output_path,
    choose_format,
    join_segments,
    open_frames,
    read_image,
    set_display_rotation,
    to_array,
    to_tensor,
)
from .restorer import Restorer, TilePlan

__all__ = ["JobSpec", "Job", "WORK_SUFFIX", "model_fingerprint", "check_not_input", "RestoreOptions",
           "hold_work_folder", "release_work_folder"]

WORK_SUFFIX = ".vsrdb-work"
_VERSION = 1


@dataclass(frozen=True)
class RestoreOptions:
    """What the user chose that decides how outputs are written (CLI flags)."""

    codec: str | None = None
    pix_fmt: str | None = None
    crf: int | None = None
    lossless: bool = False
    audio: bool = True
    fps: Fraction | None = None  # frame folders' rate
    segment: int = 100
    tile: int | None = None
    overlap: int = 8
    max_memory: int | None = None
    precision: str = "fp32"  # auto, fp32, bf16, fp16 (see vsrdb.precision)
    outscale: float | None = None  # output size = input size x this (1 to the model's scale)
    size: tuple[int, int] | None = None  # output width, height
    deflicker: float | None = None  # the Restorer's (restore/deflicker.py): None = off


def model_fingerprint(model: RestorationModel) -> str:
    """A hash of the model's configuration and weights: resumed work must come from the same model."""
    h = hashlib.sha256()
    h.update(json.dumps(vars(model.config), sort_keys=True, default=str).encode())
    h.update(model.channel_order.encode())
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        # numpy has no bf16: low-precision weights are hashed as their fp32 values.
        t = tensor.detach().cpu()
        h.update((t.float() if t.dtype in (torch.bfloat16, torch.float16) else t).contiguous().numpy().tobytes())
    return h.hexdigest()[:32]


def check_not_input(output: Path, inputs: list[Path]) -> None:
    """Refuse an output that is an input (also through links), lies inside an input folder,
    or is a folder holding an input: replacing it would destroy the source."""
    out = Path(os.path.realpath(output))
    for inp in inputs:
        src = Path(os.path.realpath(inp))
        same = out == src or (output.exists() and inp.exists() and os.path.samefile(output, inp))
        if same:
            raise InputError(f"{output}: is the input {inp}; choose another output (the input is never replaced)")
        if src.is_dir() and src in out.parents:
            raise InputError(f"{output}: lies inside the input folder {inp}; choose an output outside it")
        if out in src.parents:
            raise InputError(f"{output}: holds the input {inp}; replacing it would delete the input")


@dataclass
class JobSpec:
    """Everything that decides a job's output bits; stored as ``job.json``."""

    input: str
    output: str
    kind: str  # "video" or "frames"
    frames: int  # planned: the container's count, or the stream's packets, or the folder's files
    stated_frames: int | None
    segment: int
    size: tuple[int, int]  # LR height, width
    tiles: tuple[int, int, int]  # tile height, width, overlap (LR)
    format: dict | None
    bits: int
    fps: str
    time_base: str
    model: str
    dtype: str
    input_id: tuple[int, int]  # size in bytes (files) or frame count (folders), mtime in ns
    audio: bool
    rotation: int = 0  # the input's display rotation (degrees, PyAV's convention)
    input_hash: str = ""  # of the input's first, middle and last MB (a replaced file of equal size and mtime)
    out_size: tuple[int, int] | None = None  # output height, width when not the model's x scale
    deflicker: float | None = None  # the Restorer's deflicker share
    version: int = _VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1)

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        d = json.loads(text)
        for key in ("size", "tiles", "input_id", "out_size"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    @property
    def segments(self) -> int:
        return max(1, -(-self.frames // self.segment))

    def bounds(self, k: int) -> tuple[int, int | None]:
        """Frames ``[start, stop)`` of segment k; the last runs to the end of the stream."""
        start = k * self.segment
        return start, (None if k == self.segments - 1 else start + self.segment)


def _input_id(path: Path) -> tuple[int, int]:
    st = path.stat()
    size = len(os.listdir(path)) if path.is_dir() else st.st_size
    return size, st.st_mtime_ns


def output_size(path: Path, height: int, width: int, scale: int, opts: RestoreOptions,
                pix_fmt: str | None) -> tuple[int, int]:
    """The output's (height, width) from ``--outscale``/``--size``, refused before any work when
    impossible. With ``--outscale`` an output with subsampled chroma (``pix_fmt``; None for PNG
    frames) gets the nearest even sides."""
    if opts.outscale is not None and opts.size is not None:
        raise InputError("--outscale and --size exclude each other")
    full = (height * scale, width * scale)
    subsampled = pix_fmt is not None and any(k in pix_fmt for k in ("420", "422", "411", "nv12", "p010"))
    if opts.outscale is not None:
        if not 1 <= opts.outscale <= scale:
            raise InputError(f"--outscale {opts.outscale:g}: must be between 1 and the model's scale ({scale})")
        step = 2 if subsampled else 1
        out_h, out_w = (max(step, round(n * opts.outscale / step) * step) for n in (height, width))
        return out_h, out_w
    if opts.size is not None:
        w, h = opts.size
        if h > full[0] or w > full[1]:
            raise InputError(f"--size {w}x{h}: larger than the model's x{scale} output of {path} "
                             f"({full[1]}x{full[0]}); vsrdb does not upscale further by interpolation")
        if subsampled and (w % 2 or h % 2):
            raise InputError(f"--size {w}x{h}: {pix_fmt} video needs even sides (or use --pix-fmt yuv444p)")
        return (h, w)
    return full


def _check_memory(path: Path, source, restorer: Restorer) -> None:
    """Refuse frames whose restoration cannot fit in memory, before any work: the frames held for
    the windows, and the output frame with its blend buffers, come on top of one tile's pass."""
    from ..devices import available_memory

    h, w, s = source.height, source.width, restorer.scale
    before, after = restorer.context
    lr = (before + after + 2) * 3 * h * w * (4 + (2 if source.bits > 8 else 1))
    hr_frame = 3 * h * w * s * s * 4
    need = lr + 3 * hr_frame + restorer.budget()
    have = available_memory(torch.device("cpu"))
    if need > have:
        raise InputError(f"{path}: frames of {w}x{h} need about {need / 1e9:.1f} GB of memory to restore (the x{s} "
                         f"output frame alone is {hr_frame / 1e9:.1f} GB in fp32); {have / 1e9:.1f} GB is available")


def _check_disk(output: Path, kind: str, frames: int, segment: int, source, scale: int) -> None:
    """Refuse a disk that cannot hold the work for sure: PNG outputs keep every frame, videos
    one segment's frames at a time. PNGs of real frames are rarely under a quarter of their raw
    size, so that is the estimate (a lower bound: a disk that passes can still fill)."""
    raw = 3 * source.height * source.width * scale * scale * (2 if source.bits > 8 else 1)
    need = raw * (frames if kind == "frames" else min(frames, segment)) // 4
    free = shutil.disk_usage(output.parent).free
    if need > free:
        raise InputError(f"{output}: needs at least {format_bytes(need)} free for its frames, and its disk has "
                         f"{format_bytes(free)}")


def _input_hash(path: Path, chunk: int = 1 << 20) -> str:
    """A hash of a file's first, middle and last ``chunk`` bytes (of a folder: its frames' names,
    sizes and the same of its first and last frames), read in milliseconds even for hours of video."""
    h = hashlib.sha256()

    def add_file(p: Path) -> None:
        size = p.stat().st_size
        h.update(str(size).encode())
        with open(p, "rb") as f:
            for at in sorted({0, max(0, size // 2 - chunk // 2), max(0, size - chunk)}):
                f.seek(at)
                h.update(f.read(chunk))

    if path.is_dir():
        from ..video import list_frames

        files = list_frames(path)
        for p in files:
            h.update(f"{p.name}:{p.stat().st_size};".encode())
        for p in dict.fromkeys(files[:1] + files[-1:]):  # in order: a set's order changes between runs
            add_file(p)
    else:
        add_file(path)
    return h.hexdigest()[:32]


class Job:
    """A planned job and its work folder."""

    def __init__(self, spec: JobSpec) -> None:
        self.spec = spec
        self.input = Path(spec.input)
        self.output = Path(spec.output)
        self.work = work_folder(self.output)
        self.format = None if spec.format is None else _format_from(spec.format)

    # --- planning -----------------------------------------------------------------------
    @classmethod
    def plan(cls, input_path: Path, output: Path, restorer: Restorer, fingerprint: str, opts: RestoreOptions, *,
             overwrite: bool, resume: bool, restart: bool, note: Callable[[str], None] = print) -> "Job":
        """Check the input and output, choose the format and ``restorer``'s tiles, and create
        (or, resuming, check) the work folder. Raises InputError naming the file."""
        check_not_input(Path(output), [input_path])  # first: that the input is safe says the most
        output, kind = check_output_path(output, overwrite=overwrite)
        with open_frames(input_path, fps=opts.fps) as source:
            source.read_frame_metadata()
            fmt = None
            if kind == "video":
                fmt = choose_format(output, source_bits=source.bits, colour=source.colour, codec=opts.codec,
                                    pix_fmt=opts.pix_fmt, lossless=opts.lossless, crf=opts.crf, hdr=source.hdr)
            elif opts.codec or opts.pix_fmt:
                raise InputError(f"{output}: --codec/--pix-fmt apply to video outputs; this writes PNG frames")
            stated = source.num_frames
            planned = source.count_frames()
            if planned == 0:
                raise InputError(f"{input_path}: the video stream has no frames")
            # Without a stated count, the stated duration: the streams' packets must reach (nearly) its end.
            # Timestamps, not a count at the average rate, so variable frame rates pass.
            said = None if stated else source.stated_seconds()
            end = source.packets_end
            if said and end is not None and end < 0.9 * said - 0.1:
                raise InputError(f"{input_path}: its streams end at {end:.2f} s but the file states a duration of "
                                 f"{said:.2f} s: the file is damaged or cut short")
            min_size = restorer.model.min_size
            if min(source.height, source.width) < min_size:
                raise InputError(f"{input_path}: frames are {source.width}x{source.height}; the model needs at "
                                 f"least {min_size}x{min_size}")
            out_size = output_size(input_path, source.height, source.width, restorer.scale, opts,
                                   fmt.pix_fmt if fmt is not None else None)
            plan = restorer.make_plan(source.height, source.width)
            _check_memory(input_path, source, restorer)
            _check_disk(output, kind, planned, opts.segment, source, restorer.scale)
            if getattr(source, "interlaced", False):
                note(f"{input_path.name}: interlaced video; its fields are restored as progressive frames "
                     "(deinterlace it first for better results, e.g. ffmpeg -vf bwdif)")
            if fmt is not None and (source.colour.hdr or source.hdr):
                what = f"HDR ({source.colour.hdr or 'metadata'})"
                if source.hdr is None:
                    note(f"{input_path.name}: {what}: transfer and primaries kept as tags (the input has no "
                         "mastering-display or light-level metadata)")
                elif source.hdr.encoder_params(fmt.encoder) is None:
                    note(f"{input_path.name}: {what}: tags kept, but {fmt.encoder} cannot carry the input's "
                         f"{source.hdr.describe()}; use --codec h265 or av1 to keep it")
                else:
                    note(f"{input_path.name}: {what}: tags and {source.hdr.describe()} kept ({fmt.encoder})")
            spec = JobSpec(
                input=str(input_path), output=str(output), kind=kind, frames=int(planned),
                stated_frames=int(stated) if stated else None, segment=int(opts.segment),
                size=(source.height, source.width), tiles=(plan.size_y, plan.size_x, plan.overlap),
                format=None if fmt is None else fmt.as_dict(), bits=fmt.bits if fmt else source.bits,
                fps=str(source.fps), time_base=str(source.time_base), model=fingerprint,
                dtype=str(restorer.dtype).removeprefix("torch."), input_id=_input_id(input_path), audio=opts.audio,
                rotation=source.rotation, input_hash=_input_hash(input_path),
                out_size=None if out_size == (source.height * restorer.scale, source.width * restorer.scale)
                else out_size, deflicker=restorer.deflicker)
        return cls(cls._open_work(spec, output, resume=resume, restart=restart))

    @staticmethod
    def _open_work(spec: "JobSpec", output: Path, *, resume: bool, restart: bool) -> "JobSpec":
        """Create the work folder (or check the one there) and lock it; returns the spec to use."""
        work = work_folder(output)
        try:
            if work.exists():
                hold_work_folder(work, output)
                if restart:
                    shutil.rmtree(work)
                    release_work_folder(work)
                elif not resume:
                    done = Job._progress_of(work)
                    raise InputError(f"{output}: unfinished work from an earlier run is in {work} ({done}); pass "
                                     f"--resume to continue it, or --restart to discard it")
                else:
                    try:
                        old = JobSpec.from_json((work / "job.json").read_text())
                    except (OSError, ValueError, TypeError, KeyError) as e:
                        raise InputError(f"{work / 'job.json'}: unreadable ({e}); pass --restart to discard "
                                         "the unfinished work") from None
                    mine, theirs = asdict(spec), asdict(old)
                    differ = [k for k, v in mine.items() if theirs.get(k) != v and k != "tiles"
                              and not (k == "input_hash" and not theirs.get(k))]  # older records had none
                    if differ:
                        what = ", ".join("input's contents" if k == "input_hash" else k for k in differ)
                        raise InputError(f"{output}: the unfinished work in {work} was made with a different "
                                         f"{what}; pass --restart to discard it and start again")
                    return old  # the tiles chosen then, whatever memory is free now
            try:
                work.mkdir()
            except FileExistsError:  # another run made it just now
                raise InputError(f"{output}: another vsrdb run started on this output just now; wait for it to "
                                 "finish or stop it first") from None
            hold_work_folder(work, output)
            (work / "frames").mkdir()
            write_atomically(work / "job.json", spec.to_json().encode(), durable=True)
            return spec
        except BaseException:
            release_work_folder(work)
            raise

    @staticmethod
    def _progress_of(work: Path) -> str:
        try:
            spec = JobSpec.from_json((work / "job.json").read_text())
        except (OSError, ValueError, TypeError, KeyError):
            return "its record is unreadable"
        job = Job(spec)
        done = sum(job.segment_frames(k) for k in range(spec.segments) if job.done(k))
        cached = len(list((work / "frames").glob("*.png"))) if spec.kind == "video" else 0
        return f"{done + cached} of {spec.frames} frames done"

    # --- state of the work folder ------------------------------------------------------
    def marker(self, k: int) -> Path:
        return self.work / f"seg_{k:06d}.json"

    def done(self, k: int) -> bool:
        return self.marker(k).is_file()

    def segment_frames(self, k: int) -> int:
        try:
            return int(json.loads(self.marker(k).read_text())["frames"])
        except (OSError, ValueError, KeyError):
            return 0

    def pending(self) -> list[int]:
        return [k for k in range(self.spec.segments) if not self.done(k)]

    def frame_path(self, i: int) -> Path:
        return self.work / "frames" / f"{i:08d}.png"

    # --- restoring units ---------------------------------------------------------------
    def run(self, restorer: Restorer, segments: list[int], *, on_frame: Callable[[], None] = lambda: None) -> int:
        """Restore the given segments (in order) in one decode pass over the input; returns the
        number of frames the model restored (not those an earlier, killed run had kept)."""
        spec = self.spec
        restorer.use_plan(TilePlan.grid(*spec.size, *spec.tiles))
        before, after = restorer.context
        recurrent = restorer.recurrent
        with open_frames(self.input, fps=Fraction(spec.fps)) as source:
            if (source.height, source.width) != tuple(spec.size):
                raise InputError(f"{self.input}: frames are now {source.width}x{source.height}; the job was "
                                 f"planned for {spec.size[1]}x{spec.size[0]}")
            tap = _Tap(source, keep=before + after + 2)
            restored = 0
            for k in sorted(segments):
                if self.done(k):
                    continue
                try:
                    restored += self._run_segment(k, restorer, tap, before, recurrent, on_frame)
                except InputError as e:  # the Restorer's own errors do not know the file
                    if str(e).startswith(str(self.input)):
                        raise
                    raise InputError(f"{self.input}: {e}") from None
        return restored

    def _run_segment(self, k: int, restorer: Restorer, tap: "_Tap", before: int, recurrent: bool,
                     on_frame: Callable[[], None]) -> int:
        spec = self.spec
        start, stop = spec.bounds(k)
        # Frames restored before a kill are reused (window models: each frame depends only on its window).
        cached = 0
        if not recurrent:
            while (stop is None or start + cached < stop) and self.frame_path(start + cached).is_file():
                cached += 1
        encoder = None
        if self.format is not None:  # a video output (PNG frames need no encoder)
            encoder = VideoEncoder(self.work / f"seg_{k:06d}.mkv", self.format, Fraction(spec.fps))
        pts: list[int] = []
        try:
            resume_at = start + cached
            got = 0
            # Kept frames: their timestamps come from the decoder, their pixels from the work folder.
            for index, pts_i in itertools.islice(tap.frames_from(start), cached):
                pts.append(pts_i)
                if encoder is not None:
                    encoder.write(read_image(self.frame_path(index)))
                got += 1
                on_frame()
            state = None
            if recurrent and k > 0:
                state_file = self.work / f"state_{k - 1:06d}.pt"
                state = torch.load(state_file, map_location=restorer.device, weights_only=True)
            if stop is None or resume_at < stop:
                context = max(0, resume_at - before)  # the first window's (or recurrence's) earlier frames
                outputs = restorer.run(tap.tensors_from(context), first=context, start=resume_at, stop=stop,
                                       state=state)
                for out in outputs:
                    i = start + got
                    if not torch.isfinite(out).all():
                        raise InputError(f"{self.input}: frame {i}: the model produced NaN or Inf values "
                                         "(damaged weights?)")
                    if spec.out_size is not None:
                        out = resample(out, spec.out_size)
                    arr = to_array(out, bits=spec.bits)
                    _write_png(self.frame_path(i), arr, compression=1 if spec.kind == "video" else 3)
                    pts.append(tap.pts_of(i))
                    if encoder is not None:
                        encoder.write(arr)
                    got += 1
                    on_frame()
            if stop is not None and got < stop - start:
                raise InputError(_short_message(self.input, start + got, spec))
            if recurrent and restorer.state is not None:
                torch.save(restorer.state.cpu(), self.work / f"state_{k:06d}.pt")
            if encoder is not None:
                encoder.close()
                encoder = None
            write_atomically(self.marker(k), json.dumps({"frames": got, "pts": pts}).encode(), durable=True)
            if recurrent and k > 0:
                # Only the next segment's start is ever read again: kept for every segment, these
                # full-size fp32 frames would pile up (100 MB each at 4K).
                (self.work / f"state_{k - 1:06d}.pt").unlink(missing_ok=True)
            if spec.kind == "video":
                for j in range(start, start + got):
                    self.frame_path(j).unlink(missing_ok=True)
        finally:
            if encoder is not None:
                encoder.abort()
        return got - cached

    # --- the end -------------------------------------------------------------------------
    def finish(self, *, note: Callable[[str], None] = print) -> int:
        """Join the finished segments into the output, check the frame count, move it into
        place and remove the work folder. Returns the number of frames written."""
        spec = self.spec
        missing = self.pending()
        if missing:
            raise InputError(f"{self.input}: segments {missing[:5]} were not restored (see the errors above); "
                             "rerun with --resume")
        pts: list[int] = []
        for k in range(spec.segments):
            pts += json.loads(self.marker(k).read_text())["pts"]
        total = len(pts)
        if spec.stated_frames and total != spec.stated_frames:
            raise InputError(_short_message(self.input, total, spec))
        if not spec.stated_frames and total < spec.frames:  # fewer frames decoded than packets counted
            raise InputError(_short_message(self.input, total, spec))
        if self.format is None:  # PNG frames
            files = sorted((self.work / "frames").glob("*.png"))
            if len(files) != total:
                raise InputError(f"{self.output}: {len(files)} frames written, {total} restored")
            mark_output_folder(self.work / "frames", "vsrdb restore")
            replace_atomically(self.work / "frames", self.output)
        else:
            muxer = self.format.muxer
            tmp = self.work / f"joined{self.output.suffix}"
            segments = [self.work / f"seg_{k:06d}.mkv" for k in range(spec.segments)]
            # Notes name the output the user asked for, not the temporary file being joined.
            try:
                counts = join_segments(tmp, muxer, segments, pts, Fraction(spec.time_base),
                                       frame_rate=Fraction(spec.fps),
                                       source=self.input if self.input.is_file() else None, audio=spec.audio,
                                       note=lambda text: note(text.replace(tmp.name, self.output.name)))
            except BaseException:
                tmp.unlink(missing_ok=True)  # never leave a truncated join behind
                raise
            if counts["video"] != total:
                raise InputError(f"{self.output}: {counts['video']} frames written, {total} restored")
            carries_rotation = muxer in ("mp4", "mov")
            if spec.rotation and not (carries_rotation and set_display_rotation(tmp, spec.rotation)):
                note(f"{self.output.name}: the input is shown rotated by {spec.rotation} degrees; "
                     f"{self.output.suffix} output cannot carry that here, so it plays unrotated (use .mp4 or .mov)")
            replace_atomically(tmp, self.output)
        shutil.rmtree(self.work, ignore_errors=True)
        release_work_folder(self.work)
        return total

    def discard(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        release_work_folder(self.work)


# Work folders this process holds: an advisory lock (files.hold_folder), taken when
# a job is planned and kept to its end, so a second run on the same output is refused before
# it touches anything. The kernel drops the lock when the process dies, however it dies.
def hold_work_folder(work: Path, output: Path) -> None:
    """Lock ``work`` for this process; InputError if another process holds it."""
    hold_folder(work, busy=f"{output}: another vsrdb run is working on this output (it holds {work}); wait for "
                           "it to finish or stop it first")


def release_work_folder(work: Path) -> None:
    release_folder(work)


def work_folder(output: Path) -> Path:
    return output.with_name(output.name + WORK_SUFFIX)


def _short_message(path: Path, got: int, spec: JobSpec) -> str:
    expected = spec.stated_frames or spec.frames
    return (f"{path}: decoding stopped at frame {got} of the {expected} the "
            f"{'container states' if spec.stated_frames else 'stream holds'}: the file is damaged or cut short")


def _format_from(d: dict) -> OutputFormat:
    from ..video.colour import ColourSpec

    d = dict(d)
    d["colour"] = ColourSpec(**d["colour"])
    return OutputFormat(**d)


def _write_png(path: Path, arr: np.ndarray, *, compression: int) -> None:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(arr[:, :, ::-1]), [cv2.IMWRITE_PNG_COMPRESSION, compression])
    if not ok:
        raise OSError(f"{path}: could not encode the frame")
    write_atomically(path, buf.tobytes(), durable=True)


class _Tap:
    """One decode pass shared by the segments a process restores from a file, in order; keeps
    the last few frames so that a segment's context before it need not be decoded again."""

    def __init__(self, source, keep: int) -> None:
        self.it = source.iter_timed()
        self.next_index = 0
        self.recent: deque = deque(maxlen=keep)  # (index, frame, pts)

    def _pull(self):
        item = next(self.it, None)
        if item is None:
            return None
        entry = (self.next_index, *item)
        self.recent.append(entry)
        self.next_index += 1
        return entry

    def pts_of(self, index: int) -> int:
        """The timestamp of a recently decoded frame (a restored frame's window reached it)."""
        for i, _, pts in reversed(self.recent):
            if i == index:
                return pts
        raise RuntimeError(f"frame {index} is no longer held")

    def _entries_from(self, a: int):
        if a < self.next_index and (not self.recent or self.recent[0][0] > a):
            raise RuntimeError(f"frame {a} was decoded and dropped already")
        for entry in list(self.recent):
            if entry[0] >= a:
                yield entry
        while True:
            entry = self._pull()
            if entry is None:
                return
            if entry[0] >= a:
                yield entry

    def frames_from(self, a: int) -> Iterator[tuple[int, int]]:
        """(index, pts) of frames a, a + 1, ... (pixels stay in the tap)."""
        for i, _, pts in self._entries_from(a):
            yield i, pts

    def tensors_from(self, a: int) -> Iterator[torch.Tensor]:
        for _, arr, _ in self._entries_from(a):
            yield to_tensor(arr)
