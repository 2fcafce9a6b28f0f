"""What the command line's INPUTs and OUTPUT mean: one input and its output, or a batch.

The first step of a restore: inputs -> (input, output) pairs -> jobs (``batch``) -> work
folders and segments (``job``) -> the Restorer -> the encoder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..video import IMAGE_EXTENSIONS, OUTPUT_CONTAINERS, VIDEO_EXTENSIONS, natural_key

__all__ = ["expand_inputs"]


def expand_inputs(inputs: list[str], output: str, *, ext: str | None,
                  warn: Callable[[str], None] | None = None) -> tuple[list[tuple[Path, Path]], bool]:
    """(input, output) pairs, and whether this is a batch (OUTPUT is a folder of outputs).

    One input that is a video file or a folder of frames: OUTPUT is its output. Several
    inputs, or a folder of videos: OUTPUT is a folder; each output is named after its input,
    with ``ext`` (default: the input's own container when it can be written, else .mkv; frame
    folders give PNG folders)."""
    paths = [Path(p) for p in inputs]
    expanded: list[Path] = []
    batch = len(paths) > 1
    sources: dict[Path, Path] = {}  # a folder of videos' videos -> the folder
    for p in paths:
        if p.is_dir():
            # What a folder is follows from what it holds: any video makes it a folder of videos
            # (its images are reported and skipped); a frame folder holds frames only.
            files = [q for q in p.iterdir() if q.is_file() and not q.name.startswith(".")]
            videos = sorted((q for q in files if q.suffix.lower() in VIDEO_EXTENSIONS), key=lambda q: natural_key(q.name))
            if videos:
                images = [q.name for q in files if q.suffix.lower() in IMAGE_EXTENSIONS]
                if images and warn is not None:
                    warn(f"{p}: a folder of videos; its {len(images)} image file(s) ({', '.join(sorted(images)[:3])}"
                         f"{', ...' if len(images) > 3 else ''}) are skipped (a frame folder holds frames only)")
                expanded += videos
                sources.update({v: p for v in videos})
                batch = True
                continue
        expanded.append(p)
    if ext is not None:
        ext = "" if ext.lower() in ("png", ".png", "frames") else ("." + ext.lstrip(".")).lower()
        if ext and ext not in OUTPUT_CONTAINERS:
            raise InputError(f"--ext {ext}: unknown output extension (use one of "
                             f"{', '.join(sorted(OUTPUT_CONTAINERS))}, or png for frame folders)")
    if not batch:
        return [(expanded[0], Path(output))], False
    outdir = Path(output)
    if outdir.suffix.lower() in OUTPUT_CONTAINERS:
        raise InputError(f"{outdir}: several inputs need an output folder, not a file name")
    pairs: list[tuple[Path, Path]] = []
    seen: dict[Path, Path] = {}
    for p in expanded:
        if ext is not None:
            suffix = ext if (p.is_file() or ext) else ""
        elif p.is_dir():
            suffix = ""
        else:
            suffix = p.suffix.lower() if p.suffix.lower() in OUTPUT_CONTAINERS else ".mkv"
        out = outdir / (p.stem if p.is_file() else p.name)
        out = out.with_name(out.name + suffix)
        if out in seen:
            raise InputError(f"{p}: its output {out} would also be {seen[out]}'s (same name); rename one of them")
        seen[out] = p
        pairs.append((p, out))
    # An output folder in (or equal to) an input folder would be scanned as input next time,
    # and its outputs could be taken for inputs now.
    real_out = Path(os.path.realpath(outdir))
    for folder in {*(p for p in paths if p.is_dir()), *sources.values()}:
        real_in = Path(os.path.realpath(folder))
        if real_out == real_in or real_in in real_out.parents:
            raise InputError(f"{outdir}: lies inside the input folder {folder}; choose an output folder outside it")
    return pairs, True
