"""The jobs behind ``vsrdb serve``: a folder per job that survives restarts, and one runner
per server that restores them one at a time.

A job is restored by the same command a user would type, ``vsrdb restore INPUT -o OUTPUT
--resume``, run as a child process inside the job's folder. That gives the page exactly the
command line's behaviour (resumable work folders, every frame or an error, sound and colour
kept, the same one-line errors), keeps the server responsive while the model runs, and lets
a stop be a Ctrl-C (SIGINT) the child already handles by keeping its finished work. The
child asks to die with the server (``PR_SET_PDEATHSIG``), so a killed server never leaves
a restore running that the next server would race; the next server resumes the job from
its work folder and the output equals an uninterrupted run's.

Layout of ``WORKDIR/jobs/ID/``: ``job.json`` (this module's record), ``input.EXT`` (the
upload; or ``input/``, frames from a zip), ``output.EXT`` (or ``output/``, PNG frames, and
``output.zip`` for download), ``progress.json`` (written by the child), ``log.txt`` (the
child's messages), ``before.png``/``after.png`` (one frame for the comparison) and
``preview-input.mp4`` (and ``preview-output.mp4`` when the output does not play in a
browser). Names from the browser never become paths: every name here is fixed.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
import zipfile
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from pathlib import Path
from typing import Callable

from ..errors import InputError
from ..files import format_bytes, write_atomically
from ..interrupts import PARENT_ENV
from ..video import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS, natural_key

__all__ = ["JobRecord", "JobStore", "Runner", "ACTIVE", "safe_display_name", "extract_frames_zip"]

# A job's life: uploading -> queued -> running -> done | failed | stopped; "interrupted" is a
# running or queued job whose server went away: the next server queues it again.
ACTIVE = ("queued", "running", "stopping")
PREVIEW_FRAMES = 900  # the comparison videos cover at most this many frames


@dataclass
class JobRecord:
    """One job as ``job.json`` stores it and the API shows it."""

    id: str
    name: str  # the browser's file name, for display and the download's name only
    input: str  # fixed name inside the job folder
    output: str
    options: dict  # model, container, codec, precision, crf, fps
    status: str = "uploading"
    error: str = ""
    created: float = field(default_factory=time.time)
    queued: float = 0.0
    finished: float = 0.0
    size: int = 0  # bytes uploaded
    frames_done: int = 0
    frames_total: int = 0
    fps: float = 0.0  # frames per second of this run
    eta: float | None = None  # seconds
    stage: str = ""  # what the child reports it is doing
    compare: dict = field(default_factory=dict)  # before/after frame and video names, when done

    def public(self) -> dict:
        d = asdict(self)
        d["progress"] = (self.frames_done / self.frames_total) if self.frames_total else (
            1.0 if self.status == "done" else 0.0)
        d["download_name"] = download_name(self)
        return d


def safe_display_name(name: str) -> str:
    """The last component of a browser's file name, without control or path characters (it is
    only ever shown and offered as a download name, never used as a path)."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = re.sub(r"[\x00-\x1f\x7f<>:\"|?*]", "", base).strip().lstrip(".")
    return base[:120] or "upload"


def download_name(job: JobRecord) -> str:
    stem = Path(job.name).stem if Path(job.name).suffix else job.name
    stem = re.sub(r"[^\w.\- ]", "_", stem)[:100] or "restored"
    out = Path(job.output)
    return f"{stem}-vsrdb{out.suffix}" if out.suffix else f"{stem}-vsrdb-frames.zip"


def extract_frames_zip(archive: Path, dest: Path, *, max_bytes: int, name: str | None = None) -> int:
    """Frames from a zip into ``dest`` as ``000000.png``... in natural order of their names in
    the archive. Members are only read, never extracted by name, so no path from the archive
    is ever written; anything but images is skipped. Returns the frame count; InputError
    naming the archive (``name``: as the user called it) when it is unreadable, encrypted,
    holds no frames, unpacks past ``max_bytes`` or would not fit on the disk."""
    shown = name or archive.name
    try:
        with zipfile.ZipFile(archive) as z:
            members = [m for m in z.infolist() if not m.is_dir()
                       and Path(m.filename).suffix.lower() in IMAGE_EXTENSIONS
                       and not any(part.startswith((".", "__MACOSX")) for part in re.split(r"[\\/]", m.filename))]
            if not members:
                raise InputError(f"{shown}: the zip holds no png/jpg/tif frames")
            size = sum(m.file_size for m in members)
            if size > max_bytes:
                raise InputError(f"{shown}: the frames unpack to more than the upload limit "
                                 f"({format_bytes(max_bytes)})")
            free = shutil.disk_usage(archive.parent).free
            if size + (64 << 20) > free:  # and room to spare for the restore's own files
                raise InputError(f"{shown}: the frames unpack to {format_bytes(size)}, and the work folder's disk "
                                 f"has {format_bytes(free)} free")
            if any(m.flag_bits & 0x1 for m in members):
                raise InputError(f"{shown}: the zip is encrypted (password-protected); upload it unencrypted")
            members.sort(key=lambda m: natural_key(m.filename))
            dest.mkdir()
            for i, m in enumerate(members):
                with z.open(m) as src, open(dest / f"{i:06d}{Path(m.filename).suffix.lower()}", "wb") as out:
                    shutil.copyfileobj(src, out, 1 << 20)
            return len(members)
    except NotImplementedError as e:  # zipfile's answer to a compression method it lacks
        shutil.rmtree(dest, ignore_errors=True)
        raise InputError(f"{shown}: the zip uses a compression method this server cannot read ({e}); "
                         "use ordinary (deflate) compression") from None
    except (zipfile.BadZipFile, OSError, EOFError, RuntimeError) as e:
        shutil.rmtree(dest, ignore_errors=True)
        raise InputError(f"{shown}: not a readable zip archive ({e})") from None


def input_suffix(name: str) -> str:
    """The stored upload's suffix: the browser's, when it is a known video or zip suffix."""
    suffix = Path(name).suffix.lower()
    return suffix if suffix in VIDEO_EXTENSIONS or suffix == ".zip" else ".video"


class JobStore:
    """Every job under ``root/jobs``; thread-safe; each change is saved and bumps ``version``."""

    def __init__(self, root: Path) -> None:
        self.root = root / "jobs"
        self.root.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.version = 0
        self.jobs: dict[str, JobRecord] = {}
        for folder in sorted(self.root.iterdir()):
            record = folder / "job.json"
            if not record.is_file():
                shutil.rmtree(folder, ignore_errors=True)  # an upload cut before its record was written
                continue
            job = _read_record(folder, record)
            if job is None:
                continue  # unreadable or not what this server writes: left alone, never run
            if job.status == "uploading":  # the server died mid-upload: nothing to resume
                job.status, job.error = "failed", "the upload was cut off when the server stopped; upload again"
            elif job.status in ACTIVE:
                job.status = "interrupted"
            self.jobs[job.id] = job

    def folder(self, job_id: str) -> Path:
        if not re.fullmatch(r"[0-9a-f]{16}", job_id):
            raise KeyError(job_id)
        return self.root / job_id

    def new(self, name: str, options: dict) -> JobRecord:
        job_id = secrets.token_hex(8)
        suffix = input_suffix(name)
        container = options["container"]
        job = JobRecord(id=job_id, name=safe_display_name(name), input="input" + suffix,
                        output="output" if container == "png" else f"output.{container}", options=options)
        self.folder(job_id).mkdir(mode=0o700)
        with self.lock:
            self.jobs[job_id] = job
            self._save(job)
        return job

    def get(self, job_id: str) -> JobRecord:
        with self.lock:
            return self.jobs[job_id]

    def all(self) -> list[JobRecord]:
        with self.lock:
            return sorted(self.jobs.values(), key=lambda j: j.created)

    def update(self, job: JobRecord, *, save: bool = True, **fields) -> None:
        with self.lock:
            for k, v in fields.items():
                setattr(job, k, v)
            if save:
                self._save(job)
            self.version += 1
            self.changed.notify_all()

    def remove(self, job: JobRecord) -> None:
        with self.lock:
            self.jobs.pop(job.id, None)
            self.version += 1
            self.changed.notify_all()
        shutil.rmtree(self.folder(job.id), ignore_errors=True)

    def next_queued(self) -> JobRecord | None:
        with self.lock:
            queued = [j for j in self.jobs.values() if j.status == "queued"]
            return min(queued, key=lambda j: j.queued) if queued else None

    def _save(self, job: JobRecord) -> None:
        folder = self.folder(job.id)
        if folder.is_dir():
            write_atomically(folder / "job.json", json.dumps(asdict(job), indent=1))


STATUSES = ("uploading", "queued", "running", "stopping", "done", "failed", "stopped", "interrupted")
OPTION_TYPES = {"model": (str,), "container": (str,), "codec": (str, type(None)), "precision": (str,),
                "crf": (int, type(None)), "fps": (str, int, float, type(None)), "outscale": (int, type(None)),
                "scale": (int, type(None)), "deflicker": (int, float, type(None))}


def _read_record(folder: Path, record: Path) -> JobRecord | None:
    """``job.json`` as a JobRecord when it is one this server could have written: its id is its
    folder's name, its input and output are the fixed names inside that folder, and every
    field and option has its type. Anything else (a damaged or planted record) is None: a
    record decides which files a restore reads and writes."""
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        job = JobRecord(**data)
    except (OSError, ValueError, TypeError):
        return None
    hints = {f.name: f.type for f in fields(JobRecord)}
    numbers = [k for k, t in hints.items() if t in ("float", "int", "float | None")]
    ok = (job.id == folder.name and re.fullmatch(r"[0-9a-f]{16}", job.id) is not None
          and isinstance(job.name, str) and isinstance(job.error, str) and isinstance(job.stage, str)
          and isinstance(job.input, str) and re.fullmatch(r"input(\.[a-z0-9]{1,6})?", job.input) is not None
          and isinstance(job.output, str) and re.fullmatch(r"output(\.[a-z0-9]{1,6})?", job.output) is not None
          and job.status in STATUSES and isinstance(job.compare, dict)
          and all(isinstance(getattr(job, k), (int, float)) and not isinstance(getattr(job, k), bool)
                  for k in numbers if getattr(job, k) is not None)
          and isinstance(job.options, dict) and set(job.options) <= set(OPTION_TYPES)
          and all(isinstance(v, OPTION_TYPES[k]) and not isinstance(v, bool) for k, v in job.options.items())
          and all(isinstance(v, str) and re.fullmatch(r"[\w.-]+", v) is not None for v in job.compare.values()))
    if not ok:
        print(f"vsrdb serve: {record}: not a job record this server wrote; left alone", file=sys.stderr)
        return None
    return job


class Runner:
    """Restores queued jobs one at a time, each as a ``vsrdb restore`` child process."""

    def __init__(self, store: JobStore, weights: Callable[[str], str], *, device: str = "auto",
                 threads: int | None = None, max_upload: int = 0) -> None:
        self.store = store
        self.weights = weights  # model id -> what --weights gets
        self.device = device
        self.threads = threads
        self.max_upload = max_upload
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._child: subprocess.Popen | None = None
        self._current: JobRecord | None = None
        self._cancel: set[str] = set()

    # --- control --------------------------------------------------------------------------
    def start(self) -> None:
        # Jobs a previous server was running (or had queued) go on where they stopped.
        for job in self.store.all():
            if job.status == "interrupted":
                self.enqueue(job)
        self._thread = threading.Thread(target=self._loop, name="vsrdb-serve-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the runner; a running job gets Ctrl-C, keeps its work and is resumed next start."""
        self._stop.set()
        with self.store.lock:
            self.store.changed.notify_all()
        child, job = self._child, self._current
        if child is not None and child.poll() is None:
            child.send_signal(signal.SIGINT)
            try:
                child.wait(timeout)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if job is not None:
            self.store.update(job, status="interrupted", stage="")
        if self._thread is not None:
            self._thread.join(timeout)

    def enqueue(self, job: JobRecord) -> None:
        self.store.update(job, status="queued", error="", queued=time.time(), stage="")

    def cancel(self, job: JobRecord) -> None:
        """Stop a queued or running job; its finished work stays for a resume."""
        with self.store.lock:
            if job.status == "queued":
                self.store.update(job, status="stopped", stage="")
                return
            if job.status != "running":
                raise InputError(f"{job.name}: is {job.status}, not running or queued")
            self._cancel.add(job.id)
            self.store.update(job, status="stopping", save=False)
        child = self._child
        if child is not None and child.poll() is None and self._current is job:
            child.send_signal(signal.SIGINT)

    # --- the loop -------------------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            with self.store.lock:
                job = self.store.next_queued()
                if job is None:
                    self.store.changed.wait(1.0)
                    continue
                self._current = job
                self.store.update(job, status="running", stage="starting", fps=0.0, eta=None)
            try:
                self._run(job)
            except Exception as e:  # a bug here must not stop the queue
                self.store.update(job, status="failed", error=f"vsrdb serve: internal error: {e}")
            finally:
                self._current = None

    def command(self, job: JobRecord) -> list[str]:
        opts = job.options
        cmd = [sys.executable, "-m", "vsrdb", "restore", job.input, "-o", job.output, "--resume", "--quiet",
               "--progress-file", "progress.json", "--weights", self.weights(opts["model"]),
               "--precision", opts["precision"], "--device", self.device]
        if opts.get("codec"):
            cmd += ["--codec", opts["codec"]]
        if opts.get("crf") is not None:
            cmd += ["--crf", str(opts["crf"])]
        if opts.get("fps"):
            cmd += ["--fps", str(opts["fps"])]
        if opts.get("outscale"):
            cmd += ["--outscale", str(opts["outscale"])]
        if opts.get("scale"):
            cmd += ["--scale", str(opts["scale"])]
        if opts.get("deflicker"):
            cmd += ["--deflicker", str(opts["deflicker"])]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        return cmd

    def _run(self, job: JobRecord) -> None:
        folder = self.store.folder(job.id)
        if job.input.endswith(".zip") and not (folder / "input").is_dir():
            try:
                extract_frames_zip(folder / job.input, folder / "input", max_bytes=self.max_upload or 1 << 40,
                                   name=job.name)
            except InputError as e:
                self.store.update(job, status="failed", error=f"vsrdb restore: error: {e}", finished=time.time())
                return
            (folder / job.input).unlink()
        if job.input.endswith(".zip"):
            self.store.update(job, input="input")
        (folder / "progress.json").unlink(missing_ok=True)
        env = {**os.environ, "PYTHONUNBUFFERED": "1", PARENT_ENV: str(os.getpid())}
        cmd = self.command(job)
        with open(folder / "log.txt", "ab") as log:
            log.write(f"--- {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(cmd[1:])}\n".encode())
            log.flush()
            child = subprocess.Popen(cmd, cwd=folder, stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=log, env=env, start_new_session=True)
        self._child = child
        first: tuple[float, int] | None = None
        while child.poll() is None:
            time.sleep(0.25)
            progress = _read_json(folder / "progress.json")
            if progress:
                done, total = int(progress.get("frames_done", 0)), int(progress.get("frames_total", 0))
                now = time.monotonic()
                if first is None:
                    first = (now, done)
                rate = (done - first[1]) / (now - first[0]) if now > first[0] and done > first[1] else 0.0
                eta = (total - done) / rate if rate > 0 else None
                if (done, total) != (job.frames_done, job.frames_total) or progress.get("state") != job.stage:
                    self.store.update(job, save=False, frames_done=done, frames_total=total, fps=rate, eta=eta,
                                      stage=progress.get("state", ""))
        self._child = None
        rc = child.returncode
        cancelled = job.id in self._cancel
        self._cancel.discard(job.id)
        if self._stop.is_set() and not cancelled:
            return  # the server is stopping: stop() marks the job interrupted
        if rc == 0 and (folder / job.output).exists():
            progress = _read_json(folder / "progress.json") or {}
            frames = int(progress.get("frames_done", job.frames_total))
            self.store.update(job, stage="making the comparison", save=False)
            compare = {}
            try:
                compare = make_comparison(folder, job, frames)
            except Exception as e:  # the output is fine; only the comparison is missing
                with open(folder / "log.txt", "a") as log:
                    log.write(f"comparison failed: {e}\n")
            self.store.update(job, status="done", stage="", error="", finished=time.time(), eta=0.0,
                              frames_done=frames, frames_total=max(frames, job.frames_total), compare=compare)
        elif cancelled:
            self.store.update(job, status="stopped", stage="", eta=None)
        else:
            self.store.update(job, status="failed", stage="", eta=None, finished=time.time(),
                              error=_error_line(folder / "log.txt", job, rc))


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _error_line(log: Path, job: JobRecord, returncode: int | None = None) -> str:
    """The child's one-line error, with the stored file's name replaced by the user's; a child
    ended by a signal (killed for memory, say) is named so."""
    try:
        lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    start = max((i for i, ln in enumerate(lines) if ln.startswith("--- ")), default=-1) + 1
    lines = lines[start:]
    errors = [ln for ln in lines if ln.startswith("vsrdb restore: error:")]
    if returncode is not None and returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        why = " (the system may have run out of memory)" if sig == "SIGKILL" else ""
        line = f"vsrdb restore was killed by {sig}{why}; its finished work is kept: resume the job to continue"
    elif errors:
        line = errors[-1]
    elif lines and lines[-1].startswith("vsrdb restore: interrupted"):
        line = lines[-1]
    elif lines:
        line = f"vsrdb restore failed: {lines[-1]} (see log.txt in the job folder)"
    else:
        line = "vsrdb restore failed without a message"
    return re.sub(rf"(?<![\w.]){re.escape(job.input)}(?![\w])", job.name, line)


# --- the comparison ---------------------------------------------------------------------------

def make_comparison(folder: Path, job: JobRecord, frames: int) -> dict:
    """One frame before (the input, bicubic to the output's size) and after, as PNG, and the
    two videos the page plays side by side: the input as an H.264 preview, and the output
    itself when a browser plays it (else an H.264 preview of it)."""
    import cv2

    fps = Fraction(job.options["fps"]) if job.options.get("fps") else None
    out_path = folder / job.output
    index = 0 if frames < 3 else min(frames // 2, 60)
    after = _rgb8(_frame_at(out_path, index, fps))
    before = _rgb8(_frame_at(folder / job.input, index, fps))
    before = cv2.resize(before, (after.shape[1], after.shape[0]), interpolation=cv2.INTER_CUBIC)
    for name, arr in (("before.png", before), ("after.png", after)):
        ok, buf = cv2.imencode(".png", arr[:, :, ::-1].copy())
        if not ok:
            raise OSError(f"{name}: could not encode")
        write_atomically(folder / name, buf.tobytes())
    compare = {"before": "before.png", "after": "after.png", "frame": index,
               "size": [int(after.shape[1]), int(after.shape[0])]}
    _write_preview(folder / job.input, folder / "preview-input.mp4", fps)
    compare["input_video"] = "preview-input.mp4"
    if not out_path.is_dir() and _plays_in_browser(out_path):
        compare["output_video"] = job.output
    else:
        _write_preview(out_path, folder / "preview-output.mp4", fps)
        compare["output_video"] = "preview-output.mp4"
    return compare


def _rgb8(frame):
    """Any frame ``open_frames`` yields (grey, RGBA, 16-bit) as 8-bit RGB ``[H, W, 3]``."""
    import numpy as np

    if frame.dtype != np.uint8:
        frame = (frame.astype(np.float32) / 257.0).round().astype(np.uint8)
    if frame.ndim == 2:
        frame = frame[:, :, None]
    if frame.shape[2] < 3:
        frame = np.repeat(frame[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(frame[:, :, :3])


def _frame_at(path: Path, index: int, fps: Fraction | None):
    from ..video import open_frames

    with open_frames(path, fps=fps) as src:
        for i, frame in enumerate(src):
            if i == index:
                return frame
    raise InputError(f"{path.name}: has no frame {index}")


# Chromium plays these (container suffix -> codecs) when the pixel format is 8-bit 4:2:0.
_PLAYABLE = {".mp4": {"h264", "vp9", "av1"}, ".m4v": {"h264"}, ".mov": {"h264"}, ".webm": {"vp9", "av1"}}


def _plays_in_browser(path: Path) -> bool:
    import av

    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return cc.name in _PLAYABLE.get(path.suffix.lower(), set()) and cc.pix_fmt == "yuv420p"


def _write_preview(src_path: Path, dest: Path, fps: Fraction | None) -> None:
    """An 8-bit H.264 preview (even size, at most ``PREVIEW_FRAMES`` frames) for the page."""
    import numpy as np

    from ..video import open_frames, open_writer

    with open_frames(src_path, fps=fps) as src:
        h, w = src.height + src.height % 2, src.width + src.width % 2  # 4:2:0 needs even sizes
        with open_writer(dest, fps=src.fps if src.fps and src.fps > 0 else Fraction(30), overwrite=True,
                         crf=20) as out:
            for i, frame in enumerate(src):
                if i >= PREVIEW_FRAMES:
                    break
                frame = _rgb8(frame)
                if frame.shape[:2] != (h, w):
                    frame = np.pad(frame, ((0, h - frame.shape[0]), (0, w - frame.shape[1]), (0, 0)), mode="edge")
                out.write(frame)
