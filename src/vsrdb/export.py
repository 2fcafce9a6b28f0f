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

import os
from pathlib import Path

import torch
import torch.nn as nn
from torch import Tensor

from .errors import InputError
from .files import replace_atomically
from .models.family import RestorationModel
from .ops.fused_conv import unfused

__all__ = ["export_onnx"]


class _WindowRestore(nn.Module):
    """``lr [B, 3, T, H, W]`` RGB (and the family's input flow ``[B, T, 2, H, W]``) ->
    ``[B, 3, sH, sW]`` RGB through ``model.restore``."""

    def __init__(self, model: RestorationModel) -> None:
        super().__init__()
        self.model = model
        self.bgr = model.channel_order == "BGR"

    def forward(self, lr: Tensor, flows: Tensor | None = None) -> Tensor:
        if self.bgr:
            lr = lr.flip(1)
        out = self.model.restore(lr) if flows is None else self.model.restore(lr, flows=flows)
        return out.flip(1) if self.bgr else out


def export_onnx(model: RestorationModel, path: str | os.PathLike, *, opset: int = 18,
                example: tuple[int, int] = (32, 48), overwrite: bool = False, optimize: bool = True) -> Path:
    """Write ``model``'s window restoration to ``path`` as ONNX (fp32, CPU export).

    ``example`` is the (H, W) traced with; H and W stay dynamic in the graph. The file is
    written under a temporary name and moved into place. Raises InputError naming ``path``.
    ``optimize=False`` skips onnxscript's graph rewriting (constant folding, pattern fusions): the
    export takes about two thirds of the time, and runtimes optimise a graph at load anyway.
    """
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise InputError(f"{path}: the ONNX file must end in .onnx")
    if path.exists() and not overwrite:
        raise InputError(f"{path}: exists; pass --overwrite to replace it")
    if not path.absolute().parent.is_dir():
        raise InputError(f"{path}: its folder {path.absolute().parent} does not exist")
    if model.frames.mode != "window":
        raise InputError(f"{path}: {model.preset} is {model.frames.mode} (it carries state from frame to frame); "
                         "only window models export")
    try:
        import onnx  # noqa: F401  (the exporter needs it; say so plainly if missing)
        import onnxscript  # noqa: F401
    except ImportError:
        raise InputError("ONNX export needs the onnx and onnxscript packages: pip install 'vsrdb[onnx]'") from None
    wrapper = _WindowRestore(model.float().cpu().eval()).eval()
    t = model.frames.length
    h, w = example
    # Batch 2 in the example: torch.export specialises dimensions of size 1.
    lr = torch.rand(2, 3, t, h, w, generator=torch.Generator().manual_seed(0))
    batch, height, width = torch.export.Dim("batch", max=64), torch.export.Dim("height"), torch.export.Dim("width")
    args: tuple[torch.Tensor, ...] = (lr,)
    names, shapes = ["lr"], {"lr": {0: batch, 3: height, 4: width}}
    if model.input_flow is not None:  # JFFRA: the estimator's flow is a second graph input
        args, names = (lr, torch.zeros(2, t, 2, h, w)), ["lr", "flows"]
        shapes["flows"] = {0: batch, 3: height, 4: width}
    tmp = path.with_name(f".{path.name}.partial")
    try:
        try:
            # unfused: the graph holds plain convolutions (oneDNN's fused CPU kernels are no ONNX ops)
            with torch.no_grad(), unfused():
                program = torch.onnx.export(wrapper, args, dynamo=True, opset_version=opset, input_names=names,
                                            output_names=["output"], dynamic_shapes=shapes, verbose=False,
                                            optimize=optimize)
        except Exception as e:  # torch.export's failures are long; the user needs the gist
            # Known: JFFRA's padded 8x8 window attention does not export with dynamic H and W
            # (torch 2.13: inconsistent derived dimensions).
            lines = [ln.strip() for ln in str(e).splitlines() if ln.strip().startswith("<class")]
            gist = lines[-1] if lines else type(e).__name__
            raise InputError(f"{path}: torch.export cannot export {model.preset} with dynamic height and width "
                             f"({gist})") from None
        if program is None:  # dynamo=True always returns a program; the signature allows None
            raise InputError(f"{path}: torch.onnx.export returned no program")
        program.save(str(tmp))
        replace_atomically(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
