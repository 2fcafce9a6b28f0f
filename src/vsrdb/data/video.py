"""Reading and writing videos and frame folders, as a stream of frames.

Frames travel as numpy arrays ``[H, W, C]`` (C = 1, 3 or 4; uint8 or uint16) in RGB order;
``to_tensor`` turns one into a float ``[3, H, W]`` in [0, 1]. Writers put their output
under a temporary name and move it into place on ``close()``; ``abort()`` (or an exception
inside a ``with`` block, Ctrl-C included) removes the temporary output, so a half-written
result never sits under the final name.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..files import replace_atomically
from .colour import ColourSpec, HdrMetadata, describe

__all__ = ["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "OUTPUT_CONTAINERS", "InputError", "FrameSource", "open_frames",
           "to_tensor", "to_array", "FrameWriter", "open_writer", "natural_key", "check_output_path", "list_frames",
           "read_image", "replace_atomically", "encoder_frame", "check_writable_folder"]

# Inputs: what is looked for in folders of videos (any file FFmpeg decodes can be named directly).
VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".y4m", ".gif", ".mts", ".m2ts", ".3gp"}
# Outputs: the containers written (each tested); FFmpeg's muxer name for each.
OUTPUT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                     ".ts": "mpegts"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
DEFAULT_FPS = Fraction(30)
SRGB = ColourSpec(0, 2, 1, 13)  # RGB images: sRGB


def natural_key(name: str) -> list:
    """Sort key where 'frame10' follows 'frame9'."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


class FrameSource:
    """An iterable of RGB frames with the stream's metadata.

    ``iter_timed()`` yields ``(frame, pts)`` with the presentation timestamp in
    ``time_base`` units (strictly increasing); plain iteration yields the frames alone.
    """

    path: Path
    fps: Fraction
    num_frames: int | None  # None when the container does not say
    width: int
    height: int
    time_base: Fraction
    bits: int = 8  # 8, or 16 for sources with more than 8 bits per sample
    colour: ColourSpec = SRGB
    rotation: int = 0  # display rotation in degrees (PyAV's convention); see read_frame_metadata
    hdr: HdrMetadata | None = None  # HDR10 mastering/light-level metadata; see read_frame_metadata
    interlaced: bool = False  # the first frame is interlaced (restored as progressive, with a note)

    def iter_timed(self) -> Iterator[tuple[np.ndarray, int]]:
        raise NotImplementedError

    def count_frames(self) -> int:
        """The number of frames: as stated, or counted without decoding."""
        return self.num_frames or 0

    def stated_seconds(self) -> float | None:
        """The duration the file states (None: none stated, or not a video file)."""
        return None

    packets_end: float | None = None  # seconds: where the last packet of any stream ends (count_frames)

    def read_frame_metadata(self) -> None:
        """Fill in what only a decoded frame tells (``rotation``, ``hdr``, ``interlaced``)."""

    def __iter__(self) -> Iterator[np.ndarray]:
        for frame, _ in self.iter_timed():
            yield frame

    def close(self) -> None:
        pass

    def __enter__(self) -> "FrameSource":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def list_frames(folder: Path) -> list[Path]:
    """The image files of a folder, sorted naturally ('frame10' after 'frame9')."""
    return sorted((p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()),
                  key=lambda p: natural_key(p.name))


def read_image(path: Path) -> np.ndarray:
    """An image file as ``[H, W, C]`` uint8/uint16 in RGB(A) order; InputError naming the file."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if path.exists() else None
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data is not None and data.size else None
    if img is None:
        raise InputError(f"{path}: cannot read as an image (missing, empty or corrupt)")
    if img.dtype not in (np.uint8, np.uint16):
        if img.dtype == np.float32 and img.size:
            img = (np.clip(img, 0, 1) * 65535 + 0.5).astype(np.uint16)
        else:
            raise InputError(f"{path}: unsupported sample type {img.dtype} (8- or 16-bit images only)")
    if img.ndim == 2:
        return img[:, :, None]
    if img.shape[2] == 3:
        return img[:, :, ::-1]  # OpenCV decodes BGR
    if img.shape[2] == 4:
        return img[:, :, [2, 1, 0, 3]]
    raise InputError(f"{path}: {img.shape[2]} channels; expected grey, RGB or RGBA")


class FolderSource(FrameSource):
    def __init__(self, folder: Path, fps: Fraction | None = None) -> None:
        self.path = folder
        self.files = list_frames(folder)
        if not self.files:
            raise InputError(f"{folder}: no frames in it (looked for {', '.join(sorted(IMAGE_EXTENSIONS))})")
        first = read_image(self.files[0])
        self.height, self.width = first.shape[:2]
        self.bits = 16 if first.dtype == np.uint16 else 8
        self.fps = Fraction(fps) if fps else DEFAULT_FPS
        self.time_base = 1 / self.fps
        self.num_frames = len(self.files)

    def iter_timed(self) -> Iterator[tuple[np.ndarray, int]]:
        for i, path in enumerate(self.files):
            img = read_image(path)
            if img.shape[:2] != (self.height, self.width):
                raise InputError(f"{path}: frame is {img.shape[1]}x{img.shape[0]}, the first frame is "
                                 f"{self.width}x{self.height}; all frames must have one size")
            yield img, i


class VideoSource(FrameSource):
    """The first video stream of a file, decoded with its own colour matrix and range."""

    def __init__(self, path: Path) -> None:
        import av

        self.path = path
        try:
            self.container = av.open(str(path))
        except (av.error.FFmpegError, OSError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: cannot open as a video ({_av_reason(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{path}: has no video stream")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        ctx = self.stream.codec_context
        self.width, self.height = ctx.width, ctx.height
        if not self.width or not self.height:
            self.container.close()
            raise InputError(f"{path}: the video stream has no frame size (damaged header?)")
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = Fraction(rate) if rate else DEFAULT_FPS
        self.time_base = Fraction(self.stream.time_base) if self.stream.time_base else 1 / self.fps
        self.num_frames = self.stream.frames or None
        fmt = self.stream.format
        self.pix_fmt = fmt.name if fmt is not None else ""
        deep = fmt is not None and any(c.bits > 8 for c in fmt.components)
        self.bits = 16 if deep else 8
        self.colour = describe(matrix=int(ctx.colorspace or 0) if fmt is not None and not _is_rgb(fmt) else 0,
                               range_=int(ctx.color_range or 0), primaries=int(ctx.color_primaries or 0),
                               transfer=int(ctx.color_trc or 0), height=self.height, pix_fmt=self.pix_fmt)

    def iter_timed(self) -> Iterator[tuple[np.ndarray, int]]:
        import av

        pix = "rgb48le" if self.bits == 16 else "rgb24"
        rgb = self.colour.matrix == 0
        step = max(1, round(1 / (self.fps * self.time_base))) if self.fps and self.time_base else 1
        last = None
        count = 0
        try:
            for frame in self.container.decode(self.stream):
                if rgb:
                    arr = frame.to_ndarray(format=pix)
                else:
                    arr = frame.to_ndarray(format=pix, src_colorspace=self.colour.sws_matrix,
                                           src_color_range=self.colour.sws_range, dst_color_range="JPEG")
                pts = frame.pts
                if pts is None:
                    pts = 0 if last is None else last + step
                elif last is not None and pts <= last:  # damaged or odd timestamps: keep them increasing
                    pts = last + 1
                last = pts
                count += 1
                yield arr, int(pts)
        except av.error.FFmpegError as e:
            raise InputError(f"{self.path}: frame {count}: corrupt or unreadable video data "
                             f"({_av_reason(e)})") from None

    def count_frames(self) -> int:
        """Frames as the container states them, else counted by the stream's packets (no decoding)."""
        import av

        if self.num_frames:
            return self.num_frames
        with av.open(str(self.path)) as c:
            s = c.streams.video[0]
            count, end = 0, None
            try:
                # Every stream's packets: the stated duration is the longest stream's (sound may
                # outlast the picture), and a cut file ends all of them early.
                for p in c.demux():
                    if not p.size:
                        continue
                    if p.stream.index == s.index:
                        count += 1
                    if p.pts is not None and p.time_base:
                        t = float((p.pts + (p.duration or 0)) * p.time_base)
                        end = t if end is None else max(end, t)
            except av.error.FFmpegError as e:
                raise InputError(f"{self.path}: corrupt or unreadable video data ({_av_reason(e)})") from None
            if end is not None and c.start_time is not None:
                end -= c.start_time / 1_000_000  # AV_TIME_BASE
            self.packets_end = end
            return count

    def stated_seconds(self) -> float | None:
        """The duration the file states for all its streams, or None: for containers that state
        no frame count (Matroska, WebM, MPEG-TS), a cut file still states its duration."""
        return self.container.duration / 1_000_000 if self.container.duration else None  # AV_TIME_BASE

    def read_frame_metadata(self) -> None:
        import av

        # A second opening, so that the main decode starts from the first frame untouched.
        with av.open(str(self.path)) as c:
            try:
                frame = next(c.decode(c.streams.video[0]), None)
            except av.error.FFmpegError:
                frame = None  # iter_timed reports the damage with the frame number
        if frame is not None:
            self.rotation = int(getattr(frame, "rotation", 0) or 0)
            self.hdr = HdrMetadata.from_frame(frame)
            self.interlaced = bool(getattr(frame, "interlaced_frame", False))

    def close(self) -> None:
        self.container.close()


def encoder_frame(frame: np.ndarray, pix_fmt: str, colour: ColourSpec, *, rgb: bool = False):
    """An RGB array ``[H, W, 3]`` (uint8, or uint16 for 16-bit) as an ``av.VideoFrame`` in
    ``pix_fmt``: converted with ``colour``'s matrix and range, or kept RGB (``rgb``)."""
    import av

    src = "rgb48le" if frame.dtype == np.uint16 else "rgb24"
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:, :, :3]), format=src)
    if rgb:
        return vf.reformat(format=pix_fmt)
    return vf.reformat(format=pix_fmt, dst_colorspace=colour.sws_matrix, dst_color_range=colour.sws_range)


def _is_rgb(fmt) -> bool:
    return fmt.name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr"))


def _av_reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.splitlines()[0] if text else type(e).__name__


def open_frames(path: str | os.PathLike, *, fps: Fraction | None = None) -> FrameSource:
    """A video file (anything FFmpeg decodes) or a folder of png/jpg/tif frames, sorted naturally
    (``fps``: the folder's frame rate, default 30)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such file or folder")
    if path.is_dir():
        return FolderSource(path, fps)
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    return VideoSource(path)


def to_tensor(frame: np.ndarray) -> Tensor:
    """``[H, W, C]`` uint8/uint16 RGB(A)/grey -> float32 ``[3, H, W]`` in [0, 1].

    Grey is repeated to three channels; alpha is dropped (the models restore colour only).
    """
    scale = 65535.0 if frame.dtype == np.uint16 else 255.0
    t = torch.from_numpy(np.ascontiguousarray(frame)).permute(2, 0, 1)
    if t.shape[0] in (1, 2):  # grey or grey + alpha
        t = t[:1].expand(3, -1, -1)
    else:
        t = t[:3]
    return t.float().div_(scale)


def to_array(image: Tensor, *, bits: int = 8) -> np.ndarray:
    """float ``[3, H, W]`` -> ``[H, W, 3]`` uint8 (or uint16 with bits=16), clipped and rounded."""
    peak = 65535.0 if bits == 16 else 255.0
    arr = image.detach().float().clamp(0, 1).mul(peak).round_().permute(1, 2, 0).cpu().numpy()
    return arr.astype(np.uint16 if bits == 16 else np.uint8)


def check_output_path(path: str | os.PathLike, *, overwrite: bool) -> tuple[Path, str]:
    """Validate an output path before any work; returns (path, kind) with kind 'video' or 'frames'."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in OUTPUT_CONTAINERS:
        raise InputError(f"{path}: unknown output extension {suffix!r} (use one of "
                         f"{', '.join(sorted(OUTPUT_CONTAINERS))}, or a name without extension for a PNG folder)")
    kind = "video" if suffix else "frames"
    if not path.parent.exists() or not path.parent.is_dir():
        raise InputError(f"{path}: output folder {path.parent} does not exist")
    check_writable_folder(path.parent, for_name=path.name)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise InputError(f"{path}: exists; pass --overwrite to replace it")
        if kind == "video" and path.is_dir():
            raise InputError(f"{path}: is a folder; will not replace it with a video file")
    return path, kind


# Names vsrdb makes beside an output are at most this much longer than it (work folders
# "NAME.vsrdb-work", temporary ".NAME.partial-PID").
_NAME_EXTRA = 24


def check_writable_folder(folder: Path, *, for_name: str | None = None) -> None:
    """InputError naming ``folder`` unless a file can be created in it (read-only file systems,
    permissions, a full disk) and, with ``for_name``, unless that name and vsrdb's work names
    beside it fit the file system's limit on name length."""
    folder = Path(folder)
    if for_name is not None:
        try:
            limit = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            limit = 255
        length = len(for_name.encode())
        if length + _NAME_EXTRA > limit:
            raise InputError(f"{folder / for_name}: the name is {length} bytes; with the {_NAME_EXTRA} more that vsrdb's "
                             f"work files beside it need, that passes this file system's limit of {limit}: shorten it")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vsrdb-write-test-"):
            pass
    except OSError as e:
        raise InputError(f"{folder}: cannot write there ({e.strerror or e})") from None


class FrameWriter:
    """Writes frames to a temporary name; ``close()`` moves the result into place."""

    def __init__(self, path: Path, *, overwrite: bool) -> None:
        self.path = path
        self.overwrite = overwrite
        self.count = 0
        self._done = False

    def write(self, frame: np.ndarray) -> None:
        raise NotImplementedError

    def _finish(self) -> None:
        raise NotImplementedError

    def _discard(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self._done:
            self._done = True
            self._finish()

    def abort(self) -> None:
        if not self._done:
            self._done = True
            self._discard()

    def __enter__(self) -> "FrameWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


class PNGFolderWriter(FrameWriter):
    def __init__(self, path: Path, *, overwrite: bool) -> None:
        super().__init__(path, overwrite=overwrite)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.partial-", dir=path.parent))
        umask = os.umask(0)
        os.umask(umask)
        self.tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the result is an ordinary folder

    def write(self, frame: np.ndarray) -> None:
        import cv2

        rgb = frame[:, :, ::-1] if frame.shape[2] == 3 else frame
        ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb))
        if not ok:
            raise OSError(f"{self.path}: could not encode frame {self.count}")
        buf.tofile(str(self.tmp / f"{self.count:08d}.png"))
        self.count += 1

    def _finish(self) -> None:
        replace_atomically(self.tmp, self.path)

    def _discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class VideoWriter(FrameWriter):
    """H.264 (yuv420p, CRF, BT.709 matrix and tags) by default; ``lossless``: H.264 RGB at qp 0
    (bit-exact 8-bit RGB). For previews and reports; ``vsrdb restore`` writes through
    ``vsrdb.restore.job``, which keeps the source's colour, depth, timing and sound. Both
    encode with ``vsrdb.data.encode.VideoEncoder``."""

    def __init__(self, path: Path, *, fps: Fraction, overwrite: bool, lossless: bool = False, crf: int = 18) -> None:
        from .encode import OutputFormat, VideoEncoder  # encode builds on this module

        super().__init__(path, overwrite=overwrite)
        muxer = OUTPUT_CONTAINERS.get(path.suffix.lower()) or "matroska"
        if lossless:
            fmt = OutputFormat(muxer, "libx264rgb", "rgb24", {"qp": "0", "preset": "medium"}, rgb=True,
                               colour=SRGB.for_yuv())
        else:
            fmt = OutputFormat(muxer, "libx264", "yuv420p", {"crf": str(crf), "preset": "medium"},
                               colour=SRGB.for_yuv())
        self.encoder = VideoEncoder(path, fmt, fps, muxer=muxer)

    def write(self, frame: np.ndarray) -> None:
        if frame.dtype != np.uint8:
            frame = (frame.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
        self.encoder.write(frame)
        self.count += 1

    def _finish(self) -> None:
        self.encoder.close()

    def _discard(self) -> None:
        self.encoder.abort()


def open_writer(path: str | os.PathLike, *, fps: Fraction, overwrite: bool = False, lossless: bool = False,
                crf: int = 18) -> FrameWriter:
    """A video file for a video extension, else a folder of PNG frames. Checks the path first."""
    path, kind = check_output_path(path, overwrite=overwrite)
    if kind == "video":
        return VideoWriter(path, fps=fps, overwrite=overwrite, lossless=lossless, crf=crf)
    return PNGFolderWriter(path, overwrite=overwrite)
