"""``vsrdb demo``: see the built-in model restore a video, with nothing to download.

Makes a short clip from a procedural picture (``data/procedural.py``) the way ``vsrdb synth``
makes photo clips: a moving camera and moving foreground objects, each frame the average of
sub-frame renders over its exposure (so blur varies across the frame), then x4 MATLAB
bicubic. Restores it with the built-in model, scores the result and bicubic upsampling with
the paper's metrics, and writes a side-by-side video and the HTML report.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from torch import Tensor

from .errors import InputError
from .files import mark_output_folder, not_replaceable, replace_atomically
from .ops import kernels
from .precision import resolve_precision

__all__ = ["make_demo_clip", "run_demo"]

DEMO_SEED = 7


def make_demo_clip(folder: Path, *, frames: int = 12, size: tuple[int, int] = (256, 384),
                   seed: int = DEMO_SEED) -> Path:
    """Write the demo clip (REDS layout, clip 'demo') under ``folder``; returns the dataset root."""
    from .data.procedural import procedural_image
    from .data.synth import SynthConfig, degrade_clip, photo_clip, write_clip

    rng = np.random.default_rng(seed)
    cfg = SynthConfig(clip_frames=frames, photo_size=size, photo_subframes=9, max_shift=8.0, max_rotation=1.0,
                      foreground=3, seed=seed)
    picture = procedural_image(size[0] * 2, size[1] * 2, rng)
    others = [procedural_image(size[0], size[1], rng) for _ in range(2)]
    sharp, blurry = photo_clip(picture, cfg, rng, others)
    blur_lr, sharp_lr = degrade_clip(sharp, blurry, cfg, rng)
    write_clip(folder, "demo", sharp, blur_lr, sharp_lr, cfg.scale)
    return folder


def _label(frame: np.ndarray, text: str) -> np.ndarray:
    import cv2

    out = frame.copy()
    cv2.rectangle(out, (0, 0), (8 + 9 * len(text), 22), (0, 0, 0), -1)
    cv2.putText(out, text, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _free_folder(base: Path) -> Path:
    if not base.exists():
        return base
    n = 2
    while Path(f"{base}-{n}").exists():
        n += 1
    return Path(f"{base}-{n}")


def run_demo(output: str | None = None, *, overwrite: bool = False, frames: int = 12, progress: bool = True,
             weights: str | None = None, precision: str = "auto") -> dict:
    """The whole demo; returns the JSON-ready scores of the model and of bicubic."""
    import shutil

    from .checkpoints import BUILTIN, load_checkpoint
    from .data.datasets import find_clips
    from .evaluate.methods import ModelMethod, baseline
    from .evaluate.report import markdown_tables, model_maps, write_report
    from .evaluate.runs import clip_window, evaluate_methods
    from .evaluate.scoring import ScoreOptions

    if output is None:
        folder = _free_folder(Path("vsrdb-demo"))
    else:
        folder = Path(output)
        if (folder.exists() or folder.is_symlink()) and not overwrite:
            raise InputError(f"{folder}: exists; pass --overwrite to replace it, or choose another folder")
        problem = not_replaceable(folder) if folder.exists() else None
        if problem:
            raise InputError(f"{folder}: {problem}")
    model = load_checkpoint(weights or BUILTIN)
    start = time.perf_counter()
    tmp = folder.with_name(f".{folder.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        print(f"making a {frames}-frame blurry low-resolution clip from a procedural scene ...")
        data = make_demo_clip(tmp / "data", frames=frames)
        clips = find_clips("reds", data, split="all")
        chosen = resolve_precision(precision, "cpu")
        print(f"restoring with the built-in model, {chosen.describe()} ...")
        kernels.prepare(note=print)  # a first build says so, instead of a silent half minute
        methods = [ModelMethod("vsrdb-builtin", model, precision=chosen), baseline("bicubic")]
        options = ScoreOptions(num_seq=model.frames.scored_window)
        outputs: dict[str, list[Tensor]] = {m.name: [] for m in methods}
        results = evaluate_methods(methods, clips, options, progress=progress,
                                   on_frame=lambda m, c, i, out: outputs[m].append(out))
        _write_side_by_side(tmp / "side_by_side.mp4", outputs["bicubic"], outputs["vsrdb-builtin"], list(clips[0].sharp))
        key = next(iter(results[0].samples))
        window = clip_window(clips[0], key[1], model.frames.length)
        write_report(results, tmp / "report", options, title="vsrdb demo: built-in model vs bicubic",
                     command="vsrdb demo", maps={key: model_maps(model, window)})
        mark_output_folder(tmp, "vsrdb demo")
        replace_atomically(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(markdown_tables(results, options).split("\n\nPer clip:")[0])
    print(f"\nwrote {folder}/side_by_side.mp4 (bicubic | vsrdb | ground truth), {folder}/report/report.html "
          f"and the clip under {folder}/data, in {time.perf_counter() - start:.0f} s")
    return {r.name: r.to_json() for r in results} | {"folder": str(folder)}


def _write_side_by_side(path: Path, bicubic: list[Tensor], restored: list[Tensor], sharp: list[Path]) -> None:
    """bicubic | restored | ground truth, labelled, as an H.264 video."""
    from fractions import Fraction

    from .video import open_writer, read_image, to_array

    with open_writer(path, fps=Fraction(6)) as writer:
        for b, r, s in zip(bicubic, restored, sharp):
            row = np.concatenate([_label(to_array(b), "bicubic x4"), _label(to_array(r), "vsrdb built-in"),
                                  _label(read_image(s)[:, :, :3], "ground truth")], axis=1)
            writer.write(row)
