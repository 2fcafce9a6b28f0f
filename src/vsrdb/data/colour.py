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

from dataclasses import asdict, dataclass

__all__ = ["ColourSpec", "describe", "UNSPECIFIED"]

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
