"""Writing restored video: output formats, closed-GOP segments, and the final join.

A restored video is encoded in segments, each by a fresh encoder (so each starts with a
key frame and decodes on its own), then joined into the output container by copying
packets, without re-encoding. That keeps a killed run's finished segments usable and lets
several processes encode their parts of one file. At the join every video packet gets the
input frame's own timestamp, and the input's sound, subtitles, chapters and metadata are
copied beside it.

Encoders run without B-frames: decode order is then presentation order, so a packet's
timestamp is its frame's and variable frame rate survives the join unchanged.
"""

from __future__ import annotations

import heapq
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np

from ..errors import InputError
from ..files import mark_output_folder, replace_atomically
from .colour import ColourSpec, HdrMetadata
from .containers import OUTPUT_CONTAINERS, check_output_path
from .frames import SRGB

__all__ = ["OutputFormat", "choose_format", "VideoEncoder", "join_segments", "CODECS", "set_display_rotation",
           "encoder_frame", "FrameWriter", "PNGFolderWriter", "VideoWriter", "open_writer"]

# --codec name -> (encoder, pixel format for 8-bit sources, for deeper sources)
CODECS = {
    "h264": ("libx264", "yuv420p", "yuv420p10le"),
    "h265": ("libx265", "yuv420p", "yuv420p10le"),
    "av1": ("libsvtav1", "yuv420p", "yuv420p10le"),
    "vp9": ("libvpx-vp9", "yuv420p", "yuv420p"),
    "ffv1": ("ffv1", "yuv420p", "yuv420p10le"),
    "prores": ("prores_ks", "yuv422p10le", "yuv422p10le"),
}
_ALIASES = {"hevc": "h265", "x264": "h264", "avc": "h264", "x265": "h265", "libx264": "h264", "libx265": "h265"}
_CONTAINER_CODECS = {
    ".mp4": {"h264", "h265", "av1", "vp9"},
    ".m4v": {"h264", "h265"},
    ".mov": {"h264", "h265", "prores"},
    ".mkv": set(CODECS),
    ".webm": {"vp9", "av1"},
    ".ts": {"h264", "h265"},
}
_DEFAULT_CODEC = {".webm": "vp9"}
# --crf: the range each encoder takes (libx264 would clamp silently, the others fail late).
_CRF_RANGE = {"h264": (0, 51), "h265": (0, 51), "av1": (1, 63), "vp9": (0, 63)}
# Audio and subtitle codecs each muxer takes as they are (None: any).
_AUDIO_OK = {
    "mp4": {"aac", "mp3", "ac3", "eac3", "opus", "flac", "alac"},
    "mov": {"aac", "mp3", "ac3", "eac3", "alac", "pcm_s16le", "pcm_s16be", "pcm_s24le", "pcm_s24be", "pcm_s32le",
            "pcm_f32le", "pcm_u8"},
    "matroska": None,
    "webm": {"opus", "vorbis"},
    "mpegts": {"aac", "mp3", "ac3", "eac3", "opus", "mp2"},
}
_SUBTITLE_OK = {
    "mp4": {"mov_text"}, "mov": {"mov_text"},
    # PyAV names a stream by its decoder: SubRip reads back as "srt".
    "matroska": {"subrip", "srt", "ass", "ssa", "webvtt", "dvd_subtitle", "hdmv_pgs_subtitle", "dvb_subtitle", "text"},
    "webm": {"webvtt"}, "mpegts": {"dvb_subtitle"},
}
_AUDIO_FALLBACK = {"webm": "libopus"}  # else AAC
_CONTAINER_TAGS_NOT_COPIED = {"major_brand", "minor_version", "compatible_brands", "encoder", "creation_time"}


@dataclass(frozen=True)
class OutputFormat:
    """How restored frames are encoded: the container, encoder, pixel format and options,
    the depth of the RGB frames handed to it (8 or 16 bits) and the colour tags."""

    muxer: str
    encoder: str
    pix_fmt: str
    options: dict = field(default_factory=dict)
    bits: int = 8
    rgb: bool = False
    colour: ColourSpec = ColourSpec(1, 1, 1, 1)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["colour"] = self.colour.as_dict()
        return d


def _default_codec(suffix: str, colour: ColourSpec) -> str:
    # HDR10 and HLG are delivered as HEVC or AV1; TVs and phones rarely play 10-bit H.264.
    if colour.hdr:
        for name in ("h265", "av1"):
            if name in _CONTAINER_CODECS[suffix]:
                return name
    return _DEFAULT_CODEC.get(suffix, "h264")


def _deep(pix_fmt: str) -> bool:
    import av

    return any(c.bits > 8 for c in av.VideoFormat(pix_fmt).components)


def choose_format(path: Path, *, source_bits: int, colour: ColourSpec, codec: str | None = None,
                  pix_fmt: str | None = None, lossless: bool = False, crf: int | None = None,
                  hdr: HdrMetadata | None = None) -> OutputFormat:
    """The output format for ``path``'s extension; InputError naming the path for a combination
    that cannot be written (checked before any work). ``hdr``: the source's HDR10 metadata,
    written into the bitstream where the encoder can carry it."""
    import av

    suffix = path.suffix.lower()
    muxer = OUTPUT_CONTAINERS[suffix]
    name = _ALIASES.get((codec or "").lower(), (codec or "").lower()) or _default_codec(suffix, colour)
    if lossless and not codec and source_bits > 8:  # H.264 has no lossless RGB beyond 8 bits
        name = "h265"
    if name not in CODECS:
        raise InputError(f"{path}: unknown codec {codec!r} (use one of {', '.join(CODECS)})")
    if name not in _CONTAINER_CODECS[suffix]:
        raise InputError(f"{path}: {suffix} files cannot hold {name} (it takes "
                         f"{', '.join(sorted(_CONTAINER_CODECS[suffix]))}); choose another --codec or extension")
    encoder, pix8, pix16 = CODECS[name]
    deep_source = source_bits > 8
    options: dict[str, str] = {}
    rgb = False
    if lossless:
        if pix_fmt:
            raise InputError(f"{path}: --lossless chooses the pixel format itself; drop --pix-fmt")
        if name == "h264" and not deep_source:
            encoder, pix, rgb, options = "libx264rgb", "rgb24", True, {"qp": "0", "preset": "medium", "bf": "0"}
        elif name == "h265":
            pix, rgb = ("gbrp10le" if deep_source else "gbrp"), True
            options = {"preset": "medium", "x265-params": "lossless=1:bframes=0:log-level=error"}
        elif name == "ffv1":
            pix, rgb = ("gbrp16le" if deep_source else "bgr0"), True
        elif name == "vp9" and not deep_source:
            pix, rgb, options = "gbrp", True, {"lossless": "1", "row-mt": "1"}
        else:
            depth = "this source's depth" if deep_source else "8-bit RGB"
            ok = "h265, ffv1" if deep_source else "h264, h265, ffv1, vp9"
            raise InputError(f"{path}: {name} cannot be lossless at {depth}; use --codec {ok.split(',')[0]} "
                             f"(lossless: {ok})")
        if name not in _CONTAINER_CODECS[suffix]:
            raise InputError(f"{path}: {suffix} files cannot hold lossless {name}")
    else:
        if crf is not None:
            if name not in _CRF_RANGE:
                raise InputError(f"{path}: --crf does not apply to {name} (it has no quality scale; drop --crf)")
            low, high = _CRF_RANGE[name]
            if not low <= crf <= high:
                raise InputError(f"{path}: --crf {crf} is out of range for {name} ({low} to {high}; lower is "
                                 "better quality)")
        pix = pix_fmt or (pix16 if deep_source else pix8)
        supported = [f.name for f in (av.codec.Codec(encoder, "w").video_formats or [])]
        if pix not in supported:
            raise InputError(f"{path}: {name} ({encoder}) cannot write pixel format {pix!r} "
                             f"(it takes {', '.join(supported)})")
        q = str(crf if crf is not None else 18)
        if name == "h264":
            options = {"crf": q, "preset": "medium", "bf": "0"}
        elif name == "h265":
            options = {"crf": q, "preset": "medium", "x265-params": "bframes=0:log-level=error"}
        elif name == "av1":
            options = {"crf": str(crf if crf is not None else 30), "preset": "8"}
        elif name == "vp9":
            options = {"crf": str(crf if crf is not None else 30), "b": "0", "row-mt": "1"}
        elif name == "prores":
            options = {"profile": "3"}
    if rgb:
        bits = 16 if deep_source else 8
    else:
        bits = 16 if _deep(pix) else 8
    carried = hdr.encoder_params(encoder) if hdr is not None else None
    if carried and carried[1]:
        key, params = carried
        options[key] = ":".join(filter(None, [options.get(key, ""), *params]))
    return OutputFormat(muxer, encoder, pix, options, bits, rgb, colour.for_yuv())


class VideoEncoder:
    """Encodes RGB frames ``[H, W, 3]`` (uint8, or uint16 for 16-bit formats) in ``fmt`` into
    one file under a temporary name; ``close()`` moves it into place, ``abort()`` removes it.

    ``vsrdb restore`` writes its segments with it (``muxer`` Matroska, which takes any codec)
    and ``VideoWriter`` previews and reports (the output's own container).
    """

    def __init__(self, path: Path | None, fmt: OutputFormat, fps: Fraction, *, muxer: str = "matroska",
                 stream: BinaryIO | None = None) -> None:
        import av

        self.path = Path(path) if path is not None else None
        self.tmp = self.path.with_name(f".{self.path.name}.partial") if self.path is not None else None
        self.fmt = fmt
        self.fps = Fraction(fps).limit_denominator(1001 * 1000) or Fraction(30)
        if stream is not None:  # a pipe: the muxer may not seek back (Matroska's live mode)
            self.container = av.open(stream, "w", format=muxer, options={"live": "1"})
        else:
            self.container = av.open(str(self.tmp), "w", format=muxer)
        self.stream: "av.VideoStream | None" = None
        self.count = 0

    @classmethod
    def to_stream(cls, stream: BinaryIO, fmt: OutputFormat, fps: Fraction, *, muxer: str = "matroska") -> "VideoEncoder":
        """An encoder writing a streamable container to ``stream`` (standard output)."""
        return cls(None, fmt, fps, muxer=muxer, stream=stream)

    def write(self, frame: np.ndarray) -> None:
        if self.stream is None:
            import av

            st = self.container.add_stream(self.fmt.encoder, rate=self.fps)
            assert isinstance(st, av.VideoStream)
            st.width, st.height, st.pix_fmt = frame.shape[1], frame.shape[0], self.fmt.pix_fmt
            st.options = dict(self.fmt.options)
            self.fmt.colour.tag(st.codec_context, rgb=self.fmt.rgb)
            self.stream = st
        vf = encoder_frame(frame, self.fmt.pix_fmt, self.fmt.colour, rgb=self.fmt.rgb)
        vf.pts = self.count
        assert self.stream is not None
        for packet in self.stream.encode(vf):
            self.container.mux(packet)
        self.count += 1

    def close(self) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.container.mux(packet)
        self.container.close()
        if self.tmp is not None and self.path is not None:
            replace_atomically(self.tmp, self.path)

    def abort(self) -> None:
        try:
            self.container.close()
        except Exception:  # half set up; the file goes either way
            pass
        if self.tmp is not None:
            self.tmp.unlink(missing_ok=True)


def join_segments(out_path: Path, muxer: str, segments: list[Path], pts: list[int], time_base: Fraction, *,
                  frame_rate: Fraction, source: Path | None, audio: bool = True,
                  note: Callable[[str], None] = print) -> dict:
    """Join encoded segments into ``out_path`` with frame ``k``'s packet at ``pts[k]``
    (``time_base`` units), copying the source's audio and subtitle streams (re-encoding audio
    the container cannot take, dropping subtitles it cannot), chapters and metadata.

    Returns counts: ``{"video": frames, "audio": streams, "subtitle": streams}``.
    """
    import av

    out = av.open(str(out_path), "w", format=muxer)
    opened: list = [out]
    try:
        first = av.open(str(segments[0]))
        opened.append(first)
        vout = out.add_stream_from_template(first.streams.video[0])
        vout.time_base = time_base
        copies: dict[int, tuple] = {}  # input stream index -> (out stream, encoder stream or None)
        inp = None
        if source is not None and source.is_file():
            inp = av.open(str(source))
            opened.append(inp)
            out.metadata.update({k: v for k, v in inp.metadata.items() if k.lower() not in _CONTAINER_TAGS_NOT_COPIED})
            vin = inp.streams.video[0]
            for key in ("language", "title"):
                if key in vin.metadata:
                    vout.metadata[key] = vin.metadata[key]
            for s in inp.streams:
                if s.type == "audio" and audio:
                    copies[s.index] = _audio_stream(out, muxer, s, out_path, note)
                elif s.type == "subtitle":
                    ok = _SUBTITLE_OK.get(muxer)
                    if ok is not None and s.codec_context.name not in ok:
                        note(f"{out_path.name}: subtitle stream {s.index} ({s.codec_context.name}) cannot go "
                             f"into {out_path.suffix}; dropped (use .mkv to keep it)")
                        continue
                    copies[s.index] = (out.add_stream_from_template(s), None)
                else:
                    continue
                o = copies[s.index][0]
                for key in ("language", "title", "handler_name"):
                    if key in s.metadata:
                        o.metadata[key] = s.metadata[key]
                try:
                    o.disposition = s.disposition
                except (AttributeError, TypeError, ValueError):
                    pass
            chapters = inp.chapters()
            if chapters:
                out.set_chapters(chapters)

        last_duration = (pts[-1] - pts[-2]) if len(pts) > 1 else max(1, round(1 / (frame_rate * time_base)))

        def video() -> Iterator[tuple[float, int, Any]]:
            k = 0
            for seg in segments:
                c = first if seg == segments[0] else av.open(str(seg))
                for p in c.demux(c.streams.video[0]):
                    if not p.size:
                        continue
                    if k >= len(pts):
                        raise InputError(f"{out_path}: segment {seg.name} holds more packets than frames")
                    p.stream = vout
                    p.pts = p.dts = pts[k]
                    # The last frame lasts as long as the one before it (players derive the rate from it).
                    p.duration = (pts[k + 1] - pts[k]) if k + 1 < len(pts) else last_duration
                    p.time_base = time_base
                    yield float(pts[k] * time_base), 0, p
                    k += 1
                if c is not first:
                    c.close()
            if k != len(pts):
                raise InputError(f"{out_path}: segments hold {k} frames, expected {len(pts)}")

        def others() -> Iterator[tuple[float, int, Any]]:
            if inp is None or not copies:
                return
            last = 0.0
            for p in inp.demux(*[inp.streams[i] for i in copies]):
                if not p.size:
                    continue
                t = p.dts if p.dts is not None else p.pts
                last = float(t * p.time_base) if t is not None else last
                yield last, 1, p

        counts = {"video": 0, "audio": 0, "subtitle": 0}
        for _, _, p in heapq.merge(video(), others(), key=lambda x: (x[0], x[1])):
            if p.stream is vout:
                out.mux(p)
                counts["video"] += 1
                continue
            target, encoder = copies[p.stream.index]
            if encoder is None:
                p.stream = target
                out.mux(p)
            else:
                for frame in p.decode():
                    frame.pts = None
                    for q in target.encode(frame):
                        out.mux(q)
        for target, encoder in copies.values():
            if encoder is not None:
                for q in target.encode(None):
                    out.mux(q)
        counts["audio"] = sum(1 for t, _ in copies.values() if t.type == "audio")
        counts["subtitle"] = sum(1 for t, _ in copies.values() if t.type == "subtitle")
        return counts
    finally:
        for c in reversed(opened):
            c.close()


def _audio_stream(out, muxer: str, s, out_path: Path, note: Callable[[str], None]) -> tuple:
    ok = _AUDIO_OK.get(muxer)
    name = s.codec_context.name
    if ok is None or name in ok:
        return out.add_stream_from_template(s), None
    target = _AUDIO_FALLBACK.get(muxer, "aac")
    note(f"{out_path.name}: {name} audio cannot go into {out_path.suffix}; re-encoded as "
         f"{'Opus' if target == 'libopus' else 'AAC'} 192 kb/s (use .mkv or .mov to copy it unchanged)")
    rate = s.codec_context.sample_rate or 48000
    if target == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        rate = 48000
    enc = out.add_stream(target, rate=rate)
    enc.layout = s.codec_context.layout.name if s.codec_context.layout else "stereo"
    enc.bit_rate = 192000
    return enc, True


def set_display_rotation(path: Path, rotation: int) -> bool:
    """Write a display rotation into the first track's header of an MP4/MOV file, in place.

    ``rotation`` is in PyAV's ``VideoFrame.rotation`` convention (degrees counter-clockwise,
    a multiple of 90). PyAV cannot attach a display matrix to a stream it writes, so the
    matrix in the ``tkhd`` box that the muxer left as identity is replaced; the box keeps its
    size, so nothing else in the file moves. Returns False when no track header is found.
    """
    import math
    import struct

    data = bytearray(Path(path).read_bytes())
    found: list[int] = []

    def walk(start: int, end: int) -> None:
        i = start
        while i + 8 <= end and not found:
            size, kind = struct.unpack(">I4s", data[i:i + 8])
            header = 8
            if size == 1:
                size, header = struct.unpack(">Q", data[i + 8:i + 16])[0], 16
            elif size == 0:
                size = end - i
            if size < header:
                return
            if kind in (b"moov", b"trak"):
                walk(i + header, i + size)
            elif kind == b"tkhd":
                found.append(i + header)
            i += size

    walk(0, len(data))
    if not found:
        return False
    box = found[0]
    # version/flags, then times and ids (32 bytes in version 1, 20 in 0), reserved, layer..volume
    matrix = box + 4 + (32 if data[box] == 1 else 20) + 8 + 8
    angle = math.radians(-rotation)  # the matrix turns the other way from PyAV's reading
    cos, sin = round(math.cos(angle)), round(math.sin(angle))

    def fixed(v: float) -> int:
        return int(v * 65536) & 0xFFFFFFFF

    data[matrix:matrix + 36] = struct.pack(">9I", fixed(cos), fixed(sin), 0, fixed(-sin), fixed(cos), 0, 0, 0,
                                           0x40000000)
    Path(path).write_bytes(bytes(data))
    return True


def encoder_frame(frame: np.ndarray, pix_fmt: str, colour: ColourSpec, *, rgb: bool = False):
    """An RGB array ``[H, W, 3]`` (uint8, or uint16 for 16-bit) as an ``av.VideoFrame`` in
    ``pix_fmt``: converted with ``colour``'s matrix and range, or kept RGB (``rgb``)."""
    import av

    src = "rgb48le" if frame.dtype == np.uint16 else "rgb24"
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(frame[:, :, :3]), format=src)
    if rgb:
        return vf.reformat(format=pix_fmt)
    return vf.reformat(format=pix_fmt, dst_colorspace=colour.sws_matrix, dst_color_range=colour.sws_range)


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
        mark_output_folder(self.tmp, "vsrdb")
        replace_atomically(self.tmp, self.path)

    def _discard(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class VideoWriter(FrameWriter):
    """H.264 (yuv420p, CRF, BT.709 matrix and tags) by default; ``lossless``: H.264 RGB at qp 0
    (bit-exact 8-bit RGB). For previews and reports; ``vsrdb restore`` writes through
    ``vsrdb.restore.job``, which keeps the source's colour, depth, timing and sound. Both
    encode with ``VideoEncoder``."""

    def __init__(self, path: Path, *, fps: Fraction, overwrite: bool, lossless: bool = False, crf: int = 18) -> None:
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
