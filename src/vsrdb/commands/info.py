"""``vsrdb info``: the presets, or what one preset or checkpoint is."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from ..checkpoints import BUILTIN_MODELS, NATIVE_SCALES, builtin_weights, load_checkpoint, native_scales
from ..models import build, list_models
from ..ops import kernels

__all__ = ["add_subcommand"]


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("info", help="list model presets, or describe one preset or checkpoint")
    p.add_argument("model", nargs="?", help="a preset name or a checkpoint folder")
    p.add_argument("--run", action="store_true",
                   help="also restore a generated 32x32 window with it and print the time")
    p.set_defaults(func=_cmd_info)


def _cmd_info(args: argparse.Namespace) -> int:
    if args.model is None:
        for name in list_models():
            model = build(name)
            print(f"{name:12s} {sum(p.numel() for p in model.parameters()):>10,d} parameters  "
                  f"{model.frames.mode} of {model.frames.length}")
        print("\nbuilt-in models (--weights NAME):")
        for name, purpose in BUILTIN_MODELS.items():
            folder = builtin_weights(name)
            if folder is None:
                print(f"{name:14s} (not in this installation)  {purpose}")
                continue
            meta = json.loads((Path(folder) / "config.json").read_text())
            size = (Path(folder) / "model.safetensors").stat().st_size / 1e6
            print(f"{name:14s} {meta['model']} x{meta['config'].get('scale', 4)}, {size:.1f} MB: {purpose}")
        for name in NATIVE_SCALES:
            offered, auto = native_scales(name), native_scales(name, auto=True)
            if len(offered) > 1:
                print(f"\n{name} ships at {', '.join(f'x{s} ({offered[s]})' for s in sorted(offered, reverse=True))};"
                      f" restore --outscale/--size run the smallest of {', '.join(f'x{s}' for s in sorted(auto))} "
                      "that reaches the size asked for (docs/restore.md); --scale picks any")
        print(f"\nvsrdb's CPU kernels (docs/restore.md): {kernels.describe()}")
        return 0
    looks_like_path = "/" in args.model or Path(args.model).exists() or args.model in BUILTIN_MODELS
    model = load_checkpoint(args.model) if looks_like_path else build(args.model)
    n = sum(p.numel() for p in model.parameters())
    print(f"model: {model.preset}  parameters: {n:,d}  channel order: {model.channel_order}  "
          f"frames: {model.frames.mode} of {model.frames.length}  scale: x{model.scale}")
    meta = model.weights_meta
    if meta is not None and (meta.notes or meta.license != "unspecified"):
        print(f"weights: {meta.notes or meta.source} (licence: {meta.license})")
    for key, value in vars(model.config).items():
        print(f"  {key}: {value}")
    if args.run:
        gen = torch.Generator().manual_seed(0)
        lr = torch.rand(1, 3, model.frames.scored_window, 32, 32, generator=gen)
        inputs = {}
        if model.input_flow is not None:
            from ..data.flow import initial_flows

            inputs["flows"] = initial_flows(lr, model.input_flow)
        start = time.perf_counter()
        with torch.no_grad():
            out = model.restore(lr, flows=inputs.get("flows")) if model.can_restore else model(lr)["anchor_d"]
        print(f"ran {tuple(lr.shape)} -> {tuple(out.shape)} in {time.perf_counter() - start:.2f} s")
    return 0
