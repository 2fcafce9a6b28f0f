"""Weights of a model: what a user must know about them, and loading them strictly.

Shared by our checkpoint format (``vsrdb.checkpoints``) and the readers of other projects'
files (``fmanet_release``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch.nn as nn
from torch import Tensor

from ..errors import CheckpointError

__all__ = ["WeightsMeta", "attach_meta", "meta_of", "load_state_strict"]


@dataclass
class WeightsMeta:
    """What a user must know about a set of weights (timm's pretrained-config idea)."""

    channel_order: str = "RGB"
    source: str = "vsrdb"
    license: str = "unspecified"
    notes: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def meta_of(model) -> WeightsMeta:
    """The model's weights metadata, or a default one carrying its channel order."""
    return model.weights_meta or WeightsMeta(channel_order=model.channel_order)


def attach_meta(model, meta: WeightsMeta):
    """Record ``meta`` on ``model``; its channel order becomes the model's."""
    model.weights_meta = meta
    model.channel_order = meta.channel_order
    return model


def load_state_strict(model: nn.Module, state: Mapping[str, Tensor], source: Path | str) -> None:
    """Load every tensor, or fail naming the first missing, unexpected or misshaped one."""
    expected = model.state_dict()
    for name, ref in expected.items():
        if name not in state:
            raise CheckpointError(f"{source}: tensor {name!r} is missing (expected shape {tuple(ref.shape)})")
        if tuple(state[name].shape) != tuple(ref.shape):
            raise CheckpointError(f"{source}: tensor {name!r} has shape {tuple(state[name].shape)}, "
                                  f"expected {tuple(ref.shape)}")
        # Integers of the right shapes would be converted silently and restore a near-constant video.
        if ref.is_floating_point() and not state[name].is_floating_point():
            raise CheckpointError(f"{source}: tensor {name!r} holds {str(state[name].dtype).replace('torch.', '')} "
                                  "values; weights must be floating point")
    unexpected = sorted(set(state) - set(expected))
    if unexpected:
        raise CheckpointError(f"{source}: unexpected tensor {unexpected[0]!r}"
                              + (f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""))
    model.load_state_dict(dict(state), strict=True)
