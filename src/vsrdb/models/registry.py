"""Model registry: named presets built by ``build(name, **overrides)``.

A preset is a function taking config overrides and returning a ``RestorationModel`` whose
``config`` attribute is a frozen dataclass; ``build`` records the preset name on the model
as ``model.preset`` so checkpoints can name it.

Families outside vsrdb register the same way (``vsrdb.register_model``) from their own
module, which vsrdb imports when asked: ``--model-module my_family.py`` on the command line,
``import_model_module`` from Python, or an entry point in the ``vsrdb.models`` group of an
installed package. Families that read another project's checkpoint files register a reader
with ``register_release_format``.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, TypeVar

from ..errors import ConfigError, printable
from .family import RestorationModel

M = TypeVar("M", bound="RestorationModel")

__all__ = ["register_model", "build", "list_models", "from_preset", "check_positive", "check_rules",
           "register_release_format",
           "release_formats", "import_model_module"]

_PRESETS: dict[str, Callable[..., RestorationModel]] = {}
# name -> (is_release_folder(folder) -> bool, load(folder) -> RestorationModel)
_RELEASE_FORMATS: dict[str, tuple[Callable[[Path], bool], Callable[[Path], RestorationModel]]] = {}
ENTRY_POINT_GROUP = "vsrdb.models"


def register_model(name: str) -> Callable[[Callable[..., RestorationModel]], Callable[..., RestorationModel]]:
    """Decorator: register a preset function ``fn(**overrides) -> RestorationModel`` under ``name``."""
    def decorator(fn: Callable[..., RestorationModel]) -> Callable[..., RestorationModel]:
        if name in _PRESETS and _PRESETS[name] is not fn:
            raise ConfigError(f"model preset {name!r} is registered twice")
        _PRESETS[name] = fn
        return fn
    return decorator


def register_release_format(name: str, detect: Callable[[Path], bool],
                            load: Callable[[Path], RestorationModel]) -> None:
    """Let ``load_checkpoint`` read another project's checkpoint folders (the authors' FMA-Net files)."""
    _RELEASE_FORMATS[name] = (detect, load)


def release_formats() -> Mapping[str, tuple[Callable[[Path], bool], Callable[[Path], RestorationModel]]]:
    _import_families()
    return dict(_RELEASE_FORMATS)


def from_preset(model_cls: Callable[..., M], base: Any, overrides: dict[str, Any], *,
                renamed: Mapping[str, str] | None = None) -> M:
    """``model_cls(base with overrides)``; ``renamed`` maps old field names (in older checkpoints)
    to current ones. An override that is not a field is a ConfigError naming it and the known fields."""
    if renamed:
        overrides = {renamed.get(k, k): v for k, v in overrides.items()}
    names = {f.name for f in fields(base)}
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise ConfigError(f"unknown {type(base).__name__} field(s): {', '.join(printable(str(k)) for k in unknown)}; "
                          f"known: {', '.join(sorted(names))}")
    for key, value in overrides.items():
        _check_type(base, key, value)
    try:
        return model_cls(replace(base, **overrides))
    except ValueError as e:  # the config's own checks (__post_init__)
        raise ConfigError(str(e)) from None


def _check_type(base: Any, key: str, value: Any) -> None:
    """An override has its field's type (that of the preset's value): ints for ints (not bools),
    finite numbers for floats, text for text. Checkpoint configs and ``model_args`` are user files."""
    want = type(getattr(base, key))
    name = f"{type(base).__name__}.{key}"
    if want is bool:
        ok = isinstance(value, bool)
    elif want is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif want is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif want is str:
        ok = isinstance(value, str)
    else:
        return  # a field without a plain type: the config's own checks decide
    if not ok:
        kind = {bool: "true or false", int: "a whole number", float: "a finite number", str: "text"}[want]
        raise ConfigError(f"{name} must be {kind}, got {value!r}")


def check_positive(config: Any, names: Iterable[str]) -> None:
    """A family config's ``__post_init__``: each of ``names`` must be a positive integer
    (ValueError naming the class and field; ``from_preset`` turns it into a ConfigError)."""
    for name in names:
        value = getattr(config, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{type(config).__name__}.{name} must be a positive integer, got {value!r}")


def check_rules(config: Any, rules: Iterable[tuple[bool, str]]) -> None:
    """A family config's ``__post_init__``: each ``(holds, message)`` must hold (after
    ``check_positive``, since the rules divide by those fields)."""
    for ok, message in rules:
        if not ok:
            raise ValueError(f"{type(config).__name__}: {message}")


def list_models() -> list[str]:
    _import_families()
    return sorted(_PRESETS)


def build(name: str, **overrides: Any) -> RestorationModel:
    """Build a registered model, e.g. ``build("fmanet")`` or ``build("fmanet", num_flow=5)``.

    Raises:
        ConfigError: unknown name, or an override that is not a field of the model's config.
    """
    _import_families()
    if name not in _PRESETS:
        raise ConfigError(f"unknown model {name!r}; known: {', '.join(sorted(_PRESETS))} "
                          "(a family in your own file: --model-module FILE)")
    model = _PRESETS[name](**overrides)
    if not isinstance(model, RestorationModel):
        raise ConfigError(f"model preset {name!r} returned a {type(model).__name__}, not a "
                          "vsrdb.models.RestorationModel subclass")
    model.preset = name
    return model


def import_model_module(spec: str) -> None:
    """Import a module that registers model families: a ``.py`` file path or a module name."""
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        if not path.is_file():
            raise ConfigError(f"{spec}: model module not found")
        name = f"vsrdb_user_models.{path.stem}"
        if name in sys.modules:
            return
        module_spec = importlib.util.spec_from_file_location(name, path)
        if module_spec is None or module_spec.loader is None:
            raise ConfigError(f"{spec}: not a Python module vsrdb can import")
        module = importlib.util.module_from_spec(module_spec)
        sys.modules[name] = module
        try:
            module_spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise
        return
    try:
        importlib.import_module(spec)
    except ModuleNotFoundError as e:
        if e.name == spec.split(".")[0] or e.name == spec:
            raise ConfigError(f"{spec}: no such model module (a .py file or an importable module name)") from None
        raise


_IMPORTED = False


def _import_families() -> None:
    # Model files register themselves on import; importing here keeps `build` usable
    # without the caller knowing which file defines which preset.
    global _IMPORTED
    if _IMPORTED:
        return
    _IMPORTED = True
    from importlib.metadata import entry_points

    from . import fmanet, fmanet_release, fmanetpp, hoffr, jffra  # noqa: F401

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        ep.load()
