"""``vsrdb demo``: the built-in model on a generated clip, scored and reported."""

from __future__ import annotations

import argparse

import torch

from ..demo import run_demo
from ..errors import InputError
from .common import add_output_flags, add_precision_argument, add_threads_argument

__all__ = ["add_subcommand"]


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="restore a generated blurry clip with the built-in model and report it",
                       description="No arguments needed: makes a blurry low-resolution clip from a procedural "
                                   "scene, restores it with the built-in model, prints PSNR/SSIM/tOF against "
                                   "bicubic and writes a side-by-side video and an HTML report.")
    p.add_argument("-o", "--output", help="folder to write (default: ./vsrdb-demo, or the next free vsrdb-demo-N)")
    p.add_argument("--frames", type=int, default=12, help="clip length (default 12)")
    p.add_argument("--weights", help="another checkpoint instead of the built-in model")
    add_threads_argument(p)
    add_output_flags(p, "--output")
    add_precision_argument(p)
    p.set_defaults(func=_cmd_demo)


def _cmd_demo(args: argparse.Namespace) -> int:
    if args.frames < 3:
        raise InputError(f"--frames {args.frames}: the demo needs at least 3 frames")
    if args.threads:
        torch.set_num_threads(args.threads)
    run_demo(args.output, overwrite=args.overwrite, frames=args.frames, progress=not args.quiet,
             weights=args.weights, precision=args.precision)
    return 0
