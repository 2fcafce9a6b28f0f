"""Training and validation data: clips in the REDS, GoPro or paired-folder layouts.

A sample is a window of T consecutive frames around a centre frame, as a random LR patch
with the matching HR patch, the sharp LR patch (X_sharp) and the pseudo-GT flow from the
centre to each frame. Randomness (crop, flips) is a pure function of (seed, epoch, index),
so a resumed run sees the same data as an uninterrupted one.

Layouts:
- REDS: ``ROOT/train_blur_bicubic/X4/CLIP/*.png``, ``ROOT/train_sharp/CLIP/*.png`` and, when
  present, ``ROOT/train_sharp_bicubic/X4/CLIP/*.png`` (else computed). REDS4 = clips 000,
  011, 015, 020 are held out for validation (``split``).
- GoPro: ``ROOT/CLIP/blur/*.png`` and ``ROOT/CLIP/sharp/*.png``; LR = x4 bicubic of blur.
- Paired: ``LR_ROOT/CLIP/*`` (blurry LR) and ``HR_ROOT/CLIP/*`` (sharp HR).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..errors import InputError
from ..video import list_frames, natural_key, read_image, to_tensor
from .degrade import Degradation, degrade_tensors
from .resize import imresize
from .windows import window_indices

__all__ = ["lr_size", "Clip", "REDS4", "reds_clips", "gopro_clips", "paired_clips", "find_clips", "validate_clips",
           "WindowDataset"]

REDS4 = ("000", "011", "015", "020")


@dataclass(frozen=True)
class Clip:
    name: str
    blur: tuple[Path, ...]               # blurry frames: LR, or HR to be shrunk (``blur_is_hr``)
    sharp: tuple[Path, ...]              # sharp HR frames
    sharp_lr: tuple[Path, ...] | None = None  # sharp LR frames when the dataset has them
    blur_is_hr: bool = False
    exposure: tuple[int, ...] | None = None  # per-frame exposure level 1-5 (``vsrdb synth --exposure``)


def _frame_files(folder: Path) -> tuple[Path, ...]:
    if not folder.is_dir():
        raise InputError(f"{folder}: missing folder")
    files = tuple(list_frames(folder))
    if not files:
        raise InputError(f"{folder}: no frames in it")
    return files


def _subdirs(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise InputError(f"{folder}: missing folder")
    return sorted((p for p in folder.iterdir() if p.is_dir()), key=lambda p: natural_key(p.name))


def reds_clips(root: str | Path, split: str = "train", scale: int = 4) -> list[Clip]:
    """REDS layout; ``split``: 'train' (all but REDS4), 'val' (REDS4 only) or 'all'."""
    root = Path(root)
    blur_root = root / "train_blur_bicubic" / f"X{scale}"
    sharp_lr_root = root / "train_sharp_bicubic" / f"X{scale}"
    clips = []
    exposure = _exposure_labels(root)
    for folder in _subdirs(blur_root):
        name = folder.name
        if (split == "train" and name in REDS4) or (split == "val" and name not in REDS4):
            continue
        sharp_lr = _frame_files(sharp_lr_root / name) if (sharp_lr_root / name).is_dir() else None
        blur = _frame_files(folder)
        levels = None
        if exposure is not None:
            levels = tuple(exposure.get(name, ()))
            if len(levels) != len(blur):
                raise InputError(f"{root / 'exposure.json'}: clip {name} has {len(levels)} exposure levels for "
                                 f"{len(blur)} frames")
        clips.append(Clip(name, blur, _frame_files(root / "train_sharp" / name), sharp_lr, exposure=levels))
    if not clips:
        raise InputError(f"{blur_root}: no {split} clips in it")
    return clips


def _exposure_labels(root: Path) -> dict[str, list[int]] | None:
    """``exposure.json``'s per-frame levels by clip, when the dataset has them."""
    import json

    path = root / "exposure.json"
    if not path.exists():
        return None
    try:
        return {str(k): [int(v) for v in vs] for k, vs in json.loads(path.read_text())["clips"].items()}
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{path}: not an exposure label file ({e})") from None


def gopro_clips(root: str | Path) -> list[Clip]:
    root = Path(root)
    clips = [Clip(d.name, _frame_files(d / "blur"), _frame_files(d / "sharp"), None, blur_is_hr=True)
             for d in _subdirs(root)]
    if not clips:
        raise InputError(f"{root}: no GoPro clip folders (CLIP/blur, CLIP/sharp) in it")
    return clips


def paired_clips(lr_root: str | Path, hr_root: str | Path) -> list[Clip]:
    lr_root, hr_root = Path(lr_root), Path(hr_root)
    clips = [Clip(d.name, _frame_files(d), _frame_files(hr_root / d.name)) for d in _subdirs(lr_root)]
    if not clips:
        raise InputError(f"{lr_root}: no clip folders in it")
    return clips


def find_clips(layout: str, root: str | Path, *, hr_root: str | Path | None = None, split: str = "train",
               scale: int = 4) -> list[Clip]:
    if layout == "reds":
        return reds_clips(root, split, scale)
    if layout == "gopro":
        return gopro_clips(root)
    if layout == "paired":
        if hr_root is None:
            raise InputError("paired layout needs hr_root (the sharp HR clips)")
        return paired_clips(root, hr_root)
    raise InputError(f"unknown dataset layout {layout!r} (reds, gopro, paired)")


def _size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.size[1], im.size[0]
    except (OSError, UnidentifiedImageError) as e:
        raise InputError(f"{path}: unreadable image ({e.__class__.__name__})") from None


def lr_size(clip: Clip, scale: int = 4) -> tuple[int, int]:
    """``(height, width)`` of a clip's LR frames, from its first sharp frame's header."""
    h, w = _size(clip.sharp[0])
    return h // scale, w // scale


def validate_clips(clips: list[Clip], scale: int = 4, min_frames: int = 3) -> None:
    """Check frame counts and sizes of every clip from image headers, before training."""
    for clip in clips:
        n = len(clip.blur)
        if len(clip.sharp) != n or (clip.sharp_lr is not None and len(clip.sharp_lr) != n):
            counts = f"{n} blurry, {len(clip.sharp)} sharp" + (
                f", {len(clip.sharp_lr)} sharp LR" if clip.sharp_lr is not None else "")
            raise InputError(f"clip {clip.name}: frame counts differ ({counts})")
        if n < min_frames:
            raise InputError(f"clip {clip.name}: {n} frames, fewer than T={min_frames}")
        sizes = {p: _size(p) for p in (*clip.blur, *clip.sharp, *(clip.sharp_lr or ()))}
        hr = sizes[clip.sharp[0]]
        lr = hr if clip.blur_is_hr else sizes[clip.blur[0]]
        for p in clip.sharp:
            if sizes[p] != hr:
                raise InputError(f"{p}: frame is {sizes[p][1]}x{sizes[p][0]}, clip {clip.name}'s sharp frames are "
                                 f"{hr[1]}x{hr[0]}")
        for p in (*clip.blur, *(clip.sharp_lr or ())):
            want = hr if clip.blur_is_hr and p in clip.blur else (hr[0] // scale, hr[1] // scale)
            if sizes[p] != want:
                raise InputError(f"{p}: frame is {sizes[p][1]}x{sizes[p][0]}, expected {want[1]}x{want[0]} "
                                 f"(sharp {hr[1]}x{hr[0]} / {scale})" if p not in clip.blur or not clip.blur_is_hr
                                 else f"{p}: size differs from the sharp frames")
        if not clip.blur_is_hr and (lr[0] * scale, lr[1] * scale) != hr:
            raise InputError(f"clip {clip.name}: LR {lr[1]}x{lr[0]} x{scale} is not the HR size {hr[1]}x{hr[0]}")


class WindowDataset(Dataset):
    """Windows of T frames with random (or, for validation, full-frame) patches.

    Args:
        clips: from ``find_clips``.
        num_seq: T.
        patch: LR patch size; None for whole frames (validation).
        flow: pseudo-GT flow estimator name ("dis", "farneback"); None to skip flows.
        cache_dir: where computed flows (and sharp LR frames of layouts without them) are kept.
        augment: random horizontal/vertical flips (the flow component they mirror is negated).
        seed: with the epoch (``set_epoch``), fixes every random choice.
        degrade: real-footage degradations (``degrade.py``) drawn per item and applied to the
            blurry LR patches after cropping, so each epoch sees a new draw; the sharp targets and
            the pseudo-GT flows (from the sharp LR) are untouched.
        context: with ``degrade``, up to this many LR frames before the window go through the
            video encoder with it (drawn per item), so the window's frames fall anywhere in a GOP
            instead of always starting at a keyframe.

    An item: ``lr [3, T, p, p]``, ``hr [3, T, sp, sp]``, ``lr_sharp [3, T, p, p]``,
    ``flow [2, T, p, p]`` (zeros when ``flow`` is None), floats in [0, 1].
    """

    def __init__(self, clips: list[Clip], *, num_seq: int = 3, patch: int | None = 64, scale: int = 4,
                 flow: str | None = "dis", cache_dir: str | Path | None = None, augment: bool = True,
                 seed: int = 0, degrade: Degradation | None = None, context: int = 6) -> None:
        self.clips, self.t, self.patch, self.scale = clips, num_seq, patch, scale
        self.degrade, self.context = degrade if degrade else None, context
        self.flow, self.augment, self.seed, self.epoch = flow, augment, seed, 0
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.index = [(ci, i) for ci, clip in enumerate(clips) for i in range(len(clip.blur))]

    def __len__(self) -> int:
        return len(self.index)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _window(self, n: int, centre: int) -> list[int]:
        return window_indices(centre, self.t, n)

    def _load(self, path: Path) -> Tensor:
        return to_tensor(read_image(path))

    def _blur_lr(self, clip: Clip, i: int) -> Tensor:
        img = self._load(clip.blur[i])
        return imresize(img, 1 / self.scale).clamp(0, 1) if clip.blur_is_hr else img

    def _sharp_lr(self, clip: Clip, i: int, hr: Tensor) -> Tensor:
        if clip.sharp_lr is not None:
            return self._load(clip.sharp_lr[i])
        return imresize(hr, 1 / self.scale).clamp(0, 1)

    def _flows(self, clip: Clip, idx: list[int], sharp_lr: Tensor) -> Tensor:
        """Flow centre -> each frame of the window on the whole sharp LR frames, cached."""
        from .flow import window_flows

        if self.flow is None:
            return torch.zeros(2, *sharp_lr.shape[1:])
        key = hashlib.sha1(f"{clip.sharp[idx[self.t // 2]]}|{idx}|{self.flow}".encode()).hexdigest()[:20]
        path = self.cache_dir / "flow" / f"{clip.name}-{key}.npy" if self.cache_dir else None
        if path is not None and path.exists():
            return torch.from_numpy(np.load(path))
        flows = window_flows(sharp_lr, self.flow)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{id(self)}.tmp.npy")
            np.save(tmp, flows.numpy().astype(np.float16 if flows.abs().max() < 1000 else np.float32))
            tmp.replace(path)
            return torch.from_numpy(np.load(path))
        return flows

    def __getitem__(self, key: int | tuple[int, int]) -> dict[str, Tensor]:
        """``key``: an index, or ``(epoch, index)`` from a sampler that fixes the epoch itself."""
        epoch, k = key if isinstance(key, tuple) else (self.epoch, key)
        ci, centre = self.index[k]
        clip = self.clips[ci]
        idx = self._window(len(clip.blur), centre)
        hr = torch.stack([self._load(clip.sharp[i]) for i in idx], dim=1)  # [3, T, sH, sW]
        lr = torch.stack([self._blur_lr(clip, i) for i in idx], dim=1)
        lr_sharp = torch.stack([self._sharp_lr(clip, i, hr[:, j]) for j, i in enumerate(idx)], dim=1)
        flow = self._flows(clip, idx, lr_sharp).float()
        rng = np.random.default_rng([self.seed, epoch, k])
        if self.patch is not None:
            h, w = lr.shape[-2:]
            p, s = self.patch, self.scale
            if h < p or w < p:
                raise InputError(f"clip {clip.name}: LR frames {w}x{h} are smaller than the patch {p}")
            y, x = int(rng.integers(0, h - p + 1)), int(rng.integers(0, w - p + 1))
            lr, lr_sharp, flow = (z[..., y:y + p, x:x + p] for z in (lr, lr_sharp, flow))
            hr = hr[..., y * s:(y + p) * s, x * s:(x + p) * s]
        else:
            y, x, p = 0, 0, None
        degradation = None
        if self.degrade is not None:
            # Its own generator: the patch and flips of a dataset without degradations stay as they were.
            drng = np.random.default_rng([self.seed, epoch, k, 1])
            degradation = self.degrade.draw(drng)
            if degradation["steps"]:
                lr = self._degrade(clip, idx, lr, degradation, int(drng.integers(0, self.context + 1)), y, x, p)
        if self.augment:
            if rng.random() < 0.5:  # horizontal flip: dx changes sign
                lr, hr, lr_sharp, flow = (z.flip(-1) for z in (lr, hr, lr_sharp, flow))
                flow = torch.stack((-flow[0], flow[1]))
            if rng.random() < 0.5:  # vertical flip: dy changes sign
                lr, hr, lr_sharp, flow = (z.flip(-2) for z in (lr, hr, lr_sharp, flow))
                flow = torch.stack((flow[0], -flow[1]))
        item = {"lr": lr.contiguous(), "hr": hr.contiguous(), "lr_sharp": lr_sharp.contiguous(),
                "flow": flow.contiguous()}
        if clip.exposure is not None:
            item["exposure"] = torch.tensor([clip.exposure[i] for i in idx])
        return item

    def _degrade(self, clip: Clip, idx: list[int], lr: Tensor, record: dict, context: int, y: int, x: int,
                 p: int | None) -> Tensor:
        """``lr [3, T, p, p]`` (cropped) through ``record``, led by ``context`` earlier frames."""
        first = min(idx)
        lead = [self._blur_lr(clip, i) for i in range(max(0, first - context), first)]
        if p is not None:
            lead = [f[:, y:y + p, x:x + p] for f in lead]
        frames = lead + list(lr.unbind(1))
        return torch.stack(degrade_tensors(frames, record)[len(lead):], dim=1)
