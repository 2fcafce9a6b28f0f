"""The ``vsrdb`` command. Subcommands live in their own modules; this file only wires them."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__


class CLIError(Exception):
    """A user-facing failure: printed as one line, exit status 2."""


def _cmd_info(args: argparse.Namespace) -> int:
    import torch

    from .checkpoints import load_checkpoint
    from .models import build, list_models

    if args.model is None:
        for name in list_models():
            model = build(name)
            print(f"{name:12s} {sum(p.numel() for p in model.parameters()):>10,d} parameters")
        return 0
    model = load_checkpoint(args.model) if _looks_like_path(args.model) else build(args.model)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {getattr(model, 'preset', type(model).__name__)}  parameters: {n:,d}  "
          f"channel order: {getattr(model, 'channel_order', 'RGB')}")
    for key, value in vars(model.config).items():
        print(f"  {key}: {value}")
    if args.run:
        import time

        cfg = model.config
        gen = torch.Generator().manual_seed(0)
        lr = torch.rand(1, cfg.in_channels, cfg.num_seq, 32, 32, generator=gen)
        start = time.perf_counter()
        with torch.no_grad():
            out = model(lr)
        key = "output" if "output" in out else "anchor_d"
        print(f"ran {tuple(lr.shape)} -> {key} {tuple(out[key].shape)} in {time.perf_counter() - start:.2f} s")
    return 0


def _looks_like_path(text: str) -> bool:
    from pathlib import Path

    return "/" in text or Path(text).exists()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vsrdb", description="Joint video super-resolution and deblurring.")
    parser.add_argument("--version", action="version", version=f"vsrdb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("info", help="list model presets, or describe one preset or checkpoint")
    info.add_argument("model", nargs="?", help="a preset name or a checkpoint folder")
    info.add_argument("--run", action="store_true",
                      help="also restore a generated 3-frame 32x32 window with it and print the time")
    info.set_defaults(func=_cmd_info)
    for register in _subcommand_modules():
        register(sub)
    return parser


def _subcommand_modules():
    # Each module adds its own subparser; imported lazily so `vsrdb --help` stays fast.
    import importlib

    found = []
    for name in ("restore.command", "data.synth", "train.command", "evaluate.command", "demo", "export"):
        try:
            found.append(importlib.import_module(f"vsrdb.{name}").add_subcommand)
        except ModuleNotFoundError as e:
            if e.name != f"vsrdb.{name}":
                raise
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except CLIError as e:
        print(f"vsrdb {args.command}: error: {e}", file=sys.stderr)
        return 2
    except ValueError as e:  # checkpoint and input errors already name the file and problem
        print(f"vsrdb {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"vsrdb {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
