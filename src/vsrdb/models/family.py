"""The model-family interface: everything the trainer, the Restorer, evaluate and reports ask of a model.

A family (FMA-Net, HOFFR, JFFRA, or one in a user's own file) subclasses ``RestorationModel``
and registers presets with ``vsrdb.register_model``. Code outside ``vsrdb.models`` never
tests a model's type: it reads these attributes and calls these methods.

What a family says about itself:

- ``scale``, ``channel_order``, ``min_size``: the x-factor, the colour order its weights
  expect (``"BGR"`` for the authors' FMA-Net weights) and the smallest LR frame side.
- ``casts_inputs``: whether it takes fp32 images under reduced precision and casts its own
  feature path (vsrdb's families), or wants its input in its weights' dtype (the default).
- ``frames``: a ``FrameNeed``: a sliding window of T frames (FMA-Net, JFFRA), a recurrence
  over frames (HOFFR), or whole sequences.
- ``input_flow``: the flow estimator whose flow between the input frames the family takes as
  an input (JFFRA's initial flow), or None. The caller computes it (``vsrdb.data.flow``), so
  ``forward`` stays a pure tensor function.
- ``inference_bytes``: the working memory of restoring one LR tile, for tiling.
- ``loss_weights_type``: the dataclass of its loss weights, read from a config's ``loss:``
  section by ``loss_weights`` (unknown keys and negative values are ``ConfigError``s);
  ``loss_terms``: the names its loss returns, which become ``log.csv``'s columns.
- ``training_flows``: pseudo-ground-truth flows its loss needs beyond the dataset's
  centre-based ``flow`` (FMA-Net++: each frame to its neighbours); the trainer computes them.

What it does:

- ``restore(lr, ...)``: inference on a window; ``step`` for recurrent families;
  ``encode_frame`` for features that depend on one frame only (cached by the Restorer);
  ``sequence_stream`` for sequence families (frames in, restored frames out, in order).
- Training: ``training_stages`` (the recipe, in order), ``trainable_parts`` (one optimiser
  each), ``training_loss`` (the stage's loss and its terms), ``validation_pair``, and
  ``start_stage`` (what a stage takes over from the previous stage's trained model).
- ``diagnostic_maps``: pictures of its internals for reports (FMA-Net: flows and kernels).

Tensors are ``[B, C, T, H, W]`` for windows, ``[B, C, H, W]`` for frames, float in [0, 1].
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch
import torch.nn as nn
from torch import Tensor

from ..errors import ConfigError

__all__ = ["FrameNeed", "TrainingStage", "RestorationModel", "LossFn", "SequenceStream", "ContextStream",
           "NoLossWeights", "TRAINING_FLOWS"]

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
    def scored_window(self) -> int:
        """The T of the paper's protocol, which leaves out frames without a complete T-window:
        ``length`` for window families; 1 (every frame scored) for recurrent and sequence
        families, which restore every frame of a clip (their papers evaluate whole videos)."""
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
    legacy_key: str | None = "stage2"


@dataclass(frozen=True)
class NoLossWeights:
    """The loss weights of a family that has none to set."""


# Every key of the single flat ``LossWeights`` that vsrdb 0.1 had for all families. Configs and
# run folders of that time carry all of them; a family ignores those it does not use, as it
# always did, while any other unknown key is an error.
_FLAT_LOSS_KEYS = frozenset({"hr_warp", "flow", "anchor_d", "lr_warp", "anchor_r", "stage1", "hr_warp_pp",
                             "hoffr_db", "hoffr_flow", "temporal", "temporal_alpha"})

# Pseudo-ground-truth flows a family's loss may ask for beyond the dataset's centre-based
# ``flow`` (``training_flows``), by batch key.
TRAINING_FLOWS = {"neighbour_flow": "from every frame to its next and previous frame, [B, 4, T, H, W]"}

class RestorationModel(nn.Module):
    """Base class of every model family; see the module docstring.

    Subclasses set ``self.config`` (a frozen dataclass with ``scale``), implement ``forward``,
    ``restore`` (or ``step``), ``frames``, ``inference_values_per_pixel`` and the training methods.
    """

    config: Any
    preset: str = ""             # the registry name ``build`` gave it (families set their default)
    channel_order: str = "RGB"
    weights_meta: Any = None     # ``WeightsMeta`` once loaded from a checkpoint
    # True: the family takes fp32 images whatever its weights' dtype and casts its feature path
    # itself, keeping what needs fp32 (warps, image-space sums) there; vsrdb's families do. False
    # (a family written elsewhere): callers hand it images in its weights' dtype (bf16 or fp16
    # under --precision), so its first convolution gets the dtype it runs in.
    casts_inputs: bool = False

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

    def inference_bytes(self, height: int, width: int, *, frames: int = 1, bytes_per_value: int = 4) -> int:
        """Peak working memory of restoring one ``height`` x ``width`` LR tile, with a quarter added
        for the allocator. ``frames``: how many frames one call restores together (sequence
        families' chunks; a window or recurrent family restores one)."""
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

    loss_weights_type: type = NoLossWeights  # a frozen dataclass: the family's loss weights

    def loss_weights(self, raw: Mapping[str, Any] | None = None, *, where: str = "loss") -> Any:
        """This family's loss weights (``loss_weights_type``) from a config's ``loss:`` mapping.

        Raises ConfigError for a key that is not one of its weights (keys of vsrdb 0.1's flat
        weights are ignored, as they always were by the families that did not use them) and for
        a value that is not a number of 0 or more; null means the default."""
        cls = self.loss_weights_type
        names = {f.name: f for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for key, value in (raw or {}).items():
            if key not in names:
                if key in _FLAT_LOSS_KEYS:
                    continue
                known = ", ".join(sorted(names)) or "none"
                raise ConfigError(f"{where}.{key}: not a loss weight of {self.preset or type(self).__name__} "
                                  f"(its weights: {known})")
            if value is None:  # null: the family's default (vsrdb 0.1 wrote temporal: null so)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
                raise ConfigError(f"{where}.{key} must be 0 or more, got {value!r}")
            kwargs[key] = float(value)
        return cls(**kwargs)

    def loss_terms(self, stage: "TrainingStage", weights: Any) -> tuple[str, ...] | None:
        """The names ``training_loss`` returns in ``stage`` (``log.csv``'s columns, in order), or
        None: the trainer then takes the first logged step's names for the whole run."""
        return None

    @property
    def training_flows(self) -> Mapping[str, str]:
        """Flows the loss needs beyond ``batch["flow"]``: batch key (in ``TRAINING_FLOWS``) ->
        the estimator (``vsrdb.data.flow``) to compute it with, from the sharp LR frames."""
        return {}

    def training_stages(self, weights: Any) -> list[TrainingStage]:
        """The recipe, in order; ``weights`` is the run's ``loss_weights``."""
        raise NotImplementedError

    def trainable_parts(self, stage: TrainingStage) -> list[tuple[str, nn.Module]]:
        """The networks trained in ``stage``, each with its own optimiser, by name."""
        return [("model", self)]

    def training_loss(self, forward: LossFn, batch: Mapping[str, Tensor], stage: TrainingStage,
                      weights: Any) -> tuple[Tensor, dict[str, Tensor]]:
        """The stage's loss for one batch and its terms (detached, for logging).

        ``forward`` is this model or its DDP wrapper; ``batch`` holds ``lr``, ``hr``, ``lr_sharp``
        (sharp LR frames), ``flow`` (pseudo-GT flow at LR from the centre), for families with
        an ``input_flow`` ``input_flow``, and what ``training_flows`` asks for; each
        ``[B, C, stage.window, H, W]``. ``weights``: the run's ``loss_weights``."""
        raise NotImplementedError

    def validation_pair(self, lr: Tensor, hr: Tensor, stage: TrainingStage,
                        **inputs: Tensor) -> tuple[Tensor, Tensor] | None:
        """(prediction, target) ``[3, H', W']`` that validation scores for one window ``[1, 3, T, ...]``,
        or None for a stage with no picture to score."""
        c = lr.shape[2] // 2
        return self.restore(lr, flows=inputs.get("flows"))[0], hr[0, :, c]

    def start_stage(self, stage: TrainingStage, previous: "RestorationModel | None") -> None:
        """Take over what ``stage`` needs from ``previous``, the previous stage's trained model
        (loaded from its run-folder result), or None when there is none."""

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
