"""``vsrdb export``: a model's inference as an ONNX graph, for ONNX Runtime and TensorRT.

The graph is the window restoration the Restorer runs per tile: input ``lr``
``[B, 3, T, H, W]`` float RGB in [0, 1], output ``output`` ``[B, 3, sH, sW]`` (the centre
frame), with batch, height and width dynamic. It is the same computation as
``model.restore`` (the lean inference path), so its numbers are ours; a model whose weights
expect BGR (the authors') gets the channel flips inside the graph, so the graph always
takes and gives RGB. Sliding windows over a video, tiling and blending stay with the caller
(``docs/deploy.md`` shows the loop).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from .data.video import InputError, replace_atomically

__all__ = ["export_onnx", "add_subcommand"]


class _WindowRestore(nn.Module):
    """``lr [B, 3, T, H, W]`` RGB -> ``[B, 3, sH, sW]`` RGB through ``model.restore``."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.bgr = getattr(model, "channel_order", "RGB") == "BGR"

    def forward(self, lr: Tensor) -> Tensor:
        if self.bgr:
            lr = lr.flip(1)
        out = self.model.restore(lr)
        return out.flip(1) if self.bgr else out


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = 18, example: tuple[int, int] = (32, 48),
                overwrite: bool = False) -> Path:
    """Write ``model``'s window restoration to ``path`` as ONNX (fp32, CPU export).

    ``example`` is the (H, W) traced with; H and W stay dynamic in the graph. The file is
    written under a temporary name and moved into place. Raises InputError naming ``path``.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: the ONNX file must end in .onnx")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; pass --overwrite to replace it")
    if not path.absolute().parent.is_dir():
        raise InputError(f"{path}: its folder {path.absolute().parent} does not exist")
    if getattr(model, "recurrent", False):
        raise InputError(f"{path}: {type(model).__name__} is recurrent (it carries its last output from frame to "
                         "frame); only window models export")
    try:
        import onnx  # noqa: F401  (the exporter needs it; say so plainly if missing)
        import onnxscript  # noqa: F401
    except ImportError:
        raise InputError("ONNX export needs the onnx and onnxscript packages: pip install 'vsrdb[onnx]'") from None
    wrapper = _WindowRestore(model.float().cpu().eval()).eval()
    t = model.config.num_seq
    h, w = example
    # Batch 2 in the example: torch.export specialises dimensions of size 1.
    lr = torch.rand(2, 3, t, h, w, generator=torch.Generator().manual_seed(0))
    batch, height, width = torch.export.Dim("batch", max=64), torch.export.Dim("height"), torch.export.Dim("width")
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with torch.no_grad():
            program = torch.onnx.export(wrapper, (lr,), dynamo=True, opset_version=opset, input_names=["lr"],
                                        output_names=["output"],
                                        dynamic_shapes={"lr": {0: batch, 3: height, 4: width}}, verbose=False)
        program.save(str(tmp))
        replace_atomically(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a model's inference as ONNX (for ONNX Runtime, TensorRT)",
                       description="Export the window restoration (input lr [B, 3, T, H, W] RGB in [0, 1], output "
                                   "[B, 3, 4H, 4W]) with dynamic batch, height and width.")
    p.add_argument("--weights", default="builtin", help="checkpoint folder, the authors' folder, or builtin (default)")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default 18)")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists")
    p.set_defaults(func=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from .restore.command import load_weights

    model = load_weights(args.weights)
    out = export_onnx(model, args.onnx, opset=args.opset, overwrite=args.overwrite)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB): input lr [B, 3, {model.config.num_seq}, H, W] "
          f"RGB in [0, 1] -> output [B, 3, {model.config.scale}H, {model.config.scale}W]")
    return 0
