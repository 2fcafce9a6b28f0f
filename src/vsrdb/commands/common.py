"""Flags several commands share, defined once."""

from __future__ import annotations

import argparse

from ..precision import PRECISIONS

__all__ = ["add_precision_argument", "add_device_argument", "add_threads_argument", "add_output_flags",
           "add_weights_argument", "positive_int", "quiet_stdout"]


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision``: restore, evaluate and demo."""
    parser.add_argument("--precision", default="auto", type=str.lower, choices=PRECISIONS,
                        help="numeric precision: auto (bf16 on CPUs with native bf16 and on GPUs, else fp32), "
                             "fp32 (the release's numbers), bf16, fp16 (GPU)")


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", default="auto", help="auto (CUDA, else MPS, else CPU), cpu, cuda, cuda:N or mps")


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=positive_int, help="CPU threads (default: all cores)")


def add_output_flags(parser: argparse.ArgumentParser, what: str = "the output") -> None:
    """``--overwrite`` and ``--quiet``."""
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def add_weights_argument(parser: argparse.ArgumentParser, default: str | None = None) -> None:
    parser.add_argument("--weights", default=default,
                        help="checkpoint folder (ours, or the authors' model_D/R_best.pt), or 'builtin' "
                             "(the model shipped with vsrdb)" + (" (default)" if default == "builtin" else ""))


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be 1 or more")
    return value


def add_deflicker_argument(parser: argparse.ArgumentParser) -> None:
    """``--deflicker [SHARE]`` (restore, evaluate): restore/deflicker.py's blend."""
    parser.add_argument("--deflicker", type=_share, nargs="?", const=0.5, default=None, metavar="SHARE",
                        help="blend each output frame with the previous one, warped onto it by optical flow, "
                             "where they match (up to SHARE of it; 0.5 without a value): less flicker on "
                             "compressed footage; frames are then restored in order, one process per file "
                             "(docs/restore.md)")


def _share(text: str) -> float:
    from ..restore.deflicker import parse_share

    try:
        return parse_share(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{text} {e}") from None


def quiet_stdout() -> None:
    """Point standard output at /dev/null: after its reader has gone, Python's own flush at exit
    would otherwise print a BrokenPipeError of its own."""
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
