"""The built-in model, version 4, in one short GPU run (issue 38, item 6).

Two steps, because the GPU machine reaches no network and takes at most 64 MiB along:

    python scripts/gpu_builtin_v4.py prepare data/gpu_v4          # here: photos (1024 px), held-out clips,
                                                                  # and a PyAV wheel for the GPU image (46 MB)
    python3 scripts/gpu_builtin_v4.py run --data data/gpu_v4 --out $OUT --minutes 8   # on the GPU machine

With the device tool: ``run(command="python3 scripts/gpu_builtin_v4.py run --data data/gpu_v4 --out $OUT
--minutes 8", carry=["data/gpu_v4"], timeout_s=600)``. The GPU image has PyTorch, OpenCV and the
rest but not PyAV; ``run`` installs the carried wheel when ``av`` is missing, and runs vsrdb from
this checkout's ``src`` when it is not installed.

``run`` synthesises the training clips from the photographs on the machine's own cores (several
``vsrdb synth`` processes side by side), validates on a held-out camera clip (checkpoints are chosen
on real footage, not on synthetic validation), measures the time of a training step and sets the
iterations so the whole run fits ``--minutes``, trains ``fmanet-cpu-l`` in the paper's two stages
with the real-footage degradations, and scores the result and the shipped version 3.1 on every
held-out clip at clean, CRF 23, CRF 28 and noise 3 then CRF 23. Into OUT: ``model/`` (config.json,
model.safetensors), ``heldout.md`` (the per-clip tables), ``log.csv`` and ``summary.json``.

``--tiny`` runs the same steps with fmanet-tiny, two photos and a few iterations on the CPU (the
test suite does); ``--device`` picks the device (default: CUDA when there is one).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
VSRDB = [sys.executable, "-m", "vsrdb"]


def _run(cmd: list[str], **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run([str(c) for c in cmd], check=True, **kw)


def prepare(data: Path, *, max_side: int = 1024) -> None:
    """The photographs (at most ``max_side`` px, JPEG q95) and the held-out clips, into ``data``."""
    import cv2

    tmp = data.with_name(data.name + ".full")
    _run([*VSRDB, "data", "photos", tmp / "photos", "--overwrite"])
    _run([*VSRDB, "data", "clips", data / "heldout", "--overwrite"])
    out = data / "photos"
    out.mkdir(parents=True, exist_ok=True)
    for src in sorted((tmp / "photos").rglob("*")):
        if src.suffix.lower() not in (".jpg", ".jpeg", ".png"):
            continue
        img = cv2.imread(str(src), cv2.IMREAD_COLOR)
        scale = max_side / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        cv2.imwrite(str(out / f"{src.parent.name}--{src.stem}.jpg"), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
    # PyAV for the GPU image (Python 3.12, manylinux x86_64), which lacks it and reaches no index
    wheels = data / "wheels"
    wheels.mkdir(exist_ok=True)
    _run([sys.executable, "-m", "pip", "download", "av", "--only-binary=:all:", "--python-version", "3.12",
          "--platform", "manylinux_2_28_x86_64", "--no-deps", "-d", wheels, "-q"])
    shutil.copy(tmp / "photos" / "manifest.json", data / "photos-manifest.json")
    shutil.copy(tmp / "photos" / "CREDITS.md", data / "CREDITS.md")
    shutil.rmtree(tmp)
    size = sum(f.stat().st_size for f in data.rglob("*") if f.is_file())
    print(f"prepared {data}: {len(list(out.glob('*.jpg')))} photos and the held-out clips, {size / 1e6:.1f} MB")


def _synth_parallel(photos: list[Path], work: Path, *, jobs: int, tiny: bool) -> Path:
    """Training clips from the photos, ``jobs`` synth processes side by side, merged as one REDS set."""
    groups = [photos[i::jobs] for i in range(jobs) if photos[i::jobs]]
    size, clips, frames = ("48x64", "1", "5") if tiny else ("192x256", "8", "16")
    procs = []
    for i, group in enumerate(groups):
        # photo files, not their folder: a folder of images is read as one video's frames
        cmd = [*VSRDB, "synth", *map(str, group), "-o", str(work / f"part{i}"), "--photo-size", size, "--photo-clips", clips,
               "--clip-frames", frames, "--min-shift", "0.25", "--max-shift", "48", "--seed", str(40 + i)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"}))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"synth failed: {err.strip().splitlines()[-1:] or err}")
    merged = work / "train"
    count = 0
    for i in range(len(groups)):
        part = work / f"part{i}"
        for clip in sorted((part / "train_sharp").iterdir()):
            for sub in ("train_sharp", "train_blur_bicubic/X4", "train_sharp_bicubic/X4"):
                if (part / sub / clip.name).exists():
                    dest = merged / sub / f"{count:03d}"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.symlink_to((part / sub / clip.name).resolve())
            count += 1
    print(f"synthesised {count} training clips in {len(groups)} processes", flush=True)
    return merged


def _config(path: Path, *, model: str, root: Path, val: Path, run_dir: Path, netd: int, joint: int, device: str,
            tiny: bool, workers: int) -> Path:
    cfg = {"name": "builtin-v4", "model": model,
           "data": {"layout": "reds", "root": str(root), "val_root": str(val), "patch": 8 if tiny else 48,
                    "batch": 2 if tiny else 16, "workers": workers, "flow": "dis", "val_windows": 2 if tiny else 12,
                    "degrade": "real"},
           "stages": {"netd": {"iterations": netd, "lr": 4.0e-4}, "joint": {"iterations": joint, "lr": 1.0e-3}},
           "run_dir": str(run_dir), "checkpoint_every": max(1, joint // 4), "val_every": max(1, joint // 4),
           "log_every": max(1, joint // 50), "seed": 38, "amp": "auto", "device": device}
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _ready(data: Path) -> None:
    """vsrdb and PyAV importable in this interpreter and in the processes it starts."""
    try:
        import av  # noqa: F401
    except ImportError:
        _run([sys.executable, "-m", "pip", "install", "--no-index", "--find-links", data / "wheels", "av", "-q"])
    try:
        import vsrdb  # noqa: F401
    except ImportError:
        src = str(HERE.parent / "src")
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
        sys.path.insert(0, src)


def run(data: Path, out: Path, *, minutes: float, device: str, tiny: bool) -> None:
    started = time.monotonic()
    data, out = data.resolve(), out.resolve()  # the scoring runs in the work folder
    _ready(data)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "vsrdb-gpu-v4"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    photos = sorted((data / "photos").glob("*.jpg"))[: 2 if tiny else None]
    held = data / "heldout"
    jobs = 1 if tiny else max(1, min(16, (os.cpu_count() or 2) - 2))
    train = _synth_parallel(photos, work, jobs=jobs, tiny=tiny)
    val_clip = held / "tree.avi"  # camera footage: the checkpoint choice sees real motion and texture
    _run([*VSRDB, "synth", val_clip, "-o", work / "val", "--clip-frames", "5" if tiny else "12", "--seed", "1"],
         stdout=subprocess.DEVNULL)
    model = "fmanet-tiny" if tiny else "fmanet-cpu-l"
    workers = 0 if tiny else min(8, jobs)
    # A few steps of each stage measure the step time; the rest of the budget sets the iterations.
    calib = _config(work / "calib.yaml", model=model, root=train, val=work / "val", run_dir=work / "calib",
                    netd=2 if tiny else 10, joint=2 if tiny else 10, device=device, tiny=tiny, workers=workers)
    t = time.monotonic()
    _run([*VSRDB, "train", calib, "--quiet"])
    per_step = (time.monotonic() - t) / (4 if tiny else 20)
    reserve = 30 if tiny else 120  # the held-out scoring and copying the results
    steps = max(4, int((minutes * 60 - (time.monotonic() - started) - reserve) / per_step))
    netd, joint = (2, 2) if tiny else (steps // 5, steps - steps // 5)
    print(f"{per_step:.3f} s/step (with start-up): {netd} + {joint} iterations", flush=True)
    cfg = _config(out / "config.yaml", model=model, root=train, val=work / "val", run_dir=work / "run", netd=netd,
                  joint=joint, device=device, tiny=tiny, workers=workers)
    _run([*VSRDB, "train", cfg, "--quiet"])
    shutil.copytree(work / "run" / "model", out / "model", dirs_exist_ok=True)
    shutil.copy(work / "run" / "log.csv", out / "log.csv")
    trained = time.monotonic() - started
    # The held-out table: the new model and the shipped version 3.1, each against bicubic.
    clips = "1" if tiny else "2"
    held_dir = held
    if tiny:  # one clip is enough to exercise the path
        held_dir = work / "held1"
        held_dir.mkdir()
        shutil.copy(held / "tree.avi", held_dir / "tree.avi")
    env = {**os.environ, "VSRDB": f"{sys.executable} -m vsrdb"}
    if tiny:  # two settings exercise the path
        env["SETTINGS"] = "clean h264:crf=23"
    for weights, label in ((out / "model", "v4"), ("builtin", "v31")):
        _run(["bash", HERE / "eval_builtin_real.sh", weights, label, work / "eval", "4" if not tiny else "1", clips,
              held_dir], cwd=work, env=env)
    datasets = sorted({p.stem.split("-", 1)[1] for p in (work / "eval").glob("v4-*.json")})
    if not datasets:
        raise SystemExit(f"no held-out clip was scored (none in {held_dir}?)")
    tables = subprocess.run([sys.executable, HERE / "builtin_tables.py", work / "eval", "v4", "v31", "--datasets",
                             *datasets, "--names", "version 4 (this run)", "version 3.1 (`builtin`)"],
                            capture_output=True, text=True, check=True).stdout
    (out / "heldout.md").write_text(f"# Version 4 ({model}, this run) against version 3.1 (shipped), held-out "
                                    "clips\n\n" + tables)
    summary = {"model": model, "iterations": {"netd": netd, "joint": joint}, "seconds_per_step": per_step,
               "train_seconds": trained, "total_seconds": time.monotonic() - started, "device": device,
               "photos": len(photos), "training_clips": len(list((train / "train_sharp").iterdir()))}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    print(json.dumps(summary), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="step", required=True)
    prep = sub.add_parser("prepare")
    prep.add_argument("data", type=Path)
    r = sub.add_parser("run")
    r.add_argument("--data", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--minutes", type=float, default=8.0)
    r.add_argument("--device", default=None)
    r.add_argument("--tiny", action="store_true")
    args = p.parse_args()
    if args.step == "prepare":
        prepare(args.data)
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run(args.data, args.out, minutes=args.minutes, device=device, tiny=args.tiny)


if __name__ == "__main__":
    main()
