"""Real-footage degradations of an LR clip: scale jitter, noise, JPEG and real video codecs.

REDS-way synthesis (``synth.py``) stops at blur and x4 bicubic; people's files have also been
through a video encoder, often at a low rate, often with sensor noise. A :class:`Degradation`
is an ordered list of steps, each applied with its own probability, as RealBasicVSR's
second-order pipeline is (a step may appear twice). It is data: a YAML mapping
(``data.degrade:`` in a training config, ``vsrdb synth --degrade FILE|PRESET``), a preset
name, or a fixed chain written on one line (``vsrdb evaluate --degrade noise:3,h264:crf=23``).

Drawing and applying are separate so that a draw can be recorded and replayed:

    record = degradation.draw(rng)          # concrete values: {"steps": [{"kind": ..., ...}]}
    frames = apply_record(frames, record)   # uint8 [T, H, W, 3] -> uint8 [T, H, W, 3]

A record holds every value the steps use (noise included, as a seed), so the same record on
the same frames gives the same bytes. Video steps encode the whole clip with a real encoder
through PyAV (libx264, libx265, libvpx-vp9, MPEG-4 part 2; 4:2:0), in memory, one thread,
so GOP structure, motion-compensated artefacts and their flicker are those of real files.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..errors import ConfigError, InputError

__all__ = ["Degradation", "Step", "PRESETS", "load_degradation", "parse_chain", "apply_record",
           "describe_record", "degrade_tensors", "add_noise", "jpeg", "encode_video", "encode_video_with_types",
           "rescale", "CODECS", "DEGRADATION_FILE"]

DEGRADATION_FILE = "degradation.json"  # {"spec": ..., "clips": {clip: record}} at a synth dataset's root

# Our short names -> PyAV encoder names.
CODECS = {"h264": "libx264", "h265": "libx265", "vp9": "libvpx-vp9", "mpeg4": "mpeg4"}
PRESET_NAMES = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
RESIZE_KERNELS = ("bicubic", "bilinear", "area")

# What each step kind takes: name -> default. A value in a spec is a number, a [lo, hi] range
# (drawn uniformly; integers for integer settings), a list of choices, or a {choice: weight} map.
STEP_PARAMS: dict[str, dict[str, Any]] = {
    "resize": {"scale": 1.0, "kernel": "bicubic", "back": "bicubic"},
    "noise": {"sigma": 0.0, "grey": 0.0, "poisson": 0.0},
    "jpeg": {"quality": 90},
    "video": {"codec": "h264", "crf": 23, "vp9_crf": 36, "bpp": 0.2, "preset": "medium", "gop": 0, "fps": 25},
}
INTEGER_PARAMS = {"quality", "crf", "vp9_crf", "gop", "fps"}


@dataclass(frozen=True)
class Step:
    """One step of a chain: ``kind`` in STEP_PARAMS, applied with probability ``prob``."""

    kind: str
    prob: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """Concrete values for one clip."""
        out: dict[str, Any] = {"kind": self.kind}
        for name, default in STEP_PARAMS[self.kind].items():
            out[name] = _draw_value(self.params.get(name, default), rng, integer=name in INTEGER_PARAMS)
        if self.kind == "noise":  # the flags are probabilities in a spec and booleans in a record
            out["grey"] = bool(rng.random() < float(out["grey"]))
            out["poisson"] = bool(rng.random() < float(out["poisson"]))
            out["seed"] = int(rng.integers(0, 2**31 - 1))
        return out


@dataclass(frozen=True)
class Degradation:
    """An ordered chain of steps; ``clean`` is the probability that a clip gets none of them
    (so that a model trained on it keeps its quality on clean input)."""

    steps: tuple[Step, ...] = ()
    clean: float = 0.0
    name: str = ""

    def draw(self, rng: np.random.Generator) -> dict[str, Any]:
        """A record: ``{"steps": [concrete step, ...]}`` (an empty list: left clean)."""
        if rng.random() < self.clean:
            return {"steps": []}
        drawn = []
        for step in self.steps:
            take = rng.random() < step.prob
            values = step.draw(rng)  # drawn whether taken or not: one step's choice never shifts another's
            if take:
                drawn.append(values)
        return {"steps": drawn}

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "clean": self.clean,
                "steps": [{"kind": s.kind, "prob": s.prob, **dict(s.params)} for s in self.steps]}

    def __bool__(self) -> bool:
        return bool(self.steps)


def _draw_value(spec: Any, rng: np.random.Generator, *, integer: bool) -> Any:
    if isinstance(spec, Mapping):  # weighted choice
        keys = list(spec)
        weights = np.asarray([float(spec[k]) for k in keys])
        return keys[int(rng.choice(len(keys), p=weights / weights.sum()))]
    if isinstance(spec, (list, tuple)):
        if len(spec) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in spec):
            lo, hi = spec
            return int(rng.integers(int(lo), int(hi) + 1)) if integer else float(rng.uniform(lo, hi))
        return spec[int(rng.integers(len(spec)))]
    return spec


# ---------------------------------------------------------------------------- specs

def _preset(steps: list[dict], clean: float, name: str) -> Degradation:
    return _from_mapping({"steps": steps, "clean": clean}, name)


# What each preset models. The ranges bracket what people hand a restorer: CRF 18 (near
# transparent) to 35 (a heavily squeezed upload), GOPs from a second or so down to short,
# sensor noise before the encoder as a camera has it.
PRESET_SPECS: dict[str, dict[str, Any]] = {
    # Video from the web: re-encoded at a drawn rate, sometimes twice, sometimes rescaled.
    "web": {"clean": 0.1, "steps": [
        {"kind": "resize", "prob": 0.3, "scale": [0.8, 1.2], "kernel": list(RESIZE_KERNELS), "back": list(RESIZE_KERNELS)},
        {"kind": "noise", "prob": 0.3, "sigma": [1.0, 4.0], "grey": 0.4, "poisson": 0.3},
        {"kind": "video", "prob": 1.0, "codec": {"h264": 0.6, "h265": 0.2, "vp9": 0.1, "mpeg4": 0.1},
         "crf": [18, 35], "vp9_crf": [28, 50], "bpp": [0.08, 0.6], "preset": ["veryfast", "fast", "medium", "slow"],
         "gop": [10, 60]},
        {"kind": "video", "prob": 0.2, "codec": {"h264": 0.8, "h265": 0.2}, "crf": [18, 28],
         "preset": ["veryfast", "medium"], "gop": [10, 60]},
    ]},
    # A phone or small camera: sensor noise (shot noise included) under H.264/H.265 at good rates.
    "phone": {"clean": 0.0, "steps": [
        {"kind": "noise", "prob": 0.9, "sigma": [2.0, 8.0], "grey": 0.2, "poisson": 0.5},
        {"kind": "video", "prob": 1.0, "codec": {"h264": 0.5, "h265": 0.5}, "crf": [16, 28],
         "preset": ["veryfast", "fast", "medium"], "gop": [15, 60]},
    ]},
    # What the built-in model trains on: both of the above and clean clips, in one distribution.
    "real": {"clean": 0.15, "steps": [
        {"kind": "resize", "prob": 0.2, "scale": [0.85, 1.15], "kernel": list(RESIZE_KERNELS), "back": list(RESIZE_KERNELS)},
        {"kind": "noise", "prob": 0.4, "sigma": [0.5, 6.0], "grey": 0.3, "poisson": 0.4},
        {"kind": "jpeg", "prob": 0.05, "quality": [40, 95]},
        {"kind": "video", "prob": 0.9, "codec": {"h264": 0.7, "h265": 0.15, "vp9": 0.08, "mpeg4": 0.07},
         "crf": [18, 35], "vp9_crf": [28, 50], "bpp": [0.08, 0.6], "preset": ["veryfast", "fast", "medium", "slow"],
         "gop": [6, 60]},
    ]},
}
PRESETS = tuple(PRESET_SPECS)


def load_degradation(spec: Any, *, where: str = "--degrade") -> Degradation:
    """A preset name, a YAML/JSON file, a one-line chain, or a mapping (a config's ``degrade:``)."""
    if spec is None or spec == "" or spec == {}:
        return Degradation()
    if isinstance(spec, Degradation):
        return spec
    if isinstance(spec, Mapping):
        if "preset" in spec:
            extra = set(spec) - {"preset"}
            if extra:
                raise ConfigError(f"{where}: a preset takes no other keys (got {sorted(extra)})")
            return load_degradation(str(spec["preset"]), where=where)
        return _from_mapping(spec, where)
    text = str(spec)
    if text in PRESET_SPECS:
        return _from_mapping(PRESET_SPECS[text], text)
    path = Path(text)
    if path.suffix.lower() in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise InputError(f"{path}: no such degradation file")
        import yaml

        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise InputError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded)") from None
        except (OSError, yaml.YAMLError) as e:
            raise InputError(f"{path}: not a readable degradation file ({str(e).splitlines()[0]})") from None
        if not isinstance(data, Mapping):
            raise InputError(f"{path}: a degradation file is a mapping with 'steps:' (or 'preset:')")
        return load_degradation(data.get("degrade", data), where=str(path))
    return parse_chain(text, where=where)


def _from_mapping(spec: Mapping[str, Any], where: str) -> Degradation:
    unknown = set(spec) - {"steps", "clean", "name"}
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)} (use steps:, clean:, or preset: "
                          f"{'|'.join(PRESETS)})")
    raw_steps = spec.get("steps")
    if raw_steps is None:
        raw_steps = []
    if not isinstance(raw_steps, (list, tuple)):
        raise ConfigError(f"{where}: steps must be a list of steps (each a mapping with a kind), got {raw_steps!r}")
    steps = []
    for i, raw in enumerate(raw_steps):
        if not isinstance(raw, Mapping) or "kind" not in raw:
            raise ConfigError(f"{where}: step {i + 1} needs a kind ({', '.join(STEP_PARAMS)})")
        steps.append(_step(dict(raw), f"{where}: step {i + 1}"))
    clean = _probability(spec.get("clean", 0.0), "clean", where)
    return Degradation(tuple(steps), clean, str(spec.get("name", where)))


def _number(v: Any) -> bool:
    """A finite int or float (not a bool, which YAML and Python also call a number)."""
    return isinstance(v, (int, float)) and not isinstance(v, bool) and bool(np.isfinite(v))


def _probability(value: Any, what: str, where: str) -> float:
    if not _number(value) or not 0 <= value <= 1:
        raise ConfigError(f"{where}: {what} {value!r} is a probability: a number between 0 and 1")
    return float(value)


def _step(raw: dict[str, Any], where: str) -> Step:
    kind = str(raw.pop("kind"))
    if kind in CODECS:  # "kind: h264" is short for "kind: video, codec: h264"
        raw.setdefault("codec", kind)
        kind = "video"
    if kind not in STEP_PARAMS:
        raise ConfigError(f"{where}: unknown kind {kind!r} (use {', '.join(STEP_PARAMS)} or {', '.join(CODECS)})")
    prob = _probability(raw.pop("prob", 1.0), "prob", where)
    unknown = set(raw) - set(STEP_PARAMS[kind])
    if unknown:
        raise ConfigError(f"{where}: {kind} takes {', '.join(STEP_PARAMS[kind])}, not {', '.join(sorted(unknown))}")
    step = Step(kind, prob, raw)
    _check_step(step, where)
    return step


def _values(spec: Any) -> list[Any]:
    if isinstance(spec, Mapping):
        return list(spec)
    if isinstance(spec, (list, tuple)):
        return list(spec)
    return [spec]


def _check_shape(step: Step, name: str, spec: Any, where: str) -> None:
    """A value spec is drawable: a choice map has numeric weights, not all 0; a list is not
    empty; a [lo, hi] range does not go down."""
    what = f"{where}: {step.kind} {name}"
    if isinstance(spec, Mapping):
        if not spec:
            raise ConfigError(f"{what}: an empty choice {{}}: give at least one value and its weight")
        for key, weight in spec.items():
            if not _number(weight) or weight < 0:
                raise ConfigError(f"{what}: the weight of {key!r} must be a number, 0 or more, got {weight!r}")
        if not sum(spec.values()) > 0:
            raise ConfigError(f"{what}: every weight is 0; one at least must be more")
    elif isinstance(spec, (list, tuple)):
        if not spec:
            raise ConfigError(f"{what}: an empty list []: give a value, a [lo, hi] range or choices")
        if len(spec) == 2 and all(_number(v) for v in spec) and spec[0] > spec[1]:
            raise ConfigError(f"{what}: the range {list(spec)} goes down; write [{spec[1]}, {spec[0]}]")


def _check_step(step: Step, where: str) -> None:
    """Ranges checked when the spec is read, not at the first clip an hour into training."""
    for name, spec in step.params.items():
        _check_shape(step, name, spec, where)

    def numbers(name: str, lo: float, hi: float) -> None:
        for v in _values(step.params.get(name, STEP_PARAMS[step.kind][name])):
            if not _number(v) or not lo <= v <= hi:
                raise ConfigError(f"{where}: {step.kind} {name} {v!r} must be a number in [{lo}, {hi}]")
            if name in INTEGER_PARAMS and v != int(v):
                raise ConfigError(f"{where}: {step.kind} {name} {v!r} must be a whole number")

    def choices(name: str, allowed: Sequence[str]) -> None:
        for v in _values(step.params.get(name, STEP_PARAMS[step.kind][name])):
            if v not in allowed:
                raise ConfigError(f"{where}: {step.kind} {name} {v!r}: use one of {', '.join(allowed)}")

    if step.kind == "resize":
        numbers("scale", 0.25, 4.0)
        choices("kernel", RESIZE_KERNELS)
        choices("back", RESIZE_KERNELS)
    elif step.kind == "noise":
        numbers("sigma", 0.0, 255.0)
        numbers("grey", 0.0, 1.0)
        numbers("poisson", 0.0, 1.0)
    elif step.kind == "jpeg":
        numbers("quality", 1, 100)
    else:
        choices("codec", tuple(CODECS))
        numbers("crf", 0, 51)
        numbers("vp9_crf", 0, 63)
        numbers("bpp", 0.001, 24.0)
        choices("preset", PRESET_NAMES)
        numbers("gop", 0, 1000)
        numbers("fps", 1, 240)


def parse_chain(text: str, *, where: str = "--degrade") -> Degradation:
    """``noise:3,h264:crf=23`` -> a fixed chain. Steps are comma-separated; a step is a kind
    (``resize``, ``noise``, ``poisson``, ``jpeg`` or a codec ``h264|h265|vp9|mpeg4``) with
    ``:``-separated settings, ``name=value`` or one bare value for the main one (noise: sigma,
    jpeg: quality, resize: scale, a codec: crf; mpeg4: bpp). ``clean`` is the empty chain.
    Errors start with ``where`` (the flag or config key the chain came from)."""
    text = text.strip()
    if text in ("", "clean", "none"):
        return Degradation(name="clean")
    steps = []
    main = {"noise": "sigma", "poisson": "sigma", "jpeg": "quality", "resize": "scale", "h264": "crf",
            "h265": "crf", "vp9": "vp9_crf", "mpeg4": "bpp"}
    for part in text.split(","):
        kind, *settings = part.strip().split(":")
        if kind not in main:
            raise InputError(f"{where} {text!r}: unknown step {kind!r} (use {', '.join(main)}, or a preset: "
                             f"{', '.join(PRESETS)})")
        raw: dict[str, Any] = {"kind": kind}
        if kind == "poisson":
            raw = {"kind": "noise", "poisson": 1.0}
        elif kind == "noise":
            raw["poisson"] = 0.0
        for s in settings:
            if s in ("grey", "gray"):  # a bare flag
                s = "grey=1"
            name, _, value = s.partition("=") if "=" in s else (main[kind], "=", s)
            if name == "crf" and kind == "vp9":
                name = "vp9_crf"
            try:
                raw[name] = value if name in ("codec", "preset", "kernel", "back") else float(value)
            except ValueError:
                raise InputError(f"{where} {text!r}: {name}={value!r} is not a number") from None
            if isinstance(raw[name], float) and not np.isfinite(raw[name]):
                raise InputError(f"{where} {text!r}: {name}={value!r} is not a finite number")
            if name in INTEGER_PARAMS:
                if raw[name] != int(raw[name]):
                    raise InputError(f"{where} {text!r}: {name}={value!r} must be a whole number")
                raw[name] = int(raw[name])
        try:
            steps.append(_step(raw, f"{where} {text!r}"))
        except ConfigError as e:
            raise InputError(str(e)) from None
    return Degradation(tuple(steps), 0.0, text)


def describe_record(record: Mapping[str, Any]) -> str:
    """A record as the one-line chain that replays it (noise seeds aside)."""
    parts = []
    for s in record.get("steps", []):
        if s["kind"] == "video":
            rate = f"crf={s['vp9_crf']}" if s["codec"] == "vp9" else f"bpp={s['bpp']:.3g}" if s["codec"] == "mpeg4" \
                else f"crf={s['crf']}"
            parts.append(f"{s['codec']}:{rate}:preset={s['preset']}" + (f":gop={s['gop']}" if s["gop"] else ""))
        elif s["kind"] == "noise":
            parts.append(("poisson" if s["poisson"] else "noise") + f":{s['sigma']:.3g}" + (":grey" if s["grey"] else ""))
        elif s["kind"] == "jpeg":
            parts.append(f"jpeg:{s['quality']}")
        else:
            parts.append(f"resize:{s['scale']:.3g}:kernel={s['kernel']}:back={s['back']}")
    return ",".join(parts) or "clean"


# ---------------------------------------------------------------------------- applying

def apply_record(frames: np.ndarray, record: Mapping[str, Any]) -> np.ndarray:
    """Replay a drawn record on a clip. ``frames``: uint8 ``[T, H, W, 3]`` RGB; same shape out."""
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected uint8 [T, H, W, 3] frames, got {frames.dtype} {frames.shape}")
    for s in record.get("steps", []):
        if s["kind"] == "resize":
            frames = rescale(frames, s["scale"], s["kernel"], s["back"])
        elif s["kind"] == "noise":
            frames = add_noise(frames, s["sigma"], grey=s["grey"], poisson=s["poisson"],
                               rng=np.random.default_rng(s["seed"]))
        elif s["kind"] == "jpeg":
            frames = np.stack([jpeg(f, s["quality"]) for f in frames])
        else:
            frames = encode_video(frames, s["codec"], crf=s["crf"] if s["codec"] != "vp9" else s["vp9_crf"],
                                  bpp=s["bpp"], preset=s["preset"], gop=s["gop"], fps=s["fps"])
    return frames


def add_noise(frames: np.ndarray, sigma: float, *, grey: bool = False, poisson: bool = False,
              rng: np.random.Generator) -> np.ndarray:
    """Sensor noise of standard deviation ``sigma`` (0-255 units; for shot noise, at mid-grey),
    independent per frame; grey noise is the same in R, G and B. uint8 in and out."""
    x = frames.astype(np.float32) / 255
    shape = x.shape[:-1] + (1,) if grey else x.shape
    if poisson:
        # Shot noise: photon counts with mean x * peak, where peak makes the deviation at
        # mid-grey sigma/255: sqrt(0.5 / peak) = sigma / 255.
        peak = 0.5 / max(sigma / 255, 1e-6) ** 2
        base = x.mean(-1, keepdims=True) if grey else x
        noisy_base = rng.poisson(np.clip(base, 0, 1) * peak).astype(np.float32) / peak
        x = x + np.broadcast_to(noisy_base - base, x.shape)
    else:
        x = x + np.broadcast_to(rng.normal(0, sigma / 255, shape).astype(np.float32), x.shape)
    return (np.clip(x, 0, 1) * 255).round().astype(np.uint8)


def jpeg(frame: np.ndarray, quality: int) -> np.ndarray:
    """One RGB uint8 frame through JPEG (OpenCV, 4:2:0) at ``quality``."""
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(frame[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    decoded = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if decoded is None:
        raise RuntimeError("JPEG decoding failed")
    return np.ascontiguousarray(decoded[:, :, ::-1])


def rescale(frames: np.ndarray, scale: float, kernel: str, back: str) -> np.ndarray:
    """Resample each frame by ``scale`` with ``kernel`` and back to its size with ``back``: the
    LR clip made with another kernel and a slightly different scale than x4 bicubic."""
    import torch
    import torch.nn.functional as F

    t, h, w = frames.shape[:3]
    x = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255
    size = (max(2, round(h * scale)), max(2, round(w * scale)))

    def resample(z, to, mode):
        if mode == "area":
            return F.interpolate(z, size=to, mode="area")
        return F.interpolate(z, size=to, mode=mode, align_corners=False, antialias=True)

    x = resample(resample(x, size, kernel), (h, w), back)
    return (x.clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()


def encode_video(frames: np.ndarray, codec: str, *, crf: int = 23, bpp: float = 0.2, preset: str = "medium",
                 gop: int = 0, fps: int = 25) -> np.ndarray:
    """The clip through a real encoder and back, in memory: uint8 RGB ``[T, H, W, 3]`` in and out.
    ``encode_video_with_types`` gives each decoded frame's picture type too."""
    return encode_video_with_types(frames, codec, crf=crf, bpp=bpp, preset=preset, gop=gop, fps=fps)[0]


def encode_video_with_types(frames: np.ndarray, codec: str, *, crf: int = 23, bpp: float = 0.2,
                            preset: str = "medium", gop: int = 0, fps: int = 25) -> tuple[np.ndarray, list[str]]:
    """``encode_video``, and the picture type ("I", "P", "B") of each decoded frame.

    ``crf`` sets the rate of h264/h265/vp9, ``bpp`` (bits per pixel per frame) that of mpeg4, so
    that a rate means the same on a 32 px training patch as on a whole frame. ``gop``: frames
    between keyframes (0: the encoder's default). 4:2:0 as almost every file people have.
    """
    import av

    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}")
    t, h, w = frames.shape[:3]
    # libx265 corrupts its heap on some small frames (40x40 here) and is not deterministic on a
    # frame of one 64 px CTU; a multiple of 16 and at least 96 on each side was safe and repeatable
    # in every test, and every encoder pads to its block size anyway.
    ph, pw = max(96, -(-h // 16) * 16), max(96, -(-w // 16) * 16)
    padded = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    options = {"threads": "1"}  # one thread: the same input gives the same bytes (training resumes exactly)
    if codec == "h264":
        options |= {"crf": str(int(crf)), "preset": preset}
    elif codec == "h265":
        options |= {"crf": str(int(crf)), "preset": preset, "x265-params": "log-level=none:pools=none:frame-threads=1"}
    elif codec == "vp9":
        speed = {"ultrafast": 8, "superfast": 7, "veryfast": 6, "faster": 5, "fast": 4, "medium": 2, "slow": 1}[preset]
        options |= {"crf": str(int(crf)), "b": "0", "deadline": "good", "cpu-used": str(speed), "row-mt": "0"}
    buf = io.BytesIO()
    with av.open(buf, "w", format="matroska") as out:
        stream = out.add_stream(CODECS[codec], rate=int(fps))
        stream.width, stream.height, stream.pix_fmt = pw, ph, "yuv420p"
        if codec == "mpeg4":
            stream.bit_rate = max(1000, int(bpp * ph * pw * fps))
        if gop:
            stream.codec_context.gop_size = int(gop)
        stream.options = options
        for f in padded:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    buf.seek(0)
    with av.open(buf) as src:
        decoded = [(f.to_ndarray(format="rgb24"), _picture_type(f.pict_type)) for f in src.decode(video=0)]
    if len(decoded) != t:
        raise RuntimeError(f"{codec}: {t} frames encoded, {len(decoded)} decoded")
    return np.stack([d for d, _ in decoded])[:, :h, :w], [k for _, k in decoded]


def _picture_type(pict_type: Any) -> str:
    """I, P or B (PyAV gives an enum, or its number: 1, 2, 3)."""
    name = getattr(pict_type, "name", None)
    return name if name in ("I", "P", "B") else {1: "I", 2: "P", 3: "B"}.get(int(pict_type), str(pict_type))


def degrade_tensors(frames: Sequence, record: Mapping[str, Any]) -> list:
    """``[3, H, W]`` float tensors in [0, 1] -> the same, through ``record`` (rounded to 8 bits first,
    as every encoder sees them)."""
    import torch

    arr = np.stack([(f.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy() for f in frames])
    out = apply_record(arr, record)
    return [torch.from_numpy(np.ascontiguousarray(f)).permute(2, 0, 1).float() / 255 for f in out]

