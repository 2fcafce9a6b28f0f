"""``vsrdb evaluate``: score saved results, or run models and baselines over a dataset.

    vsrdb evaluate --pred DIR --gt DIR [--lr DIR] [--json OUT] [--report DIR]
    vsrdb evaluate --data ROOT --layout reds|synth|gopro|paired [--weights W ...] [--baseline NAME ...]

DIRs hold one folder of frames (or one video file) per clip, matched by name. The paper's
protocol is the default: RGB PSNR, MATLAB SSIM, tOF, frames without a complete T-window
left out (``--all-frames`` scores them too).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from ..checkpoints import BUILTIN_MODELS
from ..data.degrade import load_degradation
from ..devices import pick_device
from ..errors import InputError
from ..files import not_replaceable, write_atomically
from ..precision import resolve_precision
from ..video import check_writable_folder
from .common import (
    add_deflicker_argument,
    add_device_argument,
    add_output_flags,
    add_precision_argument,
    add_threads_argument,
)

__all__ = ["add_subcommand", "run_evaluate"]

LAYOUTS = ("reds", "synth", "gopro", "paired")


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="score results with the paper's protocol (PSNR, SSIM, tOF) and report them",
                       description="Either --pred/--gt (score saved frames) or --data (run --weights models and "
                                   "--baseline methods over a dataset and score them).")
    p.add_argument("--pred", help="folder with one frame folder or video per clip: the results to score")
    p.add_argument("--gt", help="folder with the same-named ground-truth clips")
    p.add_argument("--lr", help="with --pred: the blurry inputs, shown in the report")
    p.add_argument("--data", help="dataset root to run methods over")
    p.add_argument("--layout", choices=LAYOUTS, default="synth",
                   help="dataset layout: reds (REDS4 unless --split), synth (vsrdb synth output: REDS layout, "
                        "all clips), gopro (CLIP/blur, CLIP/sharp), paired (--data LR clips, --hr-root HR clips)")
    p.add_argument("--hr-root", help="paired layout: the sharp HR clips")
    p.add_argument("--split", choices=("val", "train", "all"), help="reds layout: val = REDS4 (default)")
    p.add_argument("--weights", action="append", default=[],
                   help="a checkpoint to run (repeatable); 'builtin' and 'builtin-clean' are the models shipped with vsrdb")
    p.add_argument("--baseline", action="append", default=None,
                   help="bicubic, lanczos, rl-bicubic, or none (repeatable; default: bicubic)")
    p.add_argument("--degrade", action="append", default=None, metavar="CHAIN",
                   help="with --data: degrade every clip's LR input before restoring, e.g. h264:crf=23 or "
                        "noise:3,h264:crf=23 (steps resize, noise, poisson, jpeg, h264, h265, vp9, mpeg4; "
                        "'clean' for none); repeatable: every method is scored on every setting")
    p.add_argument("--scale", type=int, choices=(1, 2, 4), default=None,
                   help="with --data: the scale scored (default: the --weights models' own, else 4); reds and "
                        "synth layouts read the X<scale> folders; at x1 the bicubic baseline is the blurry input; "
                        "a model of a larger scale is shrunk to it, as restore --outscale does")
    p.add_argument("--max-clips", type=int, help="only the first N clips")
    p.add_argument("--json", help="write the scores as JSON here")
    p.add_argument("--report", help="write report.md, report.html and images/ into this folder")
    p.add_argument("--all-frames", action="store_true", help="score every frame, not only complete T-windows")
    p.add_argument("--num-seq", type=int, default=None,
                   help="T for the frame exclusion (default: the model's, else 3)")
    p.add_argument("--y-channel", action="store_true", help="PSNR/SSIM on luma (BT.601 Y), as some papers do")
    p.add_argument("--crop-border", type=int, default=0, help="pixels cropped from each side for PSNR/SSIM")
    add_deflicker_argument(p)
    add_device_argument(p)
    add_precision_argument(p)
    add_threads_argument(p)
    add_output_flags(p, "an existing --json file or --report folder")
    p.set_defaults(func=_cmd_evaluate)


def _check_outputs(args: argparse.Namespace) -> None:
    for path, what in ((args.json, "--json"), (args.report, "--report")):
        if path and Path(path).exists() and not args.overwrite:
            raise InputError(f"{path}: exists ({what}); pass --overwrite to replace it")
        problem = not_replaceable(path) if path and Path(path).exists() else None
        if problem:
            raise InputError(f"{path}: {problem}")
        if path and not Path(path).absolute().parent.is_dir():
            raise InputError(f"{path}: its folder {Path(path).absolute().parent} does not exist")
        if path:
            check_writable_folder(Path(path).absolute().parent)


def _cmd_evaluate(args: argparse.Namespace) -> int:
    import torch

    if bool(args.pred) != bool(args.gt):
        raise InputError("--pred and --gt go together")
    if bool(args.pred) == bool(args.data):
        raise InputError("give either --pred DIR --gt DIR, or --data ROOT with --weights/--baseline")
    if args.degrade and args.pred:
        raise InputError("--degrade degrades a dataset's inputs before restoring them: use it with --data")
    for flag, value, least in (("--max-clips", args.max_clips, 1), ("--num-seq", args.num_seq, 1),
                               ("--crop-border", args.crop_border, 0)):
        if value is not None and value < least:
            raise InputError(f"{flag} must be {least} or more, got {value}")
    _check_outputs(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    command = "vsrdb " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["evaluate"] else ""
    print(run_evaluate(args, command=command))
    return 0


def run_evaluate(args: argparse.Namespace, *, command: str = "") -> str:
    """Do what the parsed command line asks; returns the text table it prints."""
    from ..evaluate.methods import Method, ModelMethod, baseline
    from ..evaluate.report import markdown_tables, model_maps, write_report
    from ..evaluate.runs import clip_window, evaluate_methods, evaluate_predictions
    from ..evaluate.scoring import ScoreOptions

    progress = not args.quiet
    maps = {}
    if args.pred:
        options = ScoreOptions(num_seq=args.num_seq or 3, all_frames=args.all_frames, y_channel=args.y_channel,
                               border=args.crop_border)
        results = [evaluate_predictions(args.pred, args.gt, options, lr_dir=args.lr, progress=progress)]
        title = f"vsrdb evaluate: {args.pred} vs {args.gt}"
    else:
        device = str(pick_device(args.device))
        precision = resolve_precision(args.precision, device)
        if args.weights and progress:
            print(f"vsrdb evaluate: {precision.describe()}", file=sys.stderr)
        models = [(_label(w), _load(w)) for w in args.weights]
        scale = _scale(args, models)
        extra = "" if args.deflicker is None else f", deflicker {args.deflicker:g}"
        methods: list[Method] = [
            ModelMethod((label if model.scale == scale else f"{label} (x{model.scale} shrunk to x{scale})") + extra,
                        model, device=device, precision=precision, scale=scale, deflicker=args.deflicker)
            for label, model in models]
        clips = _dataset(args, scale)
        names = args.baseline if args.baseline is not None else ["bicubic"]
        methods += [baseline(n, scale) for n in names if n != "none"]
        if not methods:
            raise InputError("nothing to evaluate: give --weights or a --baseline other than none")
        t = args.num_seq or max([m.scored_window for m in methods if m.model is not None], default=3)
        options = ScoreOptions(num_seq=t, all_frames=args.all_frames, y_channel=args.y_channel,
                               border=args.crop_border)
        settings = [(text, load_degradation(text)) for text in args.degrade or [""]]
        results = []
        for text, degrade in settings:
            if progress and text:
                print(f"vsrdb evaluate: input degraded by {degrade.name}", file=sys.stderr)
            scored = evaluate_methods(methods, clips, options, device=device, progress=progress, degrade=degrade,
                                      scale=scale)
            if args.degrade:  # one row per method and setting, named by both
                for r in scored:
                    r.name = f"{r.name} @ {degrade.name}"
                    r.degrade = degrade.name
            results += scored
        for m, r in zip(methods, results):
            bad = [c for c, s in r.scores.items() if any(v != v for v in s.psnr)]  # a NaN frame score
            if m.model is not None and bad:
                raise InputError(f"{r.name}: the model's outputs hold NaN or Inf values at precision "
                                 f"{precision.name} (clip {bad[0]}); no scores to report (use --precision fp32)")
        if args.report:  # the first model's own pictures (FMA-Net: flows and kernels), where it has any
            by_name = {c.name: c for c in clips}
            for m, r in zip(methods, results):
                if m.model is not None:
                    maps = {key: model_maps(m.model, clip_window(by_name[key[0]], key[1], m.model.frames.length,
                                                                 scale, degrade=settings[0][1]))
                            for key in r.samples}
                    break
        title = f"vsrdb evaluate: {args.data}"
    for r in results:
        if not any(score.frames for score in r.scores.values()):
            raise InputError(f"{r.name}: no frame was scored: the protocol leaves out frames without a complete "
                             f"{options.num_seq}-frame window, and no clip is long enough; use --all-frames or a "
                             "smaller --num-seq")
    payload = results[0].to_json() | {"protocol": vars(options)}
    if len(results) > 1:
        payload["methods"] = {r.name: r.to_json() for r in results}
    payload["method"] = results[0].name
    if getattr(args, "degrade", None):
        payload["degrade"] = list(dict.fromkeys(r.degrade for r in results))
    if args.json:
        _write_json(Path(args.json), payload)
    if args.report:
        write_report(results, args.report, options, title=title, command=command, maps=maps)
    text = markdown_tables(results, options)
    if args.json:
        text += f"\n\nwrote {args.json}"
    if args.report:
        text += f"\nwrote {Path(args.report) / 'report.html'} and report.md"
    return text


def _label(weights: str) -> str:
    if weights in BUILTIN_MODELS:
        return f"vsrdb-{weights}"
    p = Path(weights)
    return p.name if p.name not in ("model", "") else f"{p.parent.name}/{p.name}"


def _load(weights: str):
    from ..checkpoints import load_checkpoint

    return load_checkpoint(weights)  # "builtin" included


def _scale(args: argparse.Namespace, models: list) -> int:
    """The scale scored at: --scale, else the models' own (they must agree), else 4. A model of a
    larger scale is scored at --scale as ``vsrdb restore --outscale`` would run it (shrunk)."""
    scales = {model.scale for _, model in models}
    if args.scale is not None:
        for label, model in models:
            if model.scale < args.scale:
                raise InputError(f"--scale {args.scale}: {label} is a x{model.scale} model; it can be scored at "
                                 f"x{model.scale} or below")
        return args.scale
    if len(scales) > 1:
        raise InputError(f"the models have different scales ({', '.join(f'x{s}' for s in sorted(scales))}); "
                         "give --scale to score them all at the smallest")
    return scales.pop() if scales else 4


def _dataset(args: argparse.Namespace, scale: int):
    from ..data.datasets import find_clips, validate_clips

    layout = "reds" if args.layout == "synth" else args.layout
    split = args.split or ("val" if args.layout == "reds" else "all")
    clips = find_clips(layout, args.data, hr_root=args.hr_root, split=split, scale=scale)
    if args.max_clips:
        clips = clips[:args.max_clips]
    validate_clips(clips, scale, min_frames=1)
    return clips


def _write_json(path: Path, payload: dict) -> None:
    write_atomically(path, json.dumps(_no_nan(payload), indent=2, allow_nan=False))


def _no_nan(o):
    """Floats JSON has no literal for: NaN (a metric with nothing to average, e.g. tOF of a 1-frame
    clip) as null, and an infinite PSNR (the output equals the ground truth) as the string "inf"."""
    if isinstance(o, dict):
        return {k: _no_nan(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_no_nan(v) for v in o]
    if isinstance(o, float) and o != o:
        return None
    if isinstance(o, float) and o in (float("inf"), float("-inf")):
        return "inf" if o > 0 else "-inf"
    return o
