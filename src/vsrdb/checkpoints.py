"""Save and load models: our folder format, and other projects' formats their families register.

Our format is a folder holding ``model.safetensors`` (weights) and ``config.json`` (preset
name, full config, weights metadata). Other formats (the authors' FMA-Net training files,
``models/fmanet_release.py``) are read by the family that owns them, through
``register_release_format``; none of them unpickles arbitrary objects.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, fields
from pathlib import Path
from typing import Sequence

import torch

from .errors import CheckpointError, ConfigError
from .files import replace_atomically
from .models.family import RestorationModel
from .models.registry import build, release_formats
from .models.weights import WeightsMeta, attach_meta, load_state_strict, meta_of

__all__ = ["WeightsMeta", "save_checkpoint", "load_checkpoint", "builtin_weights", "CheckpointError",
           "average_checkpoints", "BUILTIN", "BUILTIN_MODELS", "NATIVE_SCALES", "AUTO_SCALES", "native_scales"]

FORMAT_NAME = "vsrdb"
FORMAT_VERSION = 1
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


# --------------------------------------------------------------------------------------
# Our format


def save_checkpoint(model: RestorationModel, path: str | os.PathLike, *, overwrite: bool = False,
                    meta: WeightsMeta | None = None) -> Path:
    """Write ``path/`` with ``model.safetensors`` and ``config.json`` for any registry model.

    The folder is written under a temporary name and moved into place, so an interrupted
    save never leaves a half-written checkpoint under ``path``.
    """
    from safetensors.torch import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path}: exists; pass overwrite=True to replace it")
    meta = meta or meta_of(model)
    record = {"format": FORMAT_NAME, "version": FORMAT_VERSION, "model": model.preset,
              "config": asdict(model.config), "meta": asdict(meta)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": FORMAT_NAME})
        (tmp / CONFIG_FILE).write_text(json.dumps(record, indent=2) + "\n")
        replace_atomically(tmp, path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def _load_ours(folder: Path) -> RestorationModel:
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
    except ConfigError as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    weights = folder / WEIGHTS_FILE
    try:
        state = load_file(str(weights))
    except (OSError, SafetensorError) as e:
        raise CheckpointError(f"{weights}: cannot read weights ({e})") from None
    load_state_strict(model, state, weights)
    meta_fields = {f.name for f in fields(WeightsMeta)}
    meta = WeightsMeta(**{k: v for k, v in record.get("meta", {}).items() if k in meta_fields})
    return attach_meta(model, meta)


# --------------------------------------------------------------------------------------


BUILTIN = "builtin"
# The models that ship inside the package: name (as --weights takes it) -> what it is for.
# Each lives in vsrdb/weights/NAME; docs/builtin-model.md has their recipes and scores.
BUILTIN_MODELS = {
    "builtin": "real footage, as people's files are: through a video encoder (H.264, H.265, VP9, MPEG-4), "
               "often noisy, or clean; the default of restore, demo and serve",
    "builtin-clean": "input degraded only the REDS way (blur and x4 bicubic, never encoded): benchmark-style "
                     "data; the default before version 3",
    "builtin-x2": "native x2 for real footage (restore --scale 2): about 3x faster than builtin at --outscale 2, "
                  "0.4 dB lower on held-out clips",
}


# A built-in model's weights at each native scale, by built-in name (``--scale`` picks one).
NATIVE_SCALES: dict[str, dict[int, str]] = {BUILTIN: {4: BUILTIN, 2: "builtin-x2", 1: "builtin-x1"}}
# The native scales restore picks by itself for --outscale/--size: the smallest that reaches the
# size asked for, among those whose weights restore held-out clips at least as well as the larger
# model shrunk (docs/builtin-model.md, "Native x2"). builtin-x2 version 1 does not (0.4 dB lower,
# 3x faster): it runs when asked for with --scale 2.
AUTO_SCALES: dict[str, set[int]] = {BUILTIN: {4}}


def native_scales(weights: str, *, auto: bool = False) -> dict[int, str]:
    """The native scales a ``--weights`` value offers -> the built-in model of each, for the
    built-in models that ship at several scales (only those in this installation; with
    ``auto``, only those restore picks by itself); ``{}`` for anything else (one model: its
    own scale)."""
    if Path(weights).exists():  # a folder of that name in the current directory is the user's
        return {}
    return {scale: name for scale, name in NATIVE_SCALES.get(weights, {}).items()
            if builtin_weights(name) is not None and (not auto or scale in AUTO_SCALES.get(weights, ()))}


def builtin_weights(name: str = BUILTIN) -> str | None:
    """The folder of a model that ships inside the package, or None in a checkout without it."""
    from importlib import resources

    if name not in BUILTIN_MODELS:
        return None
    try:
        folder = resources.files("vsrdb") / "weights" / name
    except (ModuleNotFoundError, FileNotFoundError):
        return None
    return str(folder) if folder.is_dir() and (folder / CONFIG_FILE).is_file() else None


def load_checkpoint(path: str | os.PathLike, *, device: str | torch.device = "cpu") -> RestorationModel:
    """Load a model from our folder format or the authors' checkpoint files.

    Args:
        path: a folder holding ``config.json`` + ``model.safetensors`` (ours), or
            ``model_D_best.pt`` [+ ``model_R_best.pt``] (the authors'; D alone gives a stage-1
            model); a path to one of those files means its folder; ``"builtin"`` or another
            name in ``BUILTIN_MODELS``: a model that ships with vsrdb.
    Returns:
        The model in eval mode; ``model.channel_order`` ("RGB" or "BGR") is the colour order
        it expects, ``model.weights_meta`` the rest of what is known about the weights.
    Raises:
        CheckpointError (a ValueError) naming the file and the problem.
    """
    if str(path) in BUILTIN_MODELS and not Path(path).exists():
        found = builtin_weights(str(path))
        if found is None:
            raise CheckpointError(f"no built-in model {path!r} ships with this installation (vsrdb/weights/{path} "
                                  "is missing); pass --weights PATH, a checkpoint folder")
        path = found
    path = Path(path)
    if path.is_file():  # a file of a checkpoint folder means the folder
        path = path.parent
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if (path / CONFIG_FILE).exists():
        return _check_finite(_load_ours(path), path).to(device).eval()
    for detect, load in release_formats().values():
        if detect(path):
            return _check_finite(load(path), path).to(device).eval()
    raise CheckpointError(f"{path}: no {CONFIG_FILE} (vsrdb format) in it, nor a format a model family reads "
                          "(the authors' FMA-Net: model_D_best.pt [+ model_R_best.pt])")


def _check_finite(model: RestorationModel, path: Path) -> RestorationModel:
    bad = [name for name, p in model.state_dict().items() if p.is_floating_point() and not torch.isfinite(p).all()]
    if bad:
        raise CheckpointError(f"{path}: the weights hold NaN or Inf values ({len(bad)} tensors, e.g. {bad[0]}); "
                              "the file is damaged or came from a diverged training run")
    return model


def average_checkpoints(paths: Sequence[str | os.PathLike]) -> RestorationModel:
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
        if m.preset != first.preset or asdict(m.config) != asdict(first.config):
            raise CheckpointError(f"{p}: a different architecture from {paths[0]}; only like models average")
    states = [m.state_dict() for m in models]
    mean = {k: torch.stack([s[k].float() for s in states]).mean(0).to(v.dtype) if v.is_floating_point() else v
            for k, v in states[0].items()}
    first.load_state_dict(mean)
    return first
