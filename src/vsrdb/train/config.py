"""Training configuration: typed dataclasses, loaded from YAML at the edge.

A key that is not a field is an error naming its path (``data.pach``), before any work.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.degrade import load_degradation
from ..errors import ConfigError
from ..models import build, list_models

__all__ = ["DataConfig", "StageConfig", "TrainConfig", "load_config", "config_to_dict", "ConfigError"]


@dataclass
class DataConfig:
    layout: str = "reds"                 # reds | gopro | paired
    root: str = ""                       # dataset root (paired: blurry LR clips)
    hr_root: str | None = None           # paired: sharp HR clips
    val_layout: str | None = None        # default: same as layout
    val_root: str | None = None          # default: root, REDS4 split for reds
    val_hr_root: str | None = None
    val_windows: int = 8                 # windows scored per validation (full frames)
    patch: int = 64                      # LR patch size
    batch: int = 8                       # global batch (split over processes)
    workers: int = 2
    flow: str | None = "dis"             # pseudo-GT flow estimator; None disables the flow loss
    cache_dir: str | None = None         # default: ~/.cache/vsrdb/datasets/NAME-HASH (never the dataset)
    degrade: Any = None                  # real-footage degradations of the blurry LR, drawn per item:
                                         # a preset (web, phone, real), a YAML file or {steps:, clean:}


@dataclass
class StageConfig:
    iterations: int = 300_000
    lr: float = 2e-4
    batch: int | None = None             # this stage's global batch; default data.batch


@dataclass
class TrainConfig:
    name: str = ""                       # a label for the run: the progress bar shows it
    model: str = "fmanet"
    model_args: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    # Per training stage of the family, by the stage's name (FMA-Net: netd, joint; HOFFR and
    # JFFRA: main). ``stage1``/``stage2`` are the older keys: the first of two stages, and the last.
    stages: dict[str, StageConfig] = field(default_factory=dict)
    stage1: StageConfig | None = None
    stage2: StageConfig | None = None
    milestones: tuple[float, ...] = (0.7, 0.85, 0.95)  # of each stage's iterations; lr x gamma at each
    gamma: float = 0.5
    loss: dict[str, Any] = field(default_factory=dict)  # the family's loss weights (``loss_weights_type``)
    init: str | None = None              # start the last stage from these weights (a vsrdb checkpoint
                                         # folder): fine-tuning; FMA-Net's stage 1 is then skipped
    run_dir: str = "runs/fmanet"
    checkpoint_every: int = 1000
    val_every: int = 5000
    log_every: int = 50
    seed: int = 0
    amp: str = "fp32"                    # autocast precision: fp32 (off), bf16, fp16 (GPU) or auto
                                         # (bf16 where the CPU/GPU runs it natively); see vsrdb.precision
    threads: int | None = None           # CPU threads per process
    device: str = "auto"


def _build(cls, data: Any, path: str, source: str):
    if not dataclasses.is_dataclass(cls):
        return data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: {path or 'top level'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        where = f"{path}.{key}" if path else key
        if key not in names:
            raise ConfigError(f"{source}: unknown key {where!r} (known: {', '.join(sorted(names))})")
        hint = hints[key]
        if key == "stages" and cls is TrainConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: stages must be a mapping of stage name to {{iterations, lr, batch}}")
            kwargs[key] = {name: _build(StageConfig, v, f"stages.{name}", source) for name, v in value.items()}
            continue
        if typing.get_origin(hint) in (typing.Union, types.UnionType) and isinstance(value, dict):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if dataclasses.is_dataclass(hint):
            kwargs[key] = _build(hint, value, where, source)
        else:
            kwargs[key] = _coerce(hint, value, where, source)
    return cls(**kwargs)


def _coerce(hint, value, where: str, source: str):
    """``value`` as the field's type, or a ConfigError naming the key: no bool where a number
    belongs, no scalar where a list or mapping belongs, and a list's elements checked too."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if hint is Any:
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {where} must be a list, got {value!r}")
        item = typing.get_args(hint)[0]
        return tuple(_coerce(item, v, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {where} must be a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, str):
        # YAML 1.1 reads "2e-4" (no dot) as a string; it is meant as a number.
        try:
            return float(value)
        except ValueError:
            pass
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (not isinstance(value, hint) or (hint is not bool and isinstance(value, bool))):
        raise ConfigError(f"{source}: {where} must be {hint.__name__}, got {value!r}")
    return value


def load_config(path: str | Path, overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Read a YAML training config; relative data paths are taken from the config's folder."""
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start} cannot be decoded)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: must be a mapping of settings (model:, data:, stages: ...), got "
                          f"{type(data).__name__}")
    for key, value in (overrides or {}).items():
        node = data
        *parents, last = key.split(".")
        for i, p in enumerate(parents):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {'.'.join(parents[:i + 1])} is {node!r} in {path}, not a mapping "
                                  "to set a key in")
        node[last] = value
    if isinstance(data.get("amp"), bool):  # older configs: amp: true meant bf16 autocast
        data["amp"] = "bf16" if data["amp"] else "fp32"
    cfg = _build(TrainConfig, data, "", str(path))
    from ..precision import PRECISIONS

    if cfg.amp.lower() not in PRECISIONS:
        raise ConfigError(f"{path}: amp must be one of {', '.join(PRECISIONS)}, got {cfg.amp!r}")
    check_ranges(cfg, str(path))
    return cfg


def check_ranges(cfg: TrainConfig, source: str) -> None:
    """Every number's range, before training starts: one line naming the key."""

    def need(ok: bool, key: str, value, rule: str) -> None:
        if not ok:
            raise ConfigError(f"{source}: {key} must be {rule}, got {value!r}")

    d = cfg.data
    need(d.patch >= 1, "data.patch", d.patch, "1 or more")
    need(d.batch >= 1, "data.batch", d.batch, "1 or more")
    # Each worker is a process with its own copy of the dataset: far more than the cores
    # only forks processes that compete for them (a typo of 1e6 took the machine down).
    most = max(8, 4 * (os.cpu_count() or 1))
    need(0 <= d.workers <= most, "data.workers", d.workers, f"0 to {most} (4x the CPU cores, at least 8)")
    need(d.val_windows >= 0, "data.val_windows", d.val_windows, "0 or more")
    load_degradation(d.degrade, where=f"{source}: data.degrade")  # its ranges and names, now
    stages = dict(cfg.stages)
    for name, st in (("stage1", cfg.stage1), ("stage2", cfg.stage2)):
        if st is not None:
            stages[name] = st
    for name, st in stages.items():
        where = name if name.startswith("stage") and name not in cfg.stages else f"stages.{name}"
        need(st.iterations >= 0, f"{where}.iterations", st.iterations, "0 or more")
        need(st.lr > 0 and st.lr == st.lr and st.lr != float("inf"), f"{where}.lr", st.lr, "more than 0")
        need(st.batch is None or st.batch >= 1, f"{where}.batch", st.batch, "1 or more")
    need(all(0 < m < 1 for m in cfg.milestones) and list(cfg.milestones) == sorted(cfg.milestones),
         "milestones", list(cfg.milestones), "increasing fractions between 0 and 1")
    need(0 < cfg.gamma <= 1, "gamma", cfg.gamma, "in (0, 1]")
    for key in ("checkpoint_every", "val_every", "log_every"):
        need(getattr(cfg, key) >= 1, key, getattr(cfg, key), "1 or more")
    need(cfg.threads is None or cfg.threads >= 1, "threads", cfg.threads, "1 or more")
    need(0 <= cfg.seed < 2 ** 63, "seed", cfg.seed, "0 or more (below 2^63)")
    if not isinstance(cfg.loss, dict):
        raise ConfigError(f"{source}: loss must be a mapping of the family's loss weights, got {cfg.loss!r}")
    if cfg.model in list_models():  # else the trainer names the unknown model
        try:
            model = build(cfg.model, **cfg.model_args)
        except ConfigError as e:
            raise ConfigError(f"{source}: model_args: {e}") from None
        model.loss_weights(cfg.loss, where=f"{source}: loss")


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    return dataclasses.asdict(cfg)
