"""``vsrdb export``: a model's window restoration as ONNX."""

from __future__ import annotations

import argparse

from ..checkpoints import load_checkpoint
from ..export import export_onnx
from .common import add_weights_argument

__all__ = ["add_subcommand"]


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model's inference as ONNX (for ONNX Runtime, TensorRT)",
                       description="Export the window restoration (input lr [B, 3, T, H, W] RGB in [0, 1], output "
                                   "[B, 3, sH, sW], s the model's scale) with dynamic batch, height and width.")
    add_weights_argument(p, default="builtin")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--no-optimize", action="store_true",
                   help="skip onnxscript's graph optimisation (constant folding, fusions): about 2/3 of the export "
                        "time; ONNX Runtime and TensorRT optimise the graph when they load it")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    model = load_checkpoint(args.weights)
    out = export_onnx(model, args.onnx, opset=args.opset, overwrite=args.overwrite,
                      optimize=not args.no_optimize)
    t, s = model.frames.length, model.scale
    flows = f" and flows [B, {t}, 2, H, W] ({model.input_flow} flow)" if model.input_flow else ""
    size = "H, W" if s == 1 else f"{s}H, {s}W"
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): input lr [B, 3, {t}, H, W] RGB in [0, 1]{flows} "
          f"-> output [B, 3, {size}]")
    return 0
