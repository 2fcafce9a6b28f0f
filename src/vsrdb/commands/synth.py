"""``vsrdb synth``: make a REDS-layout training set from sharp videos and photos."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..data.degrade import PRESETS, load_degradation
from ..data.synth import SynthConfig, synthesize
from ..errors import InputError
from ..files import replace_atomically

__all__ = ["add_subcommand"]


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="make a REDS-layout training set from sharp videos and photos",
                       description="Blur = average of consecutive (or interpolated) frames; photos get a moving "
                                   "camera and moving foreground patches; LR = x4 MATLAB bicubic.")
    p.add_argument("sources", nargs="*", help="videos, frame folders, photos or folders of photos")
    p.add_argument("-o", "--output", required=True, help="dataset folder to create")
    defaults = SynthConfig()
    p.add_argument("--scale", type=int, choices=(1, 2, 4), default=defaults.scale,
                   help="the LR frames are the HR frames / SCALE (default 4); 1: the REDS-way blur (and any "
                        "--degrade) at the frames' own size, for deblurring models")
    p.add_argument("--clip-frames", type=int, default=defaults.clip_frames)
    p.add_argument("--blur-frames", type=int, default=defaults.blur_frames)
    p.add_argument("--stride", type=int, default=defaults.stride)
    p.add_argument("--subframes", type=int, default=defaults.subframes,
                   help="flow-interpolated frames inserted between source frames")
    p.add_argument("--photo-size", default="x".join(map(str, defaults.photo_size)), help="HR HxW of photo clips")
    p.add_argument("--photo-clips", type=int, default=defaults.photo_clips)
    p.add_argument("--photo-subframes", type=int, default=defaults.photo_subframes,
                   help="photo clips: renders averaged per blurry frame over its exposure; 5 gives the "
                        "5 discrete copies of a REDS-way average of 30 fps footage, more give smoother blur")
    p.add_argument("--noise", type=float, default=defaults.noise, help="Gaussian sigma on blurry LR (0-1 units)")
    p.add_argument("--jpeg", type=int, default=defaults.jpeg, help="JPEG quality for blurry LR (0 = off)")
    p.add_argument("--max-shift", type=float, default=defaults.max_shift,
                   help="photo clips: largest camera speed, HR pixels per frame (sets the blur length)")
    p.add_argument("--min-shift", type=float, default=defaults.min_shift,
                   help="photo clips: if >0, each clip's speed bound is drawn log-uniformly from "
                        "[--min-shift, --max-shift], mixing near-still and fast clips")
    p.add_argument("--foreground", type=int, default=defaults.foreground,
                   help="photo clips: moving foreground patches per clip")
    p.add_argument("--object-shift", type=float, default=defaults.object_shift,
                   help="photo clips: if >0, each foreground patch's speed bound is drawn log-uniformly from "
                        "[--min-shift (or 0.25), this], HR pixels per frame, apart from the camera's, and they "
                        "get firm edges: still shots with fast subjects (default: twice the camera's bound)")
    p.add_argument("--sway", type=float, default=defaults.sway,
                   help="photo clips: non-rigid sway of the scene (foliage in wind), up to this many HR "
                        "pixels; each clip draws its own amplitude from [0, --sway]")
    p.add_argument("--procedural", type=int, default=0,
                   help="also make clips from N procedural pictures (shapes, textures, letters)")
    p.add_argument("--procedural-size", default="x".join(map(str, defaults.procedural_size)),
                   help="HxW of the procedural pictures")
    p.add_argument("--exposure", choices=("me", "re"),
                   help="frame-wise exposure (FMA-Net++): me = every clip at the five duty cycles 5:1..5:5, "
                        "re = random level trajectories (Algorithm S1); labels go to exposure.json")
    p.add_argument("--degrade", metavar="PRESET|FILE|CHAIN",
                   help="real-footage degradations of the blurry LR after the x4 bicubic, drawn per clip and "
                        "recorded in degradation.json: a preset (" + ", ".join(PRESETS) + "), a YAML file "
                        "(steps: [...], clean: P), or a fixed chain such as noise:3,h264:crf=23")
    p.add_argument("--seed", type=int, default=defaults.seed)
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=_cmd_synth)


def _cmd_synth(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists():
        if not args.overwrite:
            raise InputError(f"{out}: exists; pass --overwrite to replace it")
    h, w = _size_arg(args.photo_size, "--photo-size")
    if args.photo_subframes < 1:
        raise InputError(f"--photo-subframes {args.photo_subframes}: must be at least 1")
    if args.sway < 0:
        raise InputError(f"--sway {args.sway}: must be 0 or more")
    if args.foreground < 0:
        raise InputError(f"--foreground {args.foreground}: must be 0 or more")
    if args.object_shift < 0:
        raise InputError(f"--object-shift {args.object_shift}: must be 0 or more")
    if not 0 <= args.min_shift <= args.max_shift:
        raise InputError(f"--min-shift {args.min_shift}: must be between 0 and --max-shift ({args.max_shift})")
    cfg = SynthConfig(scale=args.scale, clip_frames=args.clip_frames, blur_frames=args.blur_frames, stride=args.stride,
                      subframes=args.subframes, photo_size=(h, w), photo_clips=args.photo_clips,
                      photo_subframes=args.photo_subframes, noise=args.noise,
                      jpeg=args.jpeg, max_shift=args.max_shift, min_shift=args.min_shift, sway=args.sway,
                      foreground=args.foreground, object_shift=args.object_shift,
                      procedural=args.procedural,
                      procedural_size=_size_arg(args.procedural_size, "--procedural-size"),
                      exposure=args.exposure or "", degrade=load_degradation(args.degrade),
                      seed=args.seed)
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        names = synthesize(args.sources, tmp, cfg)
        replace_atomically(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out}: {len(names)} clips")
    return 0


def _size_arg(text: str, flag: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"{flag} {text!r}: expected HxW, e.g. 256x320") from None
    return h, w
