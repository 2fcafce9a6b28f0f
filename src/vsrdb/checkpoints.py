"""Save and load models: our folder format, and the authors' FMA-Net training checkpoints.

Our format is a folder holding ``model.safetensors`` (weights) and ``config.json`` (preset
name, full config, weights metadata). The authors' training writes ``model_D_best.pt`` and
``model_R_best.pt`` (torch pickles that also carry optimizer and scheduler state); they are
read with ``torch.load(weights_only=True)`` so no arbitrary object is ever unpickled, and
the whole config is read off the tensor shapes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
import torch.nn as nn
from torch import Tensor

from .models.fmanet import FMANet, FMANetConfig
from .models.registry import build, model_family

__all__ = ["WeightsMeta", "save_checkpoint", "load_checkpoint", "builtin_weights", "CheckpointError",
           "infer_official_config", "convert_official_state_dict", "export_official_state_dicts",
           "save_official_checkpoint"]

FORMAT_NAME = "vsrdb"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
OFFICIAL_D = "model_D_best.pt"
OFFICIAL_R = "model_R_best.pt"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read: names the file and the problem."""


@dataclass
class WeightsMeta:
    """What a user must know about a set of weights (timm's pretrained-config idea)."""

    channel_order: str = "RGB"
    source: str = "vsrdb"
    license: str = "unspecified"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _meta_of(model: nn.Module) -> WeightsMeta:
    meta = getattr(model, "weights_meta", None)
    if isinstance(meta, WeightsMeta):
        return meta
    return WeightsMeta(channel_order=getattr(model, "channel_order", "RGB"))


def _attach_meta(model: nn.Module, meta: WeightsMeta) -> nn.Module:
    model.weights_meta = meta
    model.channel_order = meta.channel_order
    return model


# --------------------------------------------------------------------------------------
# Our format


def save_checkpoint(model: nn.Module, path: str | os.PathLike, *, overwrite: bool = False,
                    meta: WeightsMeta | None = None) -> Path:
    """Write ``path/`` with ``model.safetensors`` and ``config.json`` for any registry model.

    The folder is written under a temporary name and moved into place, so an interrupted
    save never leaves a half-written checkpoint under ``path``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    config = getattr(model, "config", None)
    if config is None:
        raise TypeError(f"{type(model).__name__} has no .config dataclass; build it with vsrdb.models.build")
    meta = meta or _meta_of(model)
    record = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": model_family(model),
              "config": asdict(config), "meta": asdict(meta)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        (tmp / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _load_ours(folder: Path) -> nn.Module:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    cfg_path = folder / CONFIG_FILE
    try:
        record = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{cfg_path}: cannot read config ({e})") from None
    if record.get("format") != FORMAT_NAME or "model" not in record or "config" not in record:
        raise CheckpointError(f"{cfg_path}: not a vsrdb checkpoint config (needs format, model, config)")
    try:
        model = build(record["model"], **record["config"])
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    weights = folder / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{weights}: cannot read weights ({e})") from None
    _load_state_strict(model, state, weights)
    meta_fields = {f.name for f in fields(WeightsMeta)}
    meta = WeightsMeta(**{k: v for k, v in record.get("meta", {}).items() if k in meta_fields})
    return _attach_meta(model, meta)


def _load_state_strict(model: nn.Module, state: Mapping[str, Tensor], source: Path | str) -> None:
    """Load every tensor, or fail naming the first missing, unexpected or misshaped one."""
    expected = model.state_dict()
    for name, ref in expected.items():
        if name not in state:
            raise CheckpointError(f"{source}: tensor {name!r} is missing (expected shape {tuple(ref.shape)})")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                                  f"expected {tuple(ref.shape)}")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor {unexpected[0]!r}"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    model.load_state_dict(dict(state), strict=True)


# --------------------------------------------------------------------------------------
# The authors' format

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
    result = []
    for prefix, renames in (("net_d.", _NET_D_RENAMES), ("net_r.", _NET_R_RENAMES)):
        part = {}
        for key, value in state.items():
            if not key.startswith(prefix):
                continue
            key = key[len(prefix):]
            for pattern, repl in _invert(renames) + _SHARED_INVERSE:
                key = re.sub(pattern, repl, key)
            part[key] = value
        result.append(part or None)
    return result[0], result[1]


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
        tmp = folder / f".{name}.tmp"
        torch.save(blob, tmp)
        os.replace(tmp, folder / name)
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


def _read_official(path: Path, key: str) -> dict[str, Tensor]:
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # unpickling refusals, truncation, not a zip: all one message
        raise CheckpointError(f"{path}: cannot read as a weights-only torch checkpoint ({type(e).__name__}: "
                              f"{str(e).splitlines()[0] if str(e) else ''})") from None
    if isinstance(blob, dict) and key in blob:
        state = blob[key]
    elif isinstance(blob, dict) and all(isinstance(v, Tensor) for v in blob.values()):
        state = blob  # a bare state dict
    else:
        raise CheckpointError(f"{path}: no {key!r} in it (keys: {', '.join(map(str, list(blob)[:6]))})")
    return {k: v for k, v in state.items() if isinstance(v, Tensor)}


def _load_official(folder: Path) -> nn.Module:
    d_path, r_path = folder / OFFICIAL_D, folder / OFFICIAL_R
    state_d = _read_official(d_path, "model_D_state_dict")
    state_r = _read_official(r_path, "model_R_state_dict") if r_path.exists() else None
    source = f"{d_path}" + (f" + {r_path.name}" if state_r is not None else "")
    config = infer_official_config(state_d, state_r, source)
    model = FMANet(config)
    model.preset = "fmanet"
    _load_state_strict(model, convert_official_state_dict(state_d, state_r), source)
    meta = WeightsMeta(channel_order="BGR", source=f"FMA-Net authors' checkpoint ({folder})",
                       license="see the FMA-Net authors' release (research use)",
                       notes="trained on frames read with OpenCV imread: BGR in, BGR out")
    return _attach_meta(model, meta)


# --------------------------------------------------------------------------------------


BUILTIN = "builtin"


def builtin_weights() -> str | None:
    """The folder of the model that ships inside the package, or None in a checkout without it."""
    from importlib import resources

    try:
        folder = resources.files("vsrdb") / "weights" / "builtin"
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    return str(folder) if folder.is_dir() and (folder / CONFIG_FILE).is_file() else None


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> nn.Module:
    """Load a model from our folder format or the authors' checkpoint files.

    Args:
        path: a folder holding ``config.json`` + ``model.safetensors`` (ours), or
            ``model_D_best.pt`` [+ ``model_R_best.pt``] (the authors'; D alone gives a stage-1
            model); a path to one of those files means its folder; ``"builtin"``: the model
            that ships with vsrdb.
    Returns:
        The model in eval mode; ``model.channel_order`` ("RGB" or "BGR") is the colour order
        it expects, ``model.weights_meta`` the rest of what is known about the weights.
    Raises:
        CheckpointError (a ValueError) naming the file and the problem.
    """
    if str(path) == BUILTIN and not Path(path).exists():
        found = builtin_weights()
        if found is None:
            raise CheckpointError("no built-in model ships with this installation (vsrdb/weights/builtin is "
                                  "missing); pass --weights PATH, a checkpoint folder")
        path = found
    path = Path(path)
    if path.is_file() and path.name in (OFFICIAL_D, OFFICIAL_R, CONFIG_FILE, WEIGHTS_FILE):
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if not path.is_dir():
        raise CheckpointError(f"{path}: expected a checkpoint folder ({CONFIG_FILE} + {WEIGHTS_FILE}, "
                              f"or {OFFICIAL_D} [+ {OFFICIAL_R}])")
    if (path / CONFIG_FILE).exists():
        model = _load_ours(path)
    elif (path / OFFICIAL_D).exists():
        model = _load_official(path)
    elif (path / OFFICIAL_R).exists():
        raise CheckpointError(f"{path}: has {OFFICIAL_R} but no {OFFICIAL_D}; NetR cannot run without NetD")
    else:
        raise CheckpointError(f"{path}: no {CONFIG_FILE} (vsrdb format) or {OFFICIAL_D} (authors' format) in it")
    return model.to(device).eval()


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> nn.Module:
    """The element-wise mean of several checkpoints of one architecture ("model soup").

    Models fine-tuned from a shared starting point lie in one basin of the loss, so their
    average is usually at least as good as each, and it smooths out what one run over-fitted
    to its data (the built-in model averages its last two recipe steps; docs/builtin-model.md).

    Args:
        paths: two or more checkpoint folders (any format ``load_checkpoint`` reads) of the same
            model family and config.
    Returns:
        The first checkpoint's model, in eval mode, holding the averaged floating-point tensors
        (integer buffers are taken from the first).
    Raises:
        CheckpointError naming the checkpoint whose architecture differs from the first's.
    """
    if len(paths) < 2:
        raise CheckpointError("average_checkpoints: give at least two checkpoints")
    models = [load_checkpoint(p) for p in paths]
    first = models[0]
    for p, m in zip(paths[1:], models[1:]):
        if model_family(m) != model_family(first) or asdict(m.config) != asdict(first.config):
            raise CheckpointError(f"{p}: a different architecture from {paths[0]}; only like models average")
    states = [m.state_dict() for m in models]
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}
    first.load_state_dict(mean)
    return first
