"""Restoring many inputs, in one process or spread over several (torchrun).

    torchrun --nproc_per_node=N [--nnodes M ...] -m vsrdb restore INPUTS -o OUTDIR

The first process plans every job (checks, formats, tiles, work folders) and hands the plan
to the others; the work units (segments of every file) are then dealt out round-robin, each
process restoring its own on its own GPU (LOCAL_RANK) or CPU cores. When all are done the
first process joins each file. Units are independent and the tile plan is shared, so the
outputs equal a one-process run's (with the same number of threads per process). Several
machines need the inputs and OUTDIR on a file system they share.
"""

from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from ..devices import pick_device
from ..errors import InputError, printable
from ..files import write_atomically
from ..models.family import RestorationModel
from .dist import Dist
from .job import Job, RestoreOptions, model_fingerprint, work_folder
from .restorer import Restorer

__all__ = ["run_jobs", "restore_video", "JobResult", "ProgressFile"]


@dataclass
class JobResult:
    input: str
    output: str
    status: str  # "done", "skipped", "failed"
    message: str = ""
    frames: int = 0
    seconds: float = 0.0
    restored: int = 0  # frames the model restored in this run (fewer than ``frames`` after --resume)


class ProgressFile:
    """Progress as JSON in a file, for programs that watch a run (``vsrdb serve``, scripts):
    ``{"input", "output", "frames_done", "frames_total", "state"}``, rewritten atomically at
    most every ``interval`` seconds and at each job's start and end. ``frames_done`` counts
    the frames of earlier runs' finished segments too, so a resumed job continues its count."""

    def __init__(self, path: str | os.PathLike, interval: float = 0.25) -> None:
        self.path = Path(path)
        self.interval = interval
        self._last = 0.0
        self.state: dict = {}

    def update(self, *, force: bool = False, **fields) -> None:
        self.state.update(fields)
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            write_atomically(self.path, json.dumps(self.state))


def run_jobs(pairs: list[tuple[Path, Path]], model: RestorationModel, opts: RestoreOptions, *, batch: bool,
             device: str = "auto", overwrite: bool = False, resume: bool = False, restart: bool = False,
             progress: bool = True, dist: Dist | None = None, log: Callable[[str], None] | None = None,
             progress_file: ProgressFile | None = None) -> list[JobResult]:
    """Plan, restore and finish every (input, output) pair; returns one result each (on every rank).
    ``progress_file``: where this process also reports its frames (see ``ProgressFile``)."""
    dist = dist or Dist()
    say = log or (lambda text: print(printable(text), file=sys.stderr))
    say0 = say if dist.rank == 0 else (lambda text: None)
    dev = pick_device(device, local_rank=dist.local_rank if dist.world > 1 else None)
    # The fingerprint is of the weights as loaded, before the Restorer casts them; the
    # precision is recorded in the job beside it.
    fingerprint = model_fingerprint(model) if dist.rank == 0 else ""
    restorer = Restorer(model, device=dev, precision=opts.precision, tile=opts.tile, overlap=opts.overlap,
                        max_memory=opts.max_memory, deflicker=opts.deflicker)
    results: dict[int, JobResult] = {}
    specs: list = []
    if dist.rank == 0:
        notes: set[str] = set()

        def note(text: str) -> None:
            if text not in notes:
                notes.add(text)
                say(f"note: {text}")

        for n, (inp, out) in enumerate(pairs):
            if batch:
                out.parent.mkdir(parents=True, exist_ok=True)
                if (out.exists() or out.is_symlink()) and not overwrite and not work_folder(out).exists():
                    results[n] = JobResult(str(inp), str(out), "skipped", "exists")
                    specs.append(None)
                    continue
            try:
                job = Job.plan(inp, out, restorer, fingerprint, opts, overwrite=overwrite, resume=resume,
                               restart=restart, note=note)
                specs.append(job.spec)
            except InputError as e:
                if not batch:
                    raise
                results[n] = JobResult(str(inp), str(out), "failed", str(e))
                specs.append(None)
    specs, results = dist.broadcast((specs, results))
    if all(s is None for s in specs) and not results:
        return []
    jobs = {n: Job(s) for n, s in enumerate(specs) if s is not None}
    units: list[tuple[int, tuple[int, ...]]] = []
    for n, job in jobs.items():
        if restorer.recurrent:  # a recurrent model's segments follow each other: one process per file
            units.append((n, tuple(job.pending())))
        else:
            units += [(n, (k,)) for k in job.pending()]
    mine: dict[int, list[int]] = {}  # job -> its segments this process restores
    for u, (n, segs) in enumerate(units):
        if u % dist.world == dist.rank:
            mine.setdefault(n, []).extend(segs)
    failures: dict[int, str] = {}
    restored: dict[int, int] = {}  # job -> frames this process restored
    kept: set[int] = set()  # failed jobs whose finished work stays for --resume
    started: dict[int, float] = {}
    for n, ks in mine.items():
        job = jobs[n]
        started[n] = time.perf_counter()
        total = sum(_segment_len(job, k) for k in ks)
        desc = printable(job.input.name) + (f" [rank {dist.rank}]" if dist.world > 1 else "")
        bar = _bar(total, desc, progress, position=dist.local_rank)
        counted = [job.spec.frames - sum(_segment_len(job, k) for k in job.pending())]

        def on_frame(bar=bar, counted=counted) -> None:
            bar.update(1)
            counted[0] += 1
            if progress_file is not None:
                progress_file.update(frames_done=counted[0])

        if progress_file is not None:
            progress_file.update(force=True, input=str(job.input), output=str(job.output), state="restoring",
                                 frames_done=counted[0], frames_total=job.spec.frames)
        try:
            with bar:
                restored[n] = job.run(restorer, ks, on_frame=on_frame)
        except InputError as e:
            failures[n] = str(e)
            if not batch and dist.world == 1:
                job.discard()
                raise
        except (ValueError, RuntimeError) as e:
            failures[n] = f"{job.input}: {e}"
            if not batch and dist.world == 1:
                job.discard()
                raise InputError(failures[n]) from None
        except OSError as e:  # a full disk or a failing drive: the frames finished so far stay
            failures[n] = _write_failure(job, e)
            kept.add(n)
            if not batch and dist.world == 1:
                raise InputError(failures[n]) from None
    all_failures: dict[int, str] = {}
    all_restored: dict[int, int] = {}
    for f, k, r in dist.gather((failures, kept, restored)):
        all_failures.update(f)
        kept |= k
        for n, count in r.items():
            all_restored[n] = all_restored.get(n, 0) + count
    if dist.rank == 0:
        for n, job in jobs.items():
            start = started.get(n, time.perf_counter())
            if n in all_failures:
                if n not in kept:
                    job.discard()
                results[n] = JobResult(str(job.input), str(job.output), "failed", all_failures[n])
                continue
            try:
                if progress_file is not None:
                    progress_file.update(force=True, state="joining")
                frames = job.finish(note=lambda text: say0(f"note: {text}"))
                if progress_file is not None:
                    progress_file.update(force=True, state="done", frames_done=frames)
                results[n] = JobResult(str(job.input), str(job.output), "done", "", frames,
                                       time.perf_counter() - start, all_restored.get(n, 0))
            except InputError as e:
                job.discard()
                if not batch and dist.world == 1:
                    raise
                results[n] = JobResult(str(job.input), str(job.output), "failed", str(e))
            except OSError as e:
                message = _write_failure(job, e)
                if not batch and dist.world == 1:
                    raise InputError(message) from None
                results[n] = JobResult(str(job.input), str(job.output), "failed", message)
    results = dist.broadcast(results)
    return [results[n] for n in sorted(results)]


def _write_failure(job: Job, e: OSError) -> str:
    where = f" {Path(e.filename).name}" if e.filename else ""
    return (f"{job.output}: writing{where} failed ({e.strerror or e}); the finished frames are kept in "
            f"{job.work}: free space (or fix the drive) and rerun with --resume")


def _segment_len(job: Job, k: int) -> int:
    start, stop = job.spec.bounds(k)
    return (stop if stop is not None else job.spec.frames) - start


def _bar(total: int, desc: str, enabled: bool, position: int = 0):
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=desc, disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                position=position, leave=True)


def threads_for(dist: Dist, device: torch.device) -> int | None:
    """CPU threads per process when several share a machine's cores (None: leave torch's default)."""
    if dist.local_world > 1 and device.type == "cpu":
        return max(1, (os.cpu_count() or 1) // dist.local_world)
    return None


def restore_video(input_path: str, output_path: str, model, *, device: str = "auto", progress: bool = True,
                  overwrite: bool = False, resume: bool = False, **options) -> dict:
    """Restore one video file or frame folder into a video file or PNG folder (one process).
    ``options`` are ``RestoreOptions`` fields. Returns a summary; raises InputError."""
    opts = RestoreOptions(**options)
    start = time.perf_counter()
    [result] = run_jobs([(Path(input_path), Path(output_path))], model, opts, batch=False, device=device,
                        overwrite=overwrite, resume=resume, progress=progress)
    elapsed = time.perf_counter() - start
    return {"frames": result.frames, "restored": result.restored, "seconds": elapsed,
            "seconds_per_frame": elapsed / max(result.restored, 1)}
