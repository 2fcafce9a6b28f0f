"""Colour description of video streams: matrix, range, primaries and transfer.

Decoding a YUV video to RGB needs the matrix and range it was encoded with; encoding the
restored RGB frames needs the same, and the output must be tagged so that players do not
guess. Players guess BT.709 for HD and BT.601 below it, and a x4 output is nearly always HD,
so an untagged BT.601 source encoded untagged at HD would shift every colour. We therefore
always tag the output explicitly with what the input was decoded with.

Values are FFmpeg's enumerations (AVColorSpace, AVColorRange, AVColorPrimaries,
AVColorTransferCharacteristic) as PyAV exposes them on frames and codec contexts.
"""

from __future__ import annotations

import struct
from dataclasses import asdict, dataclass
from fractions import Fraction

__all__ = ["ColourSpec", "HdrMetadata", "describe", "UNSPECIFIED"]

UNSPECIFIED = 2  # the value of "unspecified" in the matrix, primaries and transfer enumerations
RANGE_LIMITED, RANGE_FULL = 1, 2

# AVColorSpace -> the swscale matrix name PyAV's reformatter takes.
_SWS_MATRIX = {1: "ITU709", 4: "FCC", 5: "ITU601", 6: "SMPTE170M", 7: "SMPTE240M", 9: "BT2020", 10: "BT2020"}
# Primaries and transfer that go with an inferred matrix (BT.601 is NTSC's SMPTE 170M).
_DEFAULT_TAGS = {1: (1, 1), 6: (6, 6)}
HDR_TRANSFERS = {16: "PQ (SMPTE 2084)", 18: "HLG (ARIB STD-B67)"}


@dataclass(frozen=True)
class ColourSpec:
    """How a stream's YUV samples map to RGB (FFmpeg enumeration values)."""

    matrix: int  # AVColorSpace: 0 RGB, 1 BT.709, 5/6 BT.601, 9 BT.2020 NCL
    range: int  # 1 limited (TV), 2 full (PC)
    primaries: int
    transfer: int

    @property
    def sws_matrix(self) -> str:
        return _SWS_MATRIX.get(self.matrix, "ITU601")

    @property
    def sws_range(self) -> str:
        return "JPEG" if self.range == RANGE_FULL else "MPEG"

    @property
    def hdr(self) -> str | None:
        return HDR_TRANSFERS.get(self.transfer)

    def for_yuv(self) -> "ColourSpec":
        """The spec to encode YUV with: an RGB source (frame folders, RGB video) is taken as
        sRGB-like BT.709, the matrix HD players assume."""
        if self.matrix != 0:
            return self
        primaries = 1 if self.primaries in (0, UNSPECIFIED) else self.primaries
        transfer = 1 if self.transfer in (0, UNSPECIFIED) else self.transfer
        return ColourSpec(1, RANGE_LIMITED, primaries, transfer)

    def as_dict(self) -> dict:
        return asdict(self)

    def tag(self, codec_context, *, rgb: bool = False) -> None:
        """Tag an encoder's stream. ``rgb``: the samples are RGB (matrix 0, full range)."""
        codec_context.colorspace = 0 if rgb else self.matrix
        codec_context.color_range = RANGE_FULL if rgb else self.range
        codec_context.color_primaries = self.primaries
        codec_context.color_trc = self.transfer


def describe(*, matrix: int, range_: int, primaries: int, transfer: int, height: int, pix_fmt: str = "") -> ColourSpec:
    """The colour of a stream from its tags; what is untagged is inferred as players do:
    BT.601 below 720 lines, BT.709 from 720; limited range unless the format is a JPEG one."""
    if matrix in (UNSPECIFIED, 3) or matrix not in (*_SWS_MATRIX, 0):
        matrix = 1 if height >= 720 else 6
    if range_ not in (RANGE_LIMITED, RANGE_FULL):
        range_ = RANGE_FULL if pix_fmt.startswith("yuvj") or pix_fmt.startswith(("rgb", "bgr", "gbr")) \
            else RANGE_LIMITED
    default_primaries, default_transfer = _DEFAULT_TAGS.get(matrix, (UNSPECIFIED, UNSPECIFIED))
    if primaries in (0, UNSPECIFIED, 3):
        primaries = default_primaries
    if transfer in (0, UNSPECIFIED, 3):
        transfer = default_transfer
    return ColourSpec(matrix, range_, primaries, transfer)


# Same syntax, different names: encoder -> (its option, mastering key, light-level key).
_X26X_KEYS = {
    "libx265": ("x265-params", "master-display", "max-cll"),
    "libx264": ("x264-params", "mastering-display", "cll"),
    "libx264rgb": ("x264-params", "mastering-display", "cll"),
}


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10 static metadata: the mastering display (SMPTE ST 2086) and the content light
    levels (CTA-861.3). HDR players tone-map with these; without them a PQ video is shown
    as if mastered on a 10 000 cd/m2 display, too dark on ordinary TVs.

    Chromaticities are CIE 1931 x, y; luminances are cd/m2. Either part may be missing.
    """

    primaries: tuple[tuple[float, float], tuple[float, float], tuple[float, float]] | None = None  # R, G, B
    white: tuple[float, float] | None = None
    luminance: tuple[float, float] | None = None  # (min, max)
    max_cll: int | None = None  # brightest pixel of the video
    max_fall: int | None = None  # brightest frame average

    @classmethod
    def from_frame(cls, frame) -> "HdrMetadata | None":
        """The metadata a decoded PyAV frame carries as side data (the decoder turns the
        stream's SEI/OBU metadata into it), or None."""
        found: dict = {}
        for sd in getattr(frame, "side_data", None) or ():
            name = getattr(sd.type, "name", "")
            raw = bytes(sd)
            if name == "MASTERING_DISPLAY_METADATA" and len(raw) >= 88:
                # AVMasteringDisplayMetadata: 3x2 primaries, 2 white point, min, max (AVRational
                # each: int32 num, den), then has_primaries, has_luminance (int32).
                v = struct.unpack_from("<22i", raw)
                q = [float(Fraction(v[i], v[i + 1])) if v[i + 1] else 0.0 for i in range(0, 20, 2)]
                if v[20]:
                    found["primaries"] = ((q[0], q[1]), (q[2], q[3]), (q[4], q[5]))
                    found["white"] = (q[6], q[7])
                if v[21]:
                    found["luminance"] = (q[8], q[9])
            elif name == "CONTENT_LIGHT_LEVEL" and len(raw) >= 8:
                found["max_cll"], found["max_fall"] = struct.unpack_from("<2I", raw)
        return cls(**found) if found else None

    @property
    def _mastering(self) -> bool:
        return self.primaries is not None and self.white is not None and self.luminance is not None

    @property
    def _light(self) -> bool:
        return self.max_cll is not None and self.max_fall is not None

    def encoder_params(self, encoder: str) -> tuple[str, list[str]] | None:
        """``(option, [key=value, ...])`` that make ``encoder`` write this metadata into the
        bitstream, or None if the encoder cannot carry it."""
        (rx, ry), (gx, gy), (bx, by) = self.primaries or ((0, 0),) * 3
        wx, wy = self.white or (0, 0)
        lo, hi = self.luminance or (0, 0)
        if encoder in _X26X_KEYS:
            option, mastering, light = _X26X_KEYS[encoder]

            def c(x: float) -> int:  # x264/x265 take chromaticities in 0.00002 steps
                return round(x * 50000)

            params = []
            if self._mastering:  # and luminance in 0.0001 cd/m2
                params.append(f"{mastering}=G({c(gx)},{c(gy)})B({c(bx)},{c(by)})R({c(rx)},{c(ry)})"
                              f"WP({c(wx)},{c(wy)})L({round(hi * 10000)},{round(lo * 10000)})")
            if self._light:
                params.append(f"{light}={self.max_cll},{self.max_fall}")
            return option, params
        if encoder == "libsvtav1":
            params = []
            if self._mastering:
                params.append(f"mastering-display=G({gx:.5f},{gy:.5f})B({bx:.5f},{by:.5f})R({rx:.5f},{ry:.5f})"
                              f"WP({wx:.5f},{wy:.5f})L({hi:.4f},{lo:.4f})")
            if self._light:
                params.append(f"content-light={self.max_cll},{self.max_fall}")
            return "svtav1-params", params
        return None

    def describe(self) -> str:
        parts = []
        if self.luminance:
            parts.append(f"mastering display {self.luminance[0]:g}-{self.luminance[1]:g} cd/m2")
        if self._light:
            parts.append(f"MaxCLL {self.max_cll}, MaxFALL {self.max_fall}")
        return ", ".join(parts) or "mastering primaries"
