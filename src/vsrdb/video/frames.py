"""Frames as vsrdb passes them around: numpy arrays ``[H, W, C]`` (C = 1, 3 or 4; uint8 or uint16)
in RGB order, from any source behind one interface (``FrameSource``), and float tensors
``[3, H, W]`` in [0, 1] for the models (``to_tensor``, ``to_array``).
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from .colour import ColourSpec, HdrMetadata

__all__ = ["FrameSource", "read_image", "to_tensor", "to_array", "SRGB"]

SRGB = ColourSpec(0, 2, 1, 13)  # RGB images: sRGB


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
