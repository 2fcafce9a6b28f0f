"""Restoring one stream straight through, for pipes: frames in, restored frames out, in order.

    ffmpeg -i in.mkv -f yuv4mpegpipe - | vsrdb restore - -o - | x265 --y4m - -o out.hevc

A pipe can be read once and has no name to come back to, so there is no work folder and no
resume; the frames pass through the Restorer one at a time (memory does not grow with the
length) and each is written as soon as it is restored. The input is a Y4M stream (standard
input) or a file; the output is a Y4M stream or a streamable Matroska on standard output, or
a file (a video or a PNG folder, moved into place when complete).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Protocol

import numpy as np
import torch

from ..data.resize import resample
from ..errors import InputError
from ..video import (
    OUTPUT_CONTAINERS,
    FrameSource,
    PNGFolderWriter,
    VideoEncoder,
    check_output_path,
    choose_format,
    to_array,
    to_tensor,
)
from ..video.y4m import Y4MHeader, Y4MSource, Y4MWriter
from .job import RestoreOptions, output_size
from .restorer import Restorer

__all__ = ["StreamSink", "open_sink", "output_shape", "restore_stream", "stdin_source"]


class StreamSink(Protocol):
    def write(self, frame: np.ndarray) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


@dataclass
class _Y4MOut:
    writer: Y4MWriter

    def write(self, frame: np.ndarray) -> None:
        self.writer.write(frame)

    def close(self) -> None:
        self.writer.close()

    def abort(self) -> None:
        pass  # what was written is in the reader's hands


def _source_header(source: FrameSource) -> Y4MHeader:
    """A Y4M header for a source that is not a Y4M stream: 4:2:0 at its depth, its rate and range."""
    if isinstance(source, Y4MSource):
        return source.header
    colour = source.colour.for_yuv()
    return Y4MHeader(source.width, source.height, source.fps, "p", "0:0", "420p10" if source.bits > 8 else "420jpeg",
                     (f"COLORRANGE={'FULL' if colour.range == 2 else 'LIMITED'}",))


def open_sink(output: str, source: FrameSource, opts: RestoreOptions, *, size: tuple[int, int], overwrite: bool,
              container: str, stdout: BinaryIO) -> StreamSink:
    """Where restored frames go: ``-`` (standard output, as ``container`` 'y4m' or 'mkv'), a
    video file, or a PNG folder. ``size`` is the output's (height, width)."""
    height, width = size
    if output == "-":
        if container == "y4m":
            header = _source_header(source)
            colour = source.colour if isinstance(source, Y4MSource) else source.colour.for_yuv()
            return _Y4MOut(Y4MWriter(stdout, header, colour, width=width, height=height))
        fmt = choose_format(Path("-.mkv"), source_bits=source.bits, colour=source.colour, codec=opts.codec,
                            pix_fmt=opts.pix_fmt, lossless=opts.lossless, crf=opts.crf)
        return VideoEncoder.to_stream(stdout, fmt, source.fps, muxer="matroska")
    path, kind = check_output_path(output, overwrite=overwrite)
    if kind == "frames":
        return PNGFolderWriter(path, overwrite=overwrite)
    fmt = choose_format(path, source_bits=source.bits, colour=source.colour, codec=opts.codec, pix_fmt=opts.pix_fmt,
                        lossless=opts.lossless, crf=opts.crf)
    return VideoEncoder(path, fmt, source.fps, muxer=OUTPUT_CONTAINERS[path.suffix.lower()])


def output_shape(source: FrameSource, restorer: Restorer, opts: RestoreOptions, output: str,
                 container: str) -> tuple[int, int]:
    """(height, width) of the restored frames, from ``--outscale``/``--size``: even sides where
    the output's chroma is subsampled (Y4M in the source's layout, 4:2:0 video, not PNG)."""
    if output == "-" and container == "y4m":
        pix_fmt: str | None = _source_header(source).pix_fmt
    elif output != "-" and not Path(output).suffix:
        pix_fmt = None  # PNG frames
    else:
        pix_fmt = "yuv420p"
    return output_size(Path(str(source.path)), source.height, source.width, restorer.scale, opts, pix_fmt)


def restore_stream(source: FrameSource, sink: StreamSink, restorer: Restorer, *, size: tuple[int, int],
                   on_frame: Callable[[], None] = lambda: None) -> int:
    """Restore every frame of ``source`` into ``sink`` in order; returns the frame count.

    The sink is closed when every frame is written, and aborted (a file output removed) when
    anything fails, a Ctrl-C included.
    """
    full = (source.height * restorer.scale, source.width * restorer.scale)
    bits = 16 if source.bits > 8 else 8
    count = 0
    try:
        for out in restorer.run(to_tensor(arr) for arr in source):
            if not torch.isfinite(out).all():
                raise InputError(f"{source.path}: frame {count}: the model produced NaN or Inf values (damaged weights?)")
            if size != full:
                out = resample(out, size)
            sink.write(to_array(out, bits=bits))
            count += 1
            on_frame()
    except BaseException:
        sink.abort()
        raise
    if count == 0:
        sink.abort()
        raise InputError(f"{source.path}: has no frames")
    sink.close()
    return count


def stdin_source() -> Y4MSource:
    return Y4MSource(sys.stdin.buffer, "standard input")
