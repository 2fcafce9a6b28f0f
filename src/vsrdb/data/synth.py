"""Synthesise REDS-layout training data from any sharp footage (``vsrdb synth``).

REDS was made by averaging consecutive frames of 120 fps video (blur) and keeping the middle
one (sharp), then shrinking both x4 with MATLAB's bicubic imresize. We do the same:

- Videos: each output frame averages ``blur_frames`` consecutive source frames (optionally
  with ``subframes`` flow-interpolated frames between each pair, for smoother blur from
  low-fps sources); the middle one is the sharp frame. Output frames advance by ``stride``.
- Photos: a virtual camera moves over the photo (translation, rotation, zoom along a smooth
  random path) while foreground patches move on their own paths; each output frame averages
  ``photo_subframes`` renders over its exposure, so blur differs across the frame.

Layout written (REDS): ``train_sharp/CLIP/%08d.png``, ``train_blur_bicubic/X4/CLIP/%08d.png``,
``train_sharp_bicubic/X4/CLIP/%08d.png``. Deterministic for a seed.

Exposure (FMA-Net++'s REDS-ME and REDS-RE): each frame's shutter is open for N/5 of the
interval between output frames (N = 1..5); ``exposure="me"`` writes every clip at all five
levels (five clips from the same motion), ``"re"`` one clip whose level follows Algorithm S1
(a step of -1, 0 or +1 every 5 or 7 frames). The levels go to ``exposure.json``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor

from ..errors import InputError
from ..video import IMAGE_EXTENSIONS, list_frames, open_frames, to_tensor
from .degrade import DEGRADATION_FILE, Degradation, degrade_tensors
from .resize import imresize

__all__ = ["SynthConfig", "synthesize", "degrade_clip", "photo_clip", "video_clips", "write_clip",
           "exposure_trajectory", "EXPOSURE_LEVELS", "EXPOSURE_FILE"]


@dataclass(frozen=True)
class SynthConfig:
    scale: int = 4
    clip_frames: int = 20          # output frames per clip
    blur_frames: int = 5           # source frames averaged per blurry frame (REDS-like)
    stride: int = 5                # source frames between output frames
    subframes: int = 0             # interpolated frames inserted between source frames
    photo_size: tuple[int, int] = (256, 256)  # HR size of photo clips (multiple of scale)
    photo_clips: int = 2           # clips per photo
    photo_subframes: int = 9       # renders averaged per photo frame (5 = REDS-way 5-frame average at 30 fps)
    max_shift: float = 6.0         # camera speed, HR pixels per frame (upper bound)
    min_shift: float = 0.0         # >0: each photo clip's speed bound is log-uniform in [min_shift, max_shift]
    max_rotation: float = 1.5      # degrees per frame
    max_zoom: float = 0.01         # relative zoom per frame
    foreground: int = 2            # moving patches per photo clip
    object_shift: float = 0.0      # >0: each patch's speed bound log-uniform in [min_shift or 0.25, this], HR px
                                   # per frame, drawn apart from the camera's, and a firm edge (0: twice the
                                   # camera's bound, soft-edged)
    sway: float = 0.0              # >0: non-rigid sway of the background, up to this many HR px (per clip)
    noise: float = 0.0             # Gaussian noise sigma on the blurry LR, in [0, 1] units
    jpeg: int = 0                  # JPEG quality for the blurry LR (0 = off)
    procedural: int = 0            # procedural pictures (``procedural.py``) added to the photos
    procedural_size: tuple[int, int] = (384, 512)
    exposure: str = ""             # "", "me" (every clip at the five levels) or "re" (random trajectories)
    degrade: Degradation = Degradation()  # real-footage degradations of the blurry LR, drawn per clip
    seed: int = 0


def degrade_clip(sharp: list[Tensor], blurry: list[Tensor], cfg: SynthConfig,
                 rng: np.random.Generator) -> tuple[list[Tensor], list[Tensor]]:
    """HR frames -> (blurry LR, sharp LR) by x1/scale MATLAB bicubic, plus optional noise/JPEG."""
    blur_lr = [imresize(b, 1 / cfg.scale).clamp(0, 1) for b in blurry]
    sharp_lr = [imresize(s, 1 / cfg.scale).clamp(0, 1) for s in sharp]
    if cfg.noise > 0:
        blur_lr = [(b + torch.from_numpy(rng.normal(0, cfg.noise, b.shape).astype(np.float32))).clamp(0, 1)
                   for b in blur_lr]
    if cfg.jpeg > 0:
        blur_lr = degrade_tensors(blur_lr, {"steps": [{"kind": "jpeg", "quality": cfg.jpeg}]})
    return blur_lr, sharp_lr


def _crop_to_multiple(img: Tensor, m: int) -> Tensor:
    h, w = img.shape[-2:]
    return img[..., : h - h % m, : w - w % m]


# ---------------------------------------------------------------------------- videos


def _interpolate(a: Tensor, b: Tensor, n: int) -> list[Tensor]:
    """n frames between a and b by bidirectional flow warping (DIS)."""
    from ..ops import flow_warp
    from .flow import estimate_flow

    if n <= 0:
        return []
    f_ab = estimate_flow(a, b)[None]  # a(p) = b(p + f_ab)
    f_ba = estimate_flow(b, a)[None]
    out = []
    for i in range(1, n + 1):
        s = i / (n + 1)
        from_a = flow_warp(a[None], -s * f_ab)  # approximation: flow at the target ~ flow at the source
        from_b = flow_warp(b[None], -(1 - s) * f_ba)
        out.append(((1 - s) * from_a + s * from_b)[0].clamp(0, 1))
    return out


def video_clips(path: Path, cfg: SynthConfig, exposures=None) -> Iterator[tuple]:
    """(sharp HR frames, blurry HR frames) clips from a video file or frame folder; with
    ``exposures`` (clip length -> per-frame level lists, one per version), (sharp, blurry,
    levels) per version, the interval between output frames (``stride``) being level 5."""
    frames = [_crop_to_multiple(to_tensor(f), cfg.scale) for f in open_frames(path)]
    if cfg.subframes > 0:
        dense = []
        for a, b in zip(frames, frames[1:]):
            dense.append(a)
            dense.extend(_interpolate(a, b, cfg.subframes))
        dense.append(frames[-1])
        frames = dense
        step = cfg.subframes + 1
    else:
        step = 1
    window = cfg.blur_frames * step - (step - 1)  # span of the averaged frames, interpolated included
    stride = cfg.stride * step
    if exposures is not None:
        window = stride
    starts = list(range(0, len(frames) - window + 1, stride))
    if len(starts) < 3:
        raise InputError(f"{path}: {len(frames)} frames make fewer than 3 output frames "
                         f"(blur_frames={cfg.blur_frames}, stride={cfg.stride})")
    for c0 in range(0, len(starts), cfg.clip_frames):
        group = starts[c0:c0 + cfg.clip_frames]
        if len(group) < 3:
            break
        if exposures is not None:  # each frame's shutter open for level/5 of the interval between frames
            for levels in exposures(len(group)):
                windows = [_exposure(frames[s:s + stride], level) for s, level in zip(group, levels)]
                yield [w[len(w) // 2] for w in windows], [torch.stack(w).mean(0) for w in windows], levels
            continue
        sharp = [frames[s + window // 2] for s in group]
        blurry = [torch.stack(frames[s:s + window]).mean(0) for s in group]
        yield sharp, blurry


# ---------------------------------------------------------------------------- photos


def _smooth_path(rng: np.random.Generator, n: int, max_step: float) -> np.ndarray:
    """Cumulative positions of a random walk whose velocity drifts smoothly, ``[n]``."""
    v0 = rng.uniform(-max_step, max_step)
    dv = rng.normal(0, max_step * 0.15, n).cumsum()
    velocity = np.clip(v0 + dv, -max_step, max_step)
    return np.concatenate([[0.0], np.cumsum(velocity)[:-1]])


def _sway_field(rng: np.random.Generator, cfg: SynthConfig, h: int, w: int):
    """``i -> (map_x, map_y)`` for ``cv2.remap``: three travelling waves per axis, wavelengths
    16 to 96 HR px, amplitude up to ``cfg.sway`` (drawn per clip, so some clips barely sway),
    each wave moving by up to a quarter period per output frame."""
    amp = rng.uniform(0, cfg.sway)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    waves = []
    for _axis in range(2):
        for _ in range(3):
            angle = rng.uniform(0, 2 * np.pi)
            k = 2 * np.pi / rng.uniform(16, 96)
            phase = (np.cos(angle) * xx + np.sin(angle) * yy) * k + rng.uniform(0, 2 * np.pi)
            speed = rng.uniform(-0.5 * np.pi, 0.5 * np.pi) / cfg.photo_subframes  # radians per render
            waves.append((phase.astype(np.float32), speed, amp / 3 * rng.uniform(0.5, 1.0)))

    def field(i: int) -> tuple[np.ndarray, np.ndarray]:
        d = [sum(a * np.sin(ph + v * i) for ph, v, a in waves[j:j + 3]) for j in (0, 3)]
        return (xx + d[0]).astype(np.float32), (yy + d[1]).astype(np.float32)

    return field


def photo_clip(photo: Tensor, cfg: SynthConfig, rng: np.random.Generator, patch_sources: list[Tensor],
               exposures: list[list[int]] | None = None):
    """One clip of a virtual camera over ``photo [3, H, W]`` with moving foreground patches:
    ``(sharp, blurry)`` frame lists, or with ``exposures`` (per-frame levels, one list per
    version) one such pair per version, all from the same motion."""
    import cv2

    out_h, out_w = cfg.photo_size
    n_sub = cfg.clip_frames * cfg.photo_subframes
    # Real footage mixes still shots (pure SR) with fast pans (long blur); one fixed speed bound
    # leaves both ends out of the training set, so the bound can vary per clip. Rotation and zoom
    # scale with it, or a "still" clip would still spin.
    max_shift = cfg.max_shift
    if cfg.min_shift > 0:
        max_shift = float(np.exp(rng.uniform(np.log(cfg.min_shift), np.log(cfg.max_shift))))
    motion = max_shift / cfg.max_shift if cfg.max_shift > 0 else 1.0
    # Paths in sub-frame units: per-frame speeds divided over the exposure's sub-frames.
    tx = _smooth_path(rng, n_sub, max_shift / cfg.photo_subframes)
    ty = _smooth_path(rng, n_sub, max_shift / cfg.photo_subframes)
    rot = _smooth_path(rng, n_sub, motion * cfg.max_rotation / cfg.photo_subframes)
    zoom = 1 + _smooth_path(rng, n_sub, motion * cfg.max_zoom / cfg.photo_subframes)
    src = (photo.permute(1, 2, 0).numpy() * 255).astype(np.float32)
    ph, pw = src.shape[:2]
    # Start so the view fits the photo, scaled up when the photo is small.
    base_zoom = max(out_h / ph, out_w / pw) * 1.25
    cx, cy = pw / 2 + rng.uniform(-0.1, 0.1) * pw, ph / 2 + rng.uniform(-0.1, 0.1) * ph

    patches = []
    for _ in range(cfg.foreground):
        p = patch_sources[int(rng.integers(len(patch_sources)))]
        ps = int(rng.integers(out_h // 6, out_h // 3))
        py, px = int(rng.integers(0, max(1, p.shape[1] - ps))), int(rng.integers(0, max(1, p.shape[2] - ps)))
        tile = (p[:, py:py + ps, px:px + ps].permute(1, 2, 0).numpy() * 255).astype(np.float32)
        if tile.shape[0] < 4 or tile.shape[1] < 4:
            continue
        yy, xx = np.mgrid[: tile.shape[0], : tile.shape[1]]
        ry, rx = tile.shape[0] / 2, tile.shape[1] / 2
        r = np.sqrt(((yy - ry) / ry) ** 2 + ((xx - rx) / rx) ** 2)
        # Subjects with their own speed get a firm edge (a ramp of about 2 px), as real objects
        # have: what the model must learn is a blurred outline beside a sharp background.
        edge = min(ry, rx) / 2 if cfg.object_shift > 0 else 1.5
        alpha = np.clip((1 - r) * edge, 0, 1)[..., None]
        # Real footage is often a still or slow camera with fast subjects (cyclists, a talking
        # head): blur in some places and none around them. Tied to the camera's speed, the patches
        # would be still whenever the camera is, so that case needs their own speed.
        speed = 2 * max_shift
        if cfg.object_shift > 0:
            low = min(cfg.min_shift or 0.25, cfg.object_shift)
            speed = float(np.exp(rng.uniform(np.log(low), np.log(cfg.object_shift))))
        patches.append({
            "tile": tile, "alpha": alpha.astype(np.float32),
            "x": rng.uniform(0, out_w - tile.shape[1]) + _smooth_path(rng, n_sub, speed / cfg.photo_subframes),
            "y": rng.uniform(0, out_h - tile.shape[0]) + _smooth_path(rng, n_sub, speed / cfg.photo_subframes),
        })

    # Real scenes also move non-rigidly (foliage in wind, water, cloth), which a camera over a
    # still photo never shows: a displacement field of a few travelling waves, drawn only when
    # asked so that datasets made without it stay identical for their seed.
    sway = _sway_field(rng, cfg, out_h, out_w) if cfg.sway > 0 else None

    def render(i: int) -> np.ndarray:
        z = base_zoom * zoom[i]
        m = cv2.getRotationMatrix2D((cx + tx[i], cy + ty[i]), rot[i], z)
        m[0, 2] += out_w / 2 - (cx + tx[i])
        m[1, 2] += out_h / 2 - (cy + ty[i])
        frame = cv2.warpAffine(src, m, (out_w, out_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        if sway is not None:
            map_x, map_y = sway(i)
            frame = cv2.remap(frame, map_x, map_y, cv2.INTER_CUBIC, borderMode=cv2.BORDER_REFLECT)
        for p in patches:
            th, tw = p["tile"].shape[:2]
            mt = np.array([[1, 0, p["x"][i]], [0, 1, p["y"][i]]], np.float32)
            layer = cv2.warpAffine(p["tile"], mt, (out_w, out_h), flags=cv2.INTER_LINEAR)
            a = cv2.warpAffine(p["alpha"], mt, (out_w, out_h), flags=cv2.INTER_LINEAR)[..., None]
            frame = frame * (1 - a) + layer * a
        return frame

    renders = [[render(f * cfg.photo_subframes + k) for k in range(cfg.photo_subframes)]
               for f in range(cfg.clip_frames)]

    def version(levels: list[int]) -> tuple[list[Tensor], list[Tensor]]:
        to_t = lambda a: torch.from_numpy(np.clip(a / 255, 0, 1).astype(np.float32)).permute(2, 0, 1)  # noqa: E731
        windows = [_exposure(subs, level) for subs, level in zip(renders, levels)]
        return [to_t(w[len(w) // 2]) for w in windows], [to_t(np.mean(w, axis=0)) for w in windows]

    if exposures is None:
        return version([5] * cfg.clip_frames)
    return [version(levels) for levels in exposures]


# ---------------------------------------------------------------------------- exposure

EXPOSURE_LEVELS = (1, 2, 3, 4, 5)  # duty cycles 5:1 .. 5:5 (FMA-Net++'s REDS-ME)
EXPOSURE_FILE = "exposure.json"    # {"clips": {clip: [level per frame]}} at the dataset's root


def _exposure(subframes: list, level: int) -> list:
    """The sub-frames a shutter open for ``level``/5 of the frame interval sees: the first
    level/5 of them (level 5: all). Their mean is the blurry frame and their middle one the
    sharp frame, which so stays centred in the exposure, as REDS keeps the middle frame."""
    return subframes[:max(1, round(level * len(subframes) / 5))]


def exposure_trajectory(n: int, rng: np.random.Generator) -> list[int]:
    """Algorithm S1 (REDS-RE): a level in 1..5 that moves by -1, 0 or +1 every 5 or 7 frames."""
    level = int(rng.integers(1, 6))
    interval = int(rng.choice([5, 7]))
    out = []
    for i in range(n):
        if i % interval == 0:
            level = int(np.clip(level + int(rng.choice([-1, 0, 1])), 1, 5))
        out.append(level)
    return out


def _trajectories(cfg: SynthConfig, n: int, rng: np.random.Generator) -> list[list[int]] | None:
    if cfg.exposure == "me":
        return [[level] * n for level in EXPOSURE_LEVELS]
    if cfg.exposure == "re":
        return [exposure_trajectory(n, rng)]
    return None


# ---------------------------------------------------------------------------- writing


def write_clip(root: Path, name: str, sharp: list[Tensor], blur_lr: list[Tensor], sharp_lr: list[Tensor],
               scale: int = 4) -> None:
    import cv2

    for sub, frames in ((Path("train_sharp"), sharp), (Path("train_blur_bicubic") / f"X{scale}", blur_lr),
                        (Path("train_sharp_bicubic") / f"X{scale}", sharp_lr)):
        folder = root / sub / name
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            arr = (frame.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()[:, :, ::-1]
            cv2.imwrite(str(folder / f"{i:08d}.png"), np.ascontiguousarray(arr))


def synthesize(sources: list[str | Path], out: str | Path, cfg: SynthConfig = SynthConfig(),
               progress: bool = True) -> list[str]:
    """Write a REDS-layout dataset from videos, frame folders and photos. Returns clip names."""
    from tqdm import tqdm

    out = Path(out)
    rng = np.random.default_rng(cfg.seed)
    videos, photos = [], []
    for s in map(Path, sources):
        if not s.exists():
            raise InputError(f"{s}: no such file or folder")
        if s.is_dir() and (s / "manifest.json").is_file() and not any(
                p.suffix.lower() in IMAGE_EXTENSIONS for p in s.iterdir()):
            photos.extend(corpus_photos(s))
            continue
        if s.is_dir() and not any(p.suffix.lower() in IMAGE_EXTENSIONS for p in s.iterdir()):
            raise InputError(f"{s}: no images in it")
        if s.is_file() and s.suffix.lower() in IMAGE_EXTENSIONS:
            photos.append(s)
        elif s.is_dir() and _looks_like_photo_folder(s):
            photos.extend(list_frames(s))
        else:
            videos.append(s)
    names: list[str] = []
    if not videos and not photos and cfg.procedural <= 0:
        raise InputError("nothing to synthesise from: give videos, photos or --procedural N")
    total = len(videos) + (len(photos) + cfg.procedural) * cfg.photo_clips
    if cfg.exposure not in ("", "me", "re"):
        raise InputError(f"exposure {cfg.exposure!r}: use me (every clip at the five levels) or re (random)")
    labels: dict[str, list[int]] = {}
    records: dict[str, dict] = {}

    def emit(sharp, blurry, levels=None) -> None:
        name = f"{len(names):03d}"
        blur_lr, sharp_lr = degrade_clip(sharp, blurry, cfg, rng)
        if cfg.degrade:
            # Drawn from its own generator per clip: the clean data of a seed stays the same with or
            # without degradations, and a clip's record replays on its clean LR frames.
            record = cfg.degrade.draw(np.random.default_rng([cfg.seed, 2, len(names)]))
            blur_lr = degrade_tensors(blur_lr, record)
            records[name] = record
        write_clip(out, name, sharp, blur_lr, sharp_lr, cfg.scale)
        names.append(name)
        if levels is not None:
            labels[name] = list(levels)

    with tqdm(total=total, desc="synth", unit="source", disable=not progress) as bar:
        for v in videos:
            exposures = (lambda n: _trajectories(cfg, n, rng)) if cfg.exposure else None
            for clip in video_clips(v, cfg, exposures):
                emit(*clip)
            bar.update(1)
        loaded = [_load_photo(p) for p in photos]
        if cfg.procedural > 0:
            from .procedural import procedural_image

            pic_rng = np.random.default_rng([cfg.seed, 1])  # pictures independent of the clips' randomness
            loaded += [procedural_image(*cfg.procedural_size, pic_rng) for _ in range(cfg.procedural)]
        for img in loaded:
            for _ in range(cfg.photo_clips):
                trajectories = _trajectories(cfg, cfg.clip_frames, rng)
                if trajectories is None:
                    emit(*photo_clip(img, cfg, rng, loaded))
                else:
                    for (sharp, blurry), levels in zip(photo_clip(img, cfg, rng, loaded, trajectories), trajectories):
                        emit(sharp, blurry, levels)
                bar.update(1)
    import json

    if labels:
        (out / EXPOSURE_FILE).write_text(json.dumps({"levels": "duty cycle N/5 per frame", "clips": labels}) + "\n")
    if cfg.degrade:
        (out / DEGRADATION_FILE).write_text(json.dumps(
            {"about": "each clip's blurry LR went through these steps after x4 bicubic (vsrdb.data.degrade)",
             "spec": cfg.degrade.to_dict(), "clips": records}, indent=1) + "\n")
    return names


def corpus_photos(folder: Path) -> list[Path]:
    """The photographs a corpus folder of ``vsrdb data photos`` kept (its manifest.json lists
    every one considered, in package sub-folders)."""
    import json

    manifest = folder / "manifest.json"
    try:
        entries = json.loads(manifest.read_text(encoding="utf-8"))
        kept = [e["file"] for e in entries if e.get("kept", True)]
    except (ValueError, TypeError, KeyError, AttributeError):
        raise InputError(f"{manifest}: not a photo corpus manifest (a list of {{file, kept, ...}} entries)") from None
    photos = []
    for name in kept:
        path = (folder / str(name)).resolve()
        if folder.resolve() not in path.parents or not path.is_file():
            raise InputError(f"{manifest}: lists {name!r}, which is not a file in {folder}")
        photos.append(path)
    if not photos:
        raise InputError(f"{manifest}: keeps no photograph")
    return photos


def _looks_like_photo_folder(folder: Path) -> bool:
    """A folder of differently sized images is a photo collection, not a clip's frames."""
    import cv2

    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS][:8]
    sizes = set()
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        if img is not None:
            sizes.add(img.shape[:2])
    return len(sizes) > 1


def _load_photo(path: Path) -> Tensor:
    from ..video import read_image

    return to_tensor(read_image(path))
