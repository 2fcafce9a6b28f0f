"""The authors' FMA-Net checkpoint files: reading and writing them.

The authors' training writes ``model_D_best.pt`` and ``model_R_best.pt`` (torch pickles that
also carry optimizer and scheduler state). They are read with ``torch.load(weights_only=True)``
so no arbitrary object is ever unpickled, and the whole config is read off the tensor names
and shapes. Registered with ``register_release_format``, so ``vsrdb.load_checkpoint`` reads
such a folder like one of ours.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import Tensor

from ..errors import CheckpointError
from ..files import save_torch_atomically
from .fmanet import FMANet, FMANetConfig
from .registry import register_release_format
from .weights import WeightsMeta, attach_meta, load_state_strict

__all__ = ["OFFICIAL_D", "OFFICIAL_R", "convert_official_state_dict", "export_official_state_dicts",
           "save_official_checkpoint", "infer_official_config", "load_release", "is_release_folder"]

OFFICIAL_D = "model_D_best.pt"
OFFICIAL_R = "model_R_best.pt"

# Official module names -> ours, applied in order to every key.
_SHARED_RENAMES = [
    (r"(RDBs\.\d+|\.rdb|\.rdb_KD)\.conv\.", r"\1.fuse."),  # RDB's 1x1 fusion conv
    (r"\.layer\.(\d+)\.", r".layers.\1."),
    (r"^feature_extractor\.2\.RDBs\.", "feature_extractor.2.rdbs."),
    (r"^feature_extractor\.2\.conv\.0\.", "feature_extractor.2.fuse."),
    (r"^feature_extractor\.2\.conv\.1\.", "feature_extractor.2.conv."),
    (r"^FRMA_blocks\.", "frma_blocks."),
    (r"\.rdb_KD\.", ".rdb_kd."),
    (r"\.conv_KD\.", ".conv_kd."),
    (r"\.conv_Fw\.", ".conv_fw."),
    (r"\.multi_attn_block\.", ".attn_blocks."),
    (r"\.(norm\d)\.body\.", r".\1."),
]
_NET_D_RENAMES = [(r"^f_conv\.", "flow_head."), (r"^d_conv\.", "kernel_head."), (r"^a_conv\.", "anchor_head.")]
_NET_R_RENAMES = [
    (r"^f_conv1\.", "flow_in."), (r"^d_conv\.", "kd_embed."), (r"^res_conv1\.", "high_freq.conv_in."),
    (r"^upsample\.", "high_freq."), (r"^res_conv2\.", "high_freq.conv_out."), (r"^r_conv\.", "kernel_head."),
    (r"^f_conv2\.", "pre_flow_head."), (r"^f_conv3\.", "flow_head."), (r"^a_conv\.", "anchor_head."),
]


def convert_official_state_dict(state_d: Mapping[str, Tensor],
                                state_r: Mapping[str, Tensor] | None = None) -> dict[str, Tensor]:
    """Rename the release's NetD (and NetR) state dicts into one ``FMANet`` state dict."""
    out: dict[str, Tensor] = {}
    for prefix, state, renames in (("net_d.", state_d, _NET_D_RENAMES), ("net_r.", state_r, _NET_R_RENAMES)):
        if state is None:
            continue
        for key, value in state.items():
            key = key.removeprefix("module.")  # saved from DataParallel
            for pattern, repl in _SHARED_RENAMES + renames:
                key = re.sub(pattern, repl, key)
            out[prefix + key] = value
    return out


# Ours -> official, the inverse of the tables above (order matters: "conv." becomes
# "conv.1." before "fuse." becomes "conv.0.").
_SHARED_INVERSE = [
    (r"^frma_blocks\.", "FRMA_blocks."),
    (r"\.rdb_kd\.", ".rdb_KD."),
    (r"\.conv_kd\.", ".conv_KD."),
    (r"\.conv_fw\.", ".conv_Fw."),
    (r"\.attn_blocks\.", ".multi_attn_block."),
    (r"\.(norm\d)\.(weight|bias)$", r".\1.body.\2"),
    (r"^feature_extractor\.2\.conv\.", "feature_extractor.2.conv.1."),
    (r"^feature_extractor\.2\.fuse\.", "feature_extractor.2.conv.0."),
    (r"^feature_extractor\.2\.rdbs\.", "feature_extractor.2.RDBs."),
    (r"\.layers\.(\d+)\.", r".layer.\1."),
    (r"(RDBs\.\d+|\.rdb|\.rdb_KD)\.fuse\.", r"\1.conv."),
]


def _invert(renames: list[tuple[str, str]]) -> list[tuple[str, str]]:
    # Longest first, so "high_freq.conv_out." is not taken by "high_freq.".
    pairs = sorted(renames, key=lambda r: -len(r[1]))
    return [("^" + re.escape(new), old.lstrip("^").replace("\\", "")) for old, new in pairs]


def export_official_state_dicts(model: FMANet) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Our FMANet state dict -> the release's (NetD, NetR) state dicts (NetR None at stage 1)."""
    state = model.state_dict()
    result: list[dict[str, Any] | None] = []
    for prefix, renames in (("net_d.", _NET_D_RENAMES), ("net_r.", _NET_R_RENAMES)):
        part: dict[str, Any] = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
            for pattern, repl in _invert(renames) + _SHARED_INVERSE:
                key = re.sub(pattern, repl, key)
            part[key] = value
        result.append(part or None)
    return result[0] or {}, result[1]


def save_official_checkpoint(model: FMANet, folder: str | os.PathLike, *, epoch: int = 0) -> Path:
    """Write ``model_D_best.pt`` (+ ``model_R_best.pt``) as the authors' training does.

    Optimizer and scheduler entries are fresh Adam / MultiStepLR states, so the files have
    the same keys as the release's; the weights are what matters.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state_d, state_r = export_official_state_dicts(model)
    for tag, state, name in (("D", state_d, OFFICIAL_D), ("R", state_r, OFFICIAL_R)):
        if state is None:
            continue
        params = [torch.nn.Parameter(v.clone()) for v in state.values()]
        opt = torch.optim.Adam(params, lr=2e-4)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[70, 85, 95], gamma=0.5)
        blob = {"epoch": epoch, f"model_{tag}_state_dict": state, f"optimizer_{tag}_state_dict": opt.state_dict(),
                f"scheduler_{tag}_state_dict": sched.state_dict()}
        save_torch_atomically(blob, folder / name)
    return folder


def _count(state: Mapping[str, Tensor], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in state if (m := rx.match(k))})


def infer_official_config(state_d: Mapping[str, Tensor], state_r: Mapping[str, Tensor] | None = None,
                          source: str = "checkpoint") -> FMANetConfig:
    """Read every FMANetConfig value off the release's tensor names and shapes."""

    def get(name: str) -> Tensor:
        if name not in state_d:
            raise CheckpointError(f"{source}: tensor {name!r} is missing; not an FMA-Net NetD state dict?")
        return state_d[name]

    first = get("feature_extractor.0.weight")  # [dim, in, 1, 3, 3]
    dim, in_channels = first.shape[:2]
    growth = get("feature_extractor.2.RDBs.0.layer.0.conv.weight").shape[0]
    num_flow3 = get("FRMA_blocks.0.conv_f.0.weight").shape[0]
    num_seq = get("FRMA_blocks.0.conv_Fw.weight").shape[1] // dim  # first block: dim*T -> dim
    heads = get("FRMA_blocks.0.multi_attn_block.0.co_attn.temperature").shape[0]
    hidden = get("FRMA_blocks.0.multi_attn_block.0.ffn1.project_in.weight").shape[0] // 2
    kd2 = get("d_conv.2.weight").shape[0]
    ds_kernel = int(round(kd2 ** 0.5))
    if ds_kernel * ds_kernel != kd2:
        raise CheckpointError(f"{source}: d_conv.2.weight has {kd2} outputs, not a square kernel size")
    # The release's feed-forward width is int(dim * factor); pick the factor it was made with
    # (2.66 in the release) when it fits, else one that reproduces the width.
    candidates = [2.66, round(hidden / dim, 2), hidden / dim, (hidden + 0.5) / dim]
    factor = next(f for f in candidates if int(dim * f) == hidden)
    scale = 4  # the released tail is two x2 pixel shuffles
    us_kernel = 5
    if state_r is not None:
        if "r_conv.2.weight" not in state_r:
            raise CheckpointError(f"{source}: tensor 'r_conv.2.weight' is missing from NetR")
        kr2 = state_r["r_conv.2.weight"].shape[0] // (scale * scale)
        us_kernel = int(round(kr2 ** 0.5))
        if us_kernel * us_kernel != kr2:
            raise CheckpointError(f"{source}: r_conv.2.weight has {kr2 * scale * scale} outputs, "
                                  f"not {scale}^2 times a square kernel size")
    try:
        return FMANetConfig(
            in_channels=int(in_channels), dim=int(dim), ds_kernel_size=ds_kernel, us_kernel_size=us_kernel,
            num_rdb=_count(state_d, r"feature_extractor\.2\.RDBs\.(\d+)\."),
            growth_rate=int(growth),
            num_dense_layer=_count(state_d, r"feature_extractor\.2\.RDBs\.0\.layer\.(\d+)\."),
            num_flow=int(num_flow3) // 3,
            num_frma=_count(state_d, r"FRMA_blocks\.(\d+)\."),
            num_transformer_block=_count(state_d, r"FRMA_blocks\.0\.multi_attn_block\.(\d+)\."),
            num_heads=int(heads),
            layernorm_type="WithBias" if "FRMA_blocks.0.multi_attn_block.0.norm1.body.bias" in state_d else "BiasFree",
            ffn_expansion_factor=factor,
            bias="feature_extractor.0.bias" in state_d,
            scale=scale, num_seq=int(num_seq), stage=2 if state_r is not None else 1)
    except ValueError as e:
        raise CheckpointError(f"{source}: inferred an impossible config: {e}") from None


def _load_reason(e: Exception) -> str:
    """torch.load's failure in a few words. Its own text advises ``weights_only=False``, which
    vsrdb never does (it would run code from the file), so that advice is not repeated."""
    text = str(e)
    if "Weights only load failed" in text:
        return "it holds Python objects other than tensors, which vsrdb does not unpickle; the file is damaged " \
               "or not a checkpoint"
    if "zip archive" in text or "central directory" in text:
        return "not a torch zip archive: damaged, cut short or another kind of file"
    first = text.split(". ")[0].splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _read_official(path: Path, key: str) -> dict[str, Tensor]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refusals, truncation, not a zip: all one message
        raise CheckpointError(f"{path}: cannot read as a weights-only torch checkpoint ({_load_reason(e)})") from None
    if isinstance(blob, dict) and key in blob:
        state = blob[key]
    elif isinstance(blob, dict) and all(isinstance(v, Tensor) for v in blob.values()):
        state = blob  # a bare state dict
    else:
        raise CheckpointError(f"{path}: no {key!r} in it (keys: {', '.join(map(str, list(blob)[:6]))})")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def load_release(folder: Path) -> FMANet:
    d_path, r_path = folder / OFFICIAL_D, folder / OFFICIAL_R
    state_d = _read_official(d_path, "model_D_state_dict")
    state_r = _read_official(r_path, "model_R_state_dict") if r_path.exists() else None
    source = f"{d_path}" + (f" + {r_path.name}" if state_r is not None else "")
    config = infer_official_config(state_d, state_r, source)
    model = FMANet(config)
    model.preset = "fmanet"
    load_state_strict(model, convert_official_state_dict(state_d, state_r), source)
    meta = WeightsMeta(channel_order="BGR", source=f"FMA-Net authors' checkpoint ({folder})",
                       license="see the FMA-Net authors' release (research use)",
                       notes="trained on frames read with OpenCV imread: BGR in, BGR out")
    return attach_meta(model, meta)


def is_release_folder(folder: Path) -> bool:
    """A folder with the authors' NetD file (NetR alone is an error: it cannot run without NetD)."""
    if (folder / OFFICIAL_R).exists() and not (folder / OFFICIAL_D).exists():
        raise CheckpointError(f"{folder}: has {OFFICIAL_R} but no {OFFICIAL_D}; NetR cannot run without NetD")
    return (folder / OFFICIAL_D).exists()


register_release_format("fmanet-authors", is_release_folder, load_release)
