"""YUV4MPEG2 (Y4M) on pipes: how FFmpeg, x264, x265 and players pass raw video between tools.

    ffmpeg -i in.mkv -f yuv4mpegpipe - | vsrdb restore - -o - | x265 --y4m - -o out.hevc

A stream is one text header line (``YUV4MPEG2 W1280 H720 F30000:1001 Ip A1:1 C420jpeg
XCOLORRANGE=LIMITED``), then per frame a ``FRAME`` line and the planes: Y, then U and V at the
chroma resolution of the colour space (or Y alone for ``mono``), each sample one byte, or two
little-endian bytes above 8 bits (``C420p10``).

Frames are converted to RGB and back by the same FFmpeg conversions as video files (through
PyAV), with the range the stream states (``XCOLORRANGE``) and, since Y4M has no tag for it, the
matrix files default to: BT.601 below 720 lines, BT.709 from 720. The output keeps the input's
colour space (chroma layout and depth), frame rate, pixel aspect ratio, interlacing tag and range,
and uses the input's matrix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Iterator

import numpy as np

from ..errors import InputError
from .colour import RANGE_FULL, RANGE_LIMITED, UNSPECIFIED, ColourSpec, describe
from .encode import encoder_frame
from .frames import FrameSource

__all__ = ["Y4MHeader", "Y4MSource", "Y4MWriter", "read_header", "PIPE"]

PIPE = "-"  # the name that means standard input or output on the command line
MAGIC = b"YUV4MPEG2"
_MAX_HEADER = 4096

# Y4M colour spaces: tag -> (pixel format, bits); 4:2:0 chroma siting variants decode alike.
_COLOURSPACES = {
    "420jpeg": ("yuv420p", 8), "420paldv": ("yuv420p", 8), "420mpeg2": ("yuv420p", 8), "420": ("yuv420p", 8),
    "411": ("yuv411p", 8), "422": ("yuv422p", 8), "444": ("yuv444p", 8), "mono": ("gray", 8),
}
for _bits in (9, 10, 12, 14, 16):
    for _sub in ("420", "422", "444"):
        _COLOURSPACES[f"{_sub}p{_bits}"] = (f"yuv{_sub}p{_bits}le" if _bits != 8 else f"yuv{_sub}p", _bits)
    _COLOURSPACES[f"mono{_bits}"] = ("gray16le" if _bits == 16 else f"gray{_bits}le", _bits)


@dataclass(frozen=True)
class Y4MHeader:
    """A stream's header: frame size, rate, interlacing (p, t, b or m), pixel aspect ratio
    (``0:0`` unknown), colour space tag and the ``X`` extension fields, in order."""

    width: int
    height: int
    fps: Fraction
    interlace: str = "p"
    aspect: str = "0:0"
    colourspace: str = "420jpeg"
    extensions: tuple[str, ...] = ()

    @property
    def pix_fmt(self) -> str:
        return _COLOURSPACES[self.colourspace][0]

    @property
    def bits(self) -> int:
        return _COLOURSPACES[self.colourspace][1]

    @property
    def range(self) -> int:
        """1 limited, 2 full (``XCOLORRANGE``); 0 (FFmpeg's "unspecified" range) when the stream
        does not say, which ``describe`` takes as limited, as for files."""
        for x in self.extensions:
            if x.upper() == "COLORRANGE=FULL":
                return RANGE_FULL
            if x.upper() == "COLORRANGE=LIMITED":
                return RANGE_LIMITED
        return 0

    def line(self) -> bytes:
        fps = f"F{self.fps.numerator}:{self.fps.denominator}"
        fields = [f"W{self.width}", f"H{self.height}", fps, f"I{self.interlace}", f"A{self.aspect}",
                  f"C{self.colourspace}", *(f"X{x}" for x in self.extensions)]
        return MAGIC + b" " + " ".join(fields).encode("ascii") + b"\n"


def read_header(stream: BinaryIO, name: str) -> Y4MHeader:
    """Parse a stream's header line; InputError naming the stream when it is not Y4M."""
    line = _read_line(stream, name, "the header")
    if line is None or not line.startswith(MAGIC):
        got = "nothing" if not line else repr(line[:20].decode("latin-1"))
        raise InputError(f"{name}: not a YUV4MPEG2 stream (it starts with {got}); pipe raw video as "
                         "'ffmpeg ... -f yuv4mpegpipe -'")
    width = height = 0
    fps, interlace, aspect, cs = Fraction(0), "p", "0:0", "420jpeg"
    extensions: list[str] = []
    for token in line[len(MAGIC):].decode("ascii", "replace").split():
        key, value = token[0], token[1:]
        try:
            if key == "W":
                width = int(value)
            elif key == "H":
                height = int(value)
            elif key == "F":
                num, den = value.split(":")
                fps = Fraction(int(num), int(den))
            elif key == "I":
                interlace = value
            elif key == "A":
                aspect = value
            elif key == "C":
                cs = value
            elif key == "X":
                extensions.append(value)
        except (ValueError, ZeroDivisionError):
            raise InputError(f"{name}: YUV4MPEG2 header field {token!r} is not valid") from None
    if width <= 0 or height <= 0:
        raise InputError(f"{name}: YUV4MPEG2 header gives no frame size (W and H)")
    if fps <= 0:
        raise InputError(f"{name}: YUV4MPEG2 header gives no frame rate (F)")
    if cs not in _COLOURSPACES:
        raise InputError(f"{name}: YUV4MPEG2 colour space C{cs} is not supported (use 4:2:0, 4:2:2, 4:4:4 or mono, "
                         "8 to 16 bits)")
    if interlace not in ("p", "t", "b", "m", "?"):
        raise InputError(f"{name}: YUV4MPEG2 interlacing I{interlace} is not p, t, b or m")
    if not re.fullmatch(r"\d+:\d+", aspect):
        raise InputError(f"{name}: YUV4MPEG2 aspect ratio A{aspect} is not N:D")
    return Y4MHeader(width, height, fps, interlace, aspect, cs, tuple(extensions))


def _read_line(stream: BinaryIO, name: str, what: str) -> bytes | None:
    """One header line without its newline; None at a clean end of stream."""
    chunks: list[bytes] = []
    size = 0
    while True:
        byte = stream.read(1)
        if not byte:
            if not chunks:
                return None
            raise InputError(f"{name}: the stream ends inside {what}")
        if byte == b"\n":
            return b"".join(chunks)
        chunks.append(byte)
        size += 1
        if size > _MAX_HEADER:
            raise InputError(f"{name}: {what} is longer than {_MAX_HEADER} bytes; not a YUV4MPEG2 stream")


def _plane_shapes(header: Y4MHeader) -> list[tuple[int, int]]:
    """``(rows, samples per row)`` of each plane, as FFmpeg lays them out for the format."""
    import av

    return [(p.height, p.width) for p in av.VideoFrame(header.width, header.height, header.pix_fmt).planes]


class Y4MSource(FrameSource):
    """Frames of a Y4M stream (standard input) as RGB arrays, one frame in memory at a time."""

    def __init__(self, stream: BinaryIO, name: str = "standard input") -> None:
        self.stream, self.name = stream, name
        self.path = Path(name)  # for messages: "standard input"
        self.header = read_header(stream, name)
        h = self.header
        self.width, self.height = h.width, h.height
        self.fps = h.fps
        self.time_base = 1 / h.fps
        self.num_frames = None  # a pipe states no count
        self.pix_fmt = h.pix_fmt
        self.bits = 16 if h.bits > 8 else 8
        self.colour = describe(matrix=UNSPECIFIED, range_=h.range, primaries=UNSPECIFIED, transfer=UNSPECIFIED,
                               height=h.height, pix_fmt=h.pix_fmt)
        self.interlaced = h.interlace in ("t", "b", "m")
        self._shapes = _plane_shapes(h)
        self._sample = 2 if h.bits > 8 else 1
        self._frame_bytes = sum(r * c for r, c in self._shapes) * self._sample

    def iter_timed(self) -> Iterator[tuple[np.ndarray, int]]:
        import av

        pix = "rgb48le" if self.bits == 16 else "rgb24"
        index = 0
        while True:
            line = _read_line(self.stream, self.name, f"frame {index}'s FRAME line")
            if line is None:
                return
            if not line.startswith(b"FRAME"):
                raise InputError(f"{self.path}: frame {index} does not start with FRAME (the stream is damaged)")
            data = _read_exact(self.stream, self._frame_bytes)
            if len(data) < self._frame_bytes:
                raise InputError(f"{self.path}: frame {index} is cut short ({len(data)} of {self._frame_bytes} "
                                 "bytes): the stream ended early")
            frame = av.VideoFrame(self.width, self.height, self.pix_fmt)
            offset = 0
            for plane, (rows, cols) in zip(frame.planes, self._shapes):
                n = rows * cols * self._sample
                padded = np.zeros((rows, plane.line_size), np.uint8)
                padded[:, :cols * self._sample] = np.frombuffer(data, np.uint8, n, offset).reshape(rows, -1)
                plane.update(padded.tobytes())
                offset += n
            arr = frame.to_ndarray(format=pix, src_colorspace=self.colour.sws_matrix,
                                   src_color_range=self.colour.sws_range, dst_color_range="JPEG")
            yield arr, index
            index += 1

    def count_frames(self) -> int:
        raise InputError(f"{self.path}: a pipe's frames cannot be counted ahead")

    def close(self) -> None:
        pass


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts, got = [], 0
    while got < n:
        chunk = stream.read(n - got)
        if not chunk:
            break
        parts.append(chunk)
        got += len(chunk)
    return b"".join(parts)


class Y4MWriter:
    """Restored RGB frames ``[H, W, 3]`` (uint8, or uint16 above 8 bits) as a Y4M stream in the
    input's colour space, rate, aspect ratio, interlacing and range, at the output's size."""

    def __init__(self, stream: BinaryIO, source: Y4MHeader, colour: ColourSpec, *, width: int, height: int) -> None:
        self.stream = stream
        self.header = replace(source, width=width, height=height)
        self.colour = colour
        self.count = 0
        self.stream.write(self.header.line())

    def write(self, frame: np.ndarray) -> None:
        h = self.header
        if frame.shape[:2] != (h.height, h.width):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, the stream's is {h.width}x{h.height}")
        if (frame.dtype == np.uint16) != (h.bits > 8):  # the restorer writes the source's depth
            frame = (frame.astype(np.uint32) * 257).astype(np.uint16) if h.bits > 8 else \
                (frame.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
        out = encoder_frame(frame, h.pix_fmt, self.colour)
        sample = 2 if h.bits > 8 else 1
        parts = [b"FRAME\n"]
        for plane in out.planes:
            rows = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
            parts.append(rows[:, :plane.width * sample].tobytes())
        self.stream.write(b"".join(parts))
        self.count += 1

    def close(self) -> None:
        self.stream.flush()
