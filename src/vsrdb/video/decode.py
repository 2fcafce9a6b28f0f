"""Decoding: a video file (anything FFmpeg decodes) or a folder of images as a stream of RGB
frames with the stream's metadata (size, rate, timestamps, depth, colour, rotation, HDR).
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import InputError
from .colour import HdrMetadata, describe
from .containers import DEFAULT_FPS, IMAGE_EXTENSIONS, list_frames, not_a_file
from .frames import FrameSource, read_image

__all__ = ["FolderSource", "VideoSource", "open_frames"]

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


def _is_rgb(fmt) -> bool:
    return fmt.name.startswith(("rgb", "bgr", "gbr", "argb", "abgr", "0rgb", "0bgr"))


def _av_reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.splitlines()[0] if text else type(e).__name__


def open_frames(path: str | os.PathLike, *, fps: Fraction | None = None) -> FrameSource:
    """A video file (anything FFmpeg decodes) or a folder of png/jpg/tif frames, sorted naturally
    (``fps``: the folder's frame rate, default 30)."""
    path = Path(path)
    if path.is_dir():
        return FolderSource(path, fps)
    problem = not_a_file(path)
    if problem:
        raise InputError(f"{path}: {'no such file or folder' if problem == 'does not exist' else problem}")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: empty file")
    return VideoSource(path)
