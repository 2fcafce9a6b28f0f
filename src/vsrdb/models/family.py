"""The model-family interface: everything the trainer, the Restorer, evaluate and reports ask of a model.

A family (FMA-Net, HOFFR, JFFRA, or one in a user's own file) subclasses ``RestorationModel``
and registers presets with ``vsrdb.register_model``. Code outside ``vsrdb.models`` never
tests a model's type: it reads these attributes and calls these methods.

What a family says about itself:

- ``scale``, ``channel_order``, ``min_size``: the x-factor, the colour order its weights
  expect (``"BGR"`` for the authors' FMA-Net weights) and the smallest LR frame side.
- ``frames``: a ``FrameNeed``: a sliding window of T frames (FMA-Net, JFFRA), a recurrence
  over frames (HOFFR), or whole sequences.
- ``input_flow``: the flow estimator whose flow between the input frames the family takes as
  an input (JFFRA's initial flow), or None. The caller computes it (``vsrdb.data.flow``), so
  ``forward`` stays a pure tensor function.
- ``inference_bytes``: the working memory of restoring one LR tile, for tiling.

What it does:

- ``restore(lr, ...)``: inference on a window; ``step`` for recurrent families;
  ``encode_frame`` for features that depend on one frame only (cached by the Restorer);
  ``sequence_stream`` for sequence families (frames in, restored frames out, in order).
- Training: ``training_stages`` (the recipe, in order), ``trainable_parts`` (one optimiser
  each), ``training_loss`` (the stage's loss and its terms), ``validation_pair``, and
  ``start_stage`` (what a stage takes over from the stage before).
- ``diagnostic_maps``: pictures of its internals for reports (FMA-Net: flows and kernels).

Tensors are ``[B, C, T, H, W]`` for windows, ``[B, C, H, W]`` for frames, float in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

__all__ = ["FrameNeed", "TrainingStage", "RestorationModel", "LossFn", "SequenceStream", "ContextStream"]

# The model (or its DDP wrapper) called as in training: (lr, hr, **inputs) -> outputs.
LossFn = Callable[..., Mapping[str, Any]]


@dataclass(frozen=True)
class FrameNeed:
    """Which input frames one output frame needs.

    - ``window``: ``length`` = T = 2N+1 frames centred on it; at clip ends the nearest frame
      is repeated.
    - ``recurrent``: the frame, its predecessor and the previous output; ``length`` is the
      number of frames unrolled per training sample.
    - ``sequence``: all frames of a sequence restored together; ``length`` frames per training
      sample, and each output frame depends on ``reach`` frames each way (the Restorer gives
      every chunk that much context).
    """

    mode: Literal["window", "recurrent", "sequence"]
    length: int
    reach: int = 0

    @property
    def context(self) -> tuple[int, int]:
        """Frames before and after an output frame that its restoration reads."""
        if self.mode == "window":
            return self.length // 2, self.length - 1 - self.length // 2
        if self.mode == "recurrent":
            return 1, 0
        return self.reach, self.reach

    @property
    def window(self) -> int:
        """The T whose incomplete windows the paper's protocol leaves unscored: ``length`` for
        window families; 1 for recurrent and sequence families, which restore every frame of a
        clip and are scored on all of them (their papers evaluate full-length videos)."""
        return self.length if self.mode == "window" else 1


@dataclass(frozen=True)
class TrainingStage:
    """One stage of a family's training recipe.

    Args:
        name: the stage's key under ``stages:`` in training configs and in logs (``netd``, ``joint``).
        result: the run-folder name its trained model is saved under (the last stage: ``model``).
        build_args: config overrides for the model trained in this stage (FMA-Net's NetD alone).
        window: frames per training sample (the family's window, wider where a loss needs it).
        replaced_by_init: an ``init`` checkpoint stands in for this stage (it is skipped).
        legacy_key: the older config key (``stage1``/``stage2``) read when ``stages`` lacks ``name``.
    """

    name: str
    result: str
    window: int
    build_args: Mapping[str, Any] = field(default_factory=dict)
    replaced_by_init: bool = False
    legacy_key: str = "stage2"


class RestorationModel(nn.Module):
    """Base class of every model family; see the module docstring.

    Subclasses set ``self.config`` (a frozen dataclass with ``scale``), implement ``forward``,
    ``restore`` (or ``step``), ``frames``, ``inference_values_per_pixel`` and the training methods.
    """

    config: Any
    preset: str = ""             # the registry name ``build`` gave it (families set their default)
    channel_order: str = "RGB"
    weights_meta: Any = None     # ``WeightsMeta`` once loaded from a checkpoint

    # ------------------------------------------------------------------ what it needs

    @property
    def scale(self) -> int:
        return int(self.config.scale)

    @property
    def frames(self) -> FrameNeed:
        raise NotImplementedError

    @property
    def min_size(self) -> int:
        return 1

    @property
    def input_flow(self) -> str | None:
        """The estimator (``vsrdb.data.flow``) of the flow this family takes as input, or None."""
        return None

    @property
    def can_restore(self) -> bool:
        """False for a partial model (FMA-Net's stage-1 NetD), which trains but cannot restore."""
        return True

    def inference_values_per_pixel(self) -> int:
        """Values held at the peak of one window's inference, per LR pixel."""
        raise NotImplementedError

    def inference_bytes(self, height: int, width: int, *, bytes_per_value: int = 4) -> int:
        """Peak working memory of restoring one ``height`` x ``width`` LR tile, with a quarter added
        for the allocator."""
        return int(height * width * self.inference_values_per_pixel() * bytes_per_value * 1.25)

    # ------------------------------------------------------------------ inference

    def restore_sequence(self, lr: Tensor) -> Tensor:
        """Sequence families: every frame, ``lr [B, 3, T, H, W]`` -> ``[B, 3, T, sH, sW]``."""
        raise NotImplementedError(f"{type(self).__name__} restores windows, not sequences")

    def sequence_stream(self, chunk: int) -> "SequenceStream":
        """Sequence families: a stream that restores a clip fed ``chunk`` frames at a time and
        gives every frame as ``restore_sequence`` of the whole clip would.

        This default re-runs ``restore_sequence`` on chunks with ``frames.reach`` frames of
        context each way; a family whose network allows it streams without recomputation.
        """
        return ContextStream(self, chunk)

    def restore(self, lr: Tensor, *, features: list[Tensor] | None = None, flows: Tensor | None = None) -> Tensor:
        """``lr [B, 3, T, H, W]`` -> the restored centre frame ``[B, 3, sH, sW]``.

        ``features``: the T frames' ``encode_frame`` outputs, if cached; ``flows``: the
        ``input_flow`` estimate ``[B, T, 2, H, W]`` for families that take one."""
        raise NotImplementedError

    def encode_frame(self, frame: Tensor) -> Tensor | None:
        """Features of one frame ``[B, 3, H, W]`` that every window holding it reuses, or None."""
        return None

    def step(self, prev: Tensor, cur: Tensor, state: Tensor | None) -> Tensor:
        """Recurrent families: the restored ``cur`` ``[B, 3, sH, sW]`` from ``prev``, ``cur``
        ``[B, 3, H, W]`` and the previous output ``state`` (None at a sequence's start)."""
        raise NotImplementedError(f"{type(self).__name__} is not recurrent")

    # ------------------------------------------------------------------ training

    def training_stages(self, weights: Any) -> list[TrainingStage]:
        """The recipe, in order; ``weights`` is the run's ``LossWeights``."""
        raise NotImplementedError

    def trainable_parts(self, stage: TrainingStage) -> list[tuple[str, nn.Module]]:
        """The networks trained in ``stage``, each with its own optimiser, by name."""
        return [("model", self)]

    def training_loss(self, forward: LossFn, batch: Mapping[str, Tensor], stage: TrainingStage,
                      weights: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The stage's loss for one batch and its terms (detached, for logging).

        ``forward`` is this model or its DDP wrapper; ``batch`` holds ``lr``, ``hr``, ``lr_sharp``
        (sharp LR frames), ``flow`` (pseudo-GT flow at LR from the centre) and, for families with
        an ``input_flow``, ``input_flow``; each ``[B, C, stage.window, H, W]``."""
        raise NotImplementedError

    def validation_pair(self, lr: Tensor, hr: Tensor, stage: TrainingStage,
                        **inputs: Tensor) -> tuple[Tensor, Tensor] | None:
        """(prediction, target) ``[3, H', W']`` that validation scores for one window ``[1, 3, T, ...]``,
        or None for a stage with no picture to score."""
        c = lr.shape[2] // 2
        return self.restore(lr, **inputs)[0], hr[0, :, c]

    def start_stage(self, stage: TrainingStage, previous: Path | None) -> None:
        """Take over what ``stage`` needs from the previous stage's saved model (a checkpoint folder)."""

    # ------------------------------------------------------------------ pictures

    def diagnostic_maps(self, window: Tensor, **inputs: Tensor) -> dict[str, np.ndarray]:
        """Named ``uint8 [H, W, 3]`` pictures of the model's internals on one window
        ``[1, 3, T, H, W]`` (in the model's channel order), for reports. None by default."""
        return {}


class SequenceStream:
    """Restores a clip fed in order, a few frames at a time, with bounded memory.

    ``push(lr [B, 3, K, H, W])`` returns the frames that are final so far, each ``[B, 3, sH, sW]``
    (none, at first: a frame is final once ``frames.reach`` frames after it were pushed);
    ``finish()`` returns the rest at the clip's end. In order, they are the frames of
    ``restore_sequence`` on the whole clip.
    """

    def push(self, lr: Tensor) -> list[Tensor]:
        raise NotImplementedError

    def finish(self) -> list[Tensor]:
        raise NotImplementedError


class ContextStream(SequenceStream):
    """Any sequence family: every ``chunk`` output frames are restored by ``restore_sequence`` on
    them plus ``reach`` frames of context each way (fewer at the clip's start and end), so each
    costs (chunk + 2 reach) / chunk frames of computation."""

    def __init__(self, model: RestorationModel, chunk: int) -> None:
        self.model, self.chunk, self.reach = model, max(1, chunk), model.frames.reach
        self.frames: list[Tensor] = []  # [B, 3, H, W], from clip index ``first``
        self.first = 0
        self.done = 0                   # frames returned so far

    def push(self, lr: Tensor) -> list[Tensor]:
        self.frames.extend(lr.unbind(2))
        outs: list[Tensor] = []
        # A chunk can go once its last frame has reach frames after it.
        while self.first + len(self.frames) >= self.done + self.chunk + self.reach:
            outs += self._restore(self.done + self.chunk)
        return outs

    def finish(self) -> list[Tensor]:
        outs: list[Tensor] = []
        end = self.first + len(self.frames)
        while self.done < end:
            outs += self._restore(min(self.done + self.chunk, end))
        return outs

    def _restore(self, stop: int) -> list[Tensor]:
        lo = max(0, self.done - self.reach)
        hi = min(self.first + len(self.frames), stop + self.reach)
        lr = torch.stack(self.frames[lo - self.first:hi - self.first], dim=2)
        out = self.model.restore_sequence(lr)[:, :, self.done - lo:stop - lo].unbind(2)
        self.done = stop
        keep = max(0, self.done - self.reach)  # the next chunk's context starts here
        del self.frames[:keep - self.first]
        self.first = keep
        return list(out)
