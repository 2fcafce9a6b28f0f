"""Evaluation runs: score saved predictions against targets, or run methods over a dataset.

Both stream clips frame by frame (any length), score with ``SequenceScorer`` and keep a few
chosen frames (input, output, target) for the report. Input problems raise ``InputError``
naming the clip and frame before or as they are met.
"""

from __future__ import annotations

import os
import threading
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from torch import Tensor

from ..data.datasets import Clip
from ..data.degrade import Degradation, degrade_tensors
from ..data.resize import imresize
from ..data.windows import window_indices
from ..errors import InputError
from ..video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, list_frames, natural_key, open_frames, read_image, to_tensor
from .methods import Method
from .scoring import ClipScore, ScoreOptions, SequenceScorer, average, exposure_levels, motion_bins

__all__ = ["MethodResult", "list_sequences", "evaluate_predictions", "evaluate_methods", "sample_index",
           "PeakMemory", "clip_inputs", "clip_window"]


@dataclass
class MethodResult:
    """One method's scores over a set of clips, and the frames kept for the report."""

    name: str
    scores: dict[str, ClipScore]
    parameters: int = 0
    seconds_per_frame: float | None = None
    peak_memory_mb: float | None = None
    # (clip, frame index) -> {"input": LR [3,h,w], "output": [3,H,W], "target": [3,H,W]}
    samples: dict[tuple[str, int], dict[str, Tensor]] = field(default_factory=dict)
    exposure: dict[str, tuple[int, ...]] = field(default_factory=dict)  # per-frame levels by clip, if known
    degrade: str = ""  # the degradation of the input it was scored on ("" = the dataset's own)

    def to_json(self) -> dict:
        clips = {name: s.summary() for name, s in self.scores.items()}
        out = {"clips": clips, "average": average(clips), "motion_bins": motion_bins(self.scores),
               "parameters": self.parameters}
        if self.degrade:
            out["degrade"] = self.degrade
        if self.seconds_per_frame is not None:
            out["seconds_per_frame"] = self.seconds_per_frame
        if self.peak_memory_mb is not None:
            out["peak_memory_mb"] = self.peak_memory_mb
        if self.exposure:
            out["exposure_levels"] = exposure_levels(self.scores, self.exposure)
        return out


def sample_index(length: int, options: ScoreOptions) -> int:
    """The frame a report shows for a clip: the middle scored frame."""
    kept = [i for i in range(length) if options.kept(i, length)]
    return kept[len(kept) // 2] if kept else length // 2


class PeakMemory:
    """Peak memory while a block runs: CUDA's allocator peak, or sampled resident memory on CPU (MB)."""

    def __init__(self, device: str = "cpu", interval: float = 0.02) -> None:
        self.cuda = str(device).startswith("cuda") and torch.cuda.is_available()
        self.interval = interval
        self.peak_mb = 0.0

    @staticmethod
    def _rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
        except (OSError, ValueError):
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def __enter__(self) -> "PeakMemory":
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            return self
        self._stop = threading.Event()
        self.peak_mb = self._rss_mb()

        def sample() -> None:
            while not self._stop.wait(self.interval):
                self.peak_mb = max(self.peak_mb, self._rss_mb())

        self._thread = threading.Thread(target=sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.cuda:
            self.peak_mb = torch.cuda.max_memory_allocated() / 2 ** 20
        else:
            self._stop.set()
            self._thread.join()
            self.peak_mb = max(self.peak_mb, self._rss_mb())


# ---------------------------------------------------------------- predictions vs targets

def list_sequences(folder: str | os.PathLike, role: str) -> dict[str, Path]:
    """Clips in ``folder``: each sub-folder of frames, and each video file (named by its stem)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: {role} folder does not exist")
    seqs: dict[str, Path] = {}
    for p in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
        if p.is_dir():
            name = p.name
        elif p.suffix.lower() in VIDEO_EXTENSIONS:
            name = p.stem
        else:
            continue
        if name in seqs:
            raise InputError(f"{folder}: two clips are named {name!r} ({seqs[name].name} and {p.name})")
        seqs[name] = p
    if not seqs:
        raise InputError(f"{folder}: no clips in it (expected one folder of frames or one video file per clip)")
    return seqs


def _frame_count(path: Path) -> int:
    if path.is_dir():
        n = sum(1 for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
        if n == 0:
            raise InputError(f"{path}: no frames in it")
        return n
    with open_frames(path) as src:
        return src.num_frames if src.num_frames else sum(1 for _ in src)


def _read_clip_frames(path: Path) -> Iterator[tuple[Tensor, str]]:
    """Frames of a clip with a name for errors: the file, or 'video:frame'."""
    if path.is_dir():
        for p in list_frames(path):
            yield to_tensor(read_image(p)), str(p)
    else:
        with open_frames(path) as src:
            for i, f in enumerate(src):
                yield to_tensor(f), f"{path} frame {i}"


def evaluate_predictions(pred_dir: str | os.PathLike, gt_dir: str | os.PathLike, options: ScoreOptions, *,
                         lr_dir: str | os.PathLike | None = None, progress: bool = True) -> MethodResult:
    """Score the clips of ``pred_dir`` against the same-named clips of ``gt_dir``.

    ``lr_dir`` (optional) holds the blurry inputs, only for the report's pictures.
    """
    from tqdm import tqdm

    preds, gts = list_sequences(pred_dir, "pred"), list_sequences(gt_dir, "gt")
    missing = sorted(set(gts) - set(preds), key=natural_key)
    extra = sorted(set(preds) - set(gts), key=natural_key)
    if missing or extra:
        parts = ([f"missing from pred: {', '.join(missing)}"] if missing else []) + (
            [f"not in gt: {', '.join(extra)}"] if extra else [])
        raise InputError(f"{pred_dir} vs {gt_dir}: clip names differ ({'; '.join(parts)})")
    lrs = list_sequences(lr_dir, "lr") if lr_dir is not None else {}
    counts = {}
    for name in gts:
        n_pred, n_gt = _frame_count(preds[name]), _frame_count(gts[name])
        if n_pred != n_gt:
            raise InputError(f"clip {name}: {n_pred} frames in {preds[name]}, {n_gt} in {gts[name]}")
        counts[name] = n_gt
    result = MethodResult(Path(pred_dir).name or "pred", {})
    bar = tqdm(total=sum(counts.values()), desc="scoring", unit="frame", disable=not progress)
    for name, length in counts.items():
        scorer = SequenceScorer(length, options)
        want = sample_index(length, options)
        pairs = zip(_read_clip_frames(preds[name]), _read_clip_frames(gts[name]))
        for i, ((out, out_name), (gt, gt_name)) in enumerate(pairs):
            if out.shape != gt.shape:
                raise InputError(f"clip {name} frame {i}: {out_name} is {out.shape[2]}x{out.shape[1]}, "
                                 f"{gt_name} is {gt.shape[2]}x{gt.shape[1]}")
            scorer.add(out, gt)
            if i == want:
                sample = {"output": out, "target": gt}
                lr_frame = _nth_frame(lrs[name], i) if name in lrs else None
                if lr_frame is not None:
                    sample["input"] = lr_frame
                result.samples[(name, i)] = sample
            bar.update(1)
        result.scores[name] = scorer.result()
    bar.close()
    return result


def _nth_frame(path: Path, index: int) -> Tensor | None:
    for i, (f, _) in enumerate(_read_clip_frames(path)):
        if i == index:
            return f
    return None


# ---------------------------------------------------------------- methods over a dataset

def clip_inputs(clip: Clip, scale: int = 4, degrade: Degradation | None = None) -> Iterator[Tensor]:
    """A dataset clip's blurry LR frames, shrunk x``scale`` when the dataset stores them at HR;
    with ``degrade``, the whole clip through it (a video encoder needs every frame), drawn from
    a seed of the clip's name so every method and every run sees the same degraded input."""
    frames = (to_tensor(read_image(p)) for p in clip.blur)
    frames = (imresize(f, 1 / scale).clamp(0, 1) if clip.blur_is_hr else f for f in frames)
    if not degrade:
        yield from frames
        return
    record = degrade.draw(np.random.default_rng(zlib.crc32(clip.name.encode())))
    yield from degrade_tensors(list(frames), record)


def clip_window(clip: Clip, index: int, num_seq: int, scale: int = 4,
                degrade: Degradation | None = None) -> list[Tensor]:
    """The T LR frames centred on ``index``, clip ends replicated as the restorer does (for the report's maps)."""
    wanted = window_indices(index, num_seq, len(clip.blur))
    frames = {}
    for i, f in enumerate(clip_inputs(clip, scale, degrade)):
        if i in wanted:
            frames[i] = f
        if i >= max(wanted):
            break
    return [frames[i] for i in wanted]


def evaluate_methods(methods: list[Method], clips: list[Clip], options: ScoreOptions, *, device: str = "cpu",
                     progress: bool = True, scale: int = 4, degrade: Degradation | None = None,
                     on_frame: Callable[[str, str, int, Tensor], None] | None = None) -> list[MethodResult]:
    """Run each method over every clip and score it; time and peak memory are per method.
    With ``degrade``, every method gets the same degraded LR input (``clip_inputs``).

    ``on_frame(method, clip, index, output)`` sees every output frame (e.g. to write a video).
    """
    from tqdm import tqdm

    results = []
    total = sum(len(c.blur) for c in clips)
    for method in methods:
        result = MethodResult(method.name, {}, parameters=method.parameters,
                              exposure={c.name: c.exposure for c in clips if c.exposure is not None})
        bar = tqdm(total=total, desc=method.name, unit="frame", disable=not progress)
        spent = 0.0
        with PeakMemory(device) as mem:
            for clip in clips:
                length = len(clip.blur)
                scorer = SequenceScorer(length, options)
                want = sample_index(length, options)
                inputs: dict[int, Tensor] = {}

                def feed() -> Iterator[Tensor]:
                    for i, f in enumerate(clip_inputs(clip, scale, degrade)):
                        if i == want:
                            inputs[i] = f
                        yield f

                outputs = method.run(feed())
                for i in range(length):
                    start = time.perf_counter()
                    out = next(outputs)
                    spent += time.perf_counter() - start
                    gt = to_tensor(read_image(clip.sharp[i]))
                    if out.shape != gt.shape:
                        raise InputError(f"clip {clip.name} frame {i}: output is {out.shape[2]}x{out.shape[1]}, "
                                         f"{clip.sharp[i]} is {gt.shape[2]}x{gt.shape[1]}")
                    scorer.add(out, gt)
                    if on_frame is not None:
                        on_frame(method.name, clip.name, i, out)
                    if i == want:
                        result.samples[(clip.name, i)] = {"input": inputs[i], "output": out, "target": gt}
                    bar.update(1)
                result.scores[clip.name] = scorer.result()
        bar.close()
        result.seconds_per_frame = spent / max(total, 1)
        result.peak_memory_mb = mem.peak_mb
        results.append(result)
    return results
