"""Model registry: named presets built by ``build(name, **overrides)``.

A preset is a function taking config overrides and returning a model whose ``config``
attribute is a dataclass; ``build`` records the preset name on the model as
``model.preset`` so checkpoints can name it.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any, Callable

import torch.nn as nn

__all__ = ["register_model", "build", "list_models", "model_family", "from_preset"]

_PRESETS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _PRESETS:
            raise ValueError(f"model preset {name!r} is registered twice")
        _PRESETS[name] = fn
        return fn
    return decorator


def from_preset(model_cls: Callable[..., nn.Module], base: Any, overrides: dict[str, Any]) -> nn.Module:
    """``model_cls(base with overrides)``; an override that is not a field of the config is a
    ValueError naming it and the known fields."""
    names = {f.name for f in fields(base)}
    unknown = [k for k in overrides if k not in names]
    if unknown:
        raise ValueError(f"unknown {type(base).__name__} field(s): {', '.join(unknown)}; "
                         f"known: {', '.join(sorted(names))}")
    return model_cls(replace(base, **overrides))


def list_models() -> list[str]:
    _import_families()
    return sorted(_PRESETS)


def build(name: str, **overrides: Any) -> nn.Module:
    """Build a registered model, e.g. ``build("fmanet")`` or ``build("fmanet", num_flow=5)``.

    Raises:
        ValueError: unknown name, or an override that is not a field of the model's config.
    """
    _import_families()
    if name not in _PRESETS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(sorted(_PRESETS))}")
    model = _PRESETS[name](**overrides)
    model.preset = name
    return model


def model_family(model: nn.Module) -> str:
    """The preset name a model was built under (or its class name as a fallback)."""
    return getattr(model, "preset", type(model).__name__.lower())


def _import_families() -> None:
    # Model files register themselves on import; importing here keeps `build` usable
    # without the caller knowing which file defines which preset.
    from . import fmanet, hoffr, jffra  # noqa: F401
