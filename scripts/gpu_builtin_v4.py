"""The built-in models in one short GPU run: version 4 (issue 38, item 6), builtin-x2 and builtin-x1 (issue 39).

Two steps, because the GPU machine reaches no network and takes at most 64 MiB along:

    python scripts/gpu_builtin_v4.py prepare data/gpu_v4          # here: photos (1024 px), held-out clips,
                                                                  # and a PyAV wheel for the GPU image (46 MB)
    python3 scripts/gpu_builtin_v4.py run --data data/gpu_v4 --out $OUT --minutes 8   # on the GPU machine

With the device tool: ``run(command="python3 scripts/gpu_builtin_v4.py run --data data/gpu_v4 --out $OUT
--minutes 8", carry=["data/gpu_v4"], timeout_s=600)``. The GPU image has PyTorch, OpenCV and the
rest but not PyAV; ``run`` installs the carried wheel when ``av`` is missing, and runs vsrdb from
this checkout's ``src`` when it is not installed.

``run`` trains the three built-in models side by side on the one GPU (``--scales``, default 4 2 1):
version 4 at x4 (``fmanet-cpu-l``, the paper's two stages from scratch, issue 38) and ``builtin-x2``
and ``builtin-x1`` (``fmanet-cpu``, the last stage from the shipped model one scale up, issue 39).
For each scale it synthesises the training clips from the photographs at that scale on the
machine's own cores (several ``vsrdb synth`` processes side by side; 8 clips per photo at x4, 3 at
x2 and x1), validates on a held-out camera
clip (checkpoints are chosen on real footage, not on synthetic validation), and trains with the
real-footage degradations. A few steps of every scale, side by side, measure the step times, and the
iterations are set so the whole run fits ``--minutes``. Each result is then scored with the shipped
model it would replace (x4: version 3.1; x2: ``builtin-x2``; x1: ``builtin-x2`` shrunk to x1, what
``restore --outscale 1`` runs today) on every held-out clip at clean, CRF 23, CRF 28 and noise 3
then CRF 23, against the scale's baseline (bicubic; at x1 the blurry input). Into OUT, per scale
``x4/``, ``x2/``, ``x1/``: ``model/`` (config.json, model.safetensors), ``heldout.md`` (the per-clip
tables) and ``log.csv``; and ``summary.json``.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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


def _synth_parallel(photos: list[Path], work: Path, *, scale: int, clips: int, jobs: int, tiny: bool) -> Path:
    """Training clips at ``scale`` from the photos, ``jobs`` synth processes side by side, merged as one
    REDS set in ``work/train``."""
    groups = [photos[i::jobs] for i in range(jobs) if photos[i::jobs]]
    size, frames = ("48x64", "5") if tiny else ("192x256", "16")
    procs = []
    for i, group in enumerate(groups):
        # photo files, not their folder: a folder of images is read as one video's frames
        cmd = [*VSRDB, "synth", *map(str, group), "-o", str(work / f"part{i}"), "--scale", str(scale),
               "--photo-size", size, "--photo-clips", str(clips), "--clip-frames", frames, "--min-shift", "0.25",
               "--max-shift", "48", "--seed", str(40 + i)]
        procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                      env={**os.environ, "OMP_NUM_THREADS": "1"}))
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise SystemExit(f"synth at x{scale} failed: {err.strip().splitlines()[-1:] or err}")
    merged = work / "train"
    count = 0
    for i in range(len(groups)):
        part = work / f"part{i}"
        for clip in sorted((part / "train_sharp").iterdir()):
            for sub in ("train_sharp", f"train_blur_bicubic/X{scale}", f"train_sharp_bicubic/X{scale}"):
                if (part / sub / clip.name).exists():
                    dest = merged / sub / f"{count:03d}"
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    dest.symlink_to((part / sub / clip.name).resolve())
            count += 1
    print(f"x{scale}: synthesised {count} training clips in {len(groups)} processes", flush=True)
    return merged


@dataclass(frozen=True)
class Plan:
    """What one scale trains: version 4 at x4 (``fmanet-cpu-l``, the paper's two stages from scratch);
    ``builtin-x2`` and ``builtin-x1`` at x2 and x1 (the shipped shape, ``fmanet-cpu``, its last stage
    from the shipped model one scale up, as configs/builtin_x2.yaml and builtin_x1.yaml do on the CPU).
    ``old`` is the shipped model the result is scored against (at x1, builtin-x2 shrunk to x1: what
    ``restore --outscale 1`` runs without builtin-x1)."""

    scale: int
    model: str
    patch: int
    init: str | None
    old: str
    name: str

    @property
    def two_stages(self) -> bool:
        return self.init is None


def _plan(scale: int, tiny: bool) -> Plan:
    from vsrdb.checkpoints import builtin_weights

    if tiny:  # shipped weights do not fit fmanet-tiny: every scale from scratch, scored against its
        # own calibration run (cheaper than a shipped model, and the same path); x1's body works on
        # 4x4 cells, so its patches are 16 px: the k_r window must fit
        return Plan(scale, "fmanet-tiny", 16 if scale == 1 else 8, None, "calibration run", f"x{scale}")
    if scale == 4:
        return Plan(4, "fmanet-cpu-l", 48, None, "builtin", "version 4")
    up = "builtin" if scale == 2 else "builtin-x2"
    init = builtin_weights(up)
    if init is None:
        raise SystemExit(f"error: the shipped weights {up!r} are not in this checkout: x{scale} starts from them")
    return Plan(scale, "fmanet-cpu", 64 if scale == 2 else 128, init, "builtin-x2", f"builtin-x{scale}")


def _config(path: Path, plan: Plan, *, root: Path, val: Path, run_dir: Path, netd: int, joint: int, device: str,
            tiny: bool, workers: int) -> Path:
    stages: dict = {"joint": {"iterations": joint, "lr": 1.0e-3 if plan.two_stages else 6.0e-4}}
    if plan.two_stages:
        stages = {"netd": {"iterations": netd, "lr": 4.0e-4}, **stages}
    cfg: dict = {"name": f"gpu-{plan.name.replace(' ', '-')}", "model": plan.model, "model_args": {"scale": plan.scale},
                 "data": {"layout": "reds", "root": str(root), "val_root": str(val), "patch": plan.patch,
                          "batch": 2 if tiny else 16, "workers": workers, "flow": "dis",
                          "val_windows": 2 if tiny else 12, "degrade": "real"},
                 "stages": stages, "run_dir": str(run_dir), "checkpoint_every": max(1, joint // 4),
                 "val_every": max(1, joint // 4), "log_every": max(1, joint // 50), "seed": 38, "amp": "auto",
                 "device": device}
    if plan.init:
        cfg["init"] = plan.init
        cfg["milestones"] = [0.7]
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


def _train_side_by_side(configs: dict[int, Path]) -> dict[int, float]:
    """``vsrdb train`` on each config at once (one GPU, shared); each one's wall-clock seconds."""
    started = time.monotonic()
    procs = {}
    for scale, cfg in configs.items():
        print(f"+ vsrdb train {cfg} --quiet", flush=True)
        with open(cfg.with_suffix(".err"), "w") as err:  # a file, not a pipe: nobody reads it while they run
            procs[scale] = subprocess.Popen([*VSRDB, "train", str(cfg), "--quiet"], stderr=err)
    seconds: dict[int, float] = {}
    while len(seconds) < len(procs):
        for scale, p in procs.items():
            if scale not in seconds and p.poll() is not None:
                seconds[scale] = time.monotonic() - started
                if p.returncode:
                    for other in procs.values():
                        other.kill()
                    err = configs[scale].with_suffix(".err").read_text().strip().splitlines()
                    raise SystemExit(f"training at x{scale} failed: {err[-1] if err else p.returncode}")
        time.sleep(0.2)
    return seconds


def run(data: Path, out: Path, *, minutes: float, device: str, tiny: bool, scales: list[int]) -> None:
    started = time.monotonic()
    data, out = data.resolve(), out.resolve()  # the scoring runs in the work folder
    _ready(data)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(os.environ.get("TMPDIR", "/tmp")) / "vsrdb-gpu-v4"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    photos = sorted((data / "photos").glob("*.jpg"))[: 2 if tiny else None]
    held = data / "heldout"
    cores = os.cpu_count() or 2
    # Clips per photo: version 4 trains from scratch and needs the most; x2 and x1 continue a
    # shipped model. The synth processes are shared out in proportion, so all scales end together.
    clips = {s: 1 if tiny else (8 if s == 4 else 3) for s in scales}
    jobs = {s: 1 if tiny else max(1, round((cores - 2) * clips[s] / sum(clips.values()))) for s in scales}
    plans = {s: _plan(s, tiny) for s in scales}
    # Validation on camera footage (the checkpoint choice sees real motion and texture): tree as
    # eval_builtin_real.sh synthesises it for the held-out table, in the folder where that script
    # (run in ``work``) finds it made already.
    vals = {s: work / "data" / ("eval" if s == 4 else f"eval-x{s}") / "tree" for s in scales}

    def synth(s: int) -> Path:
        _run([*VSRDB, "synth", held / "tree.avi", "-o", vals[s], "--scale", str(s), "--clip-frames", "12",
              "--seed", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return _synth_parallel(photos, work / f"x{s}", scale=s, clips=clips[s], jobs=jobs[s], tiny=tiny)

    with ThreadPoolExecutor(len(scales)) as pool:  # every scale's synth processes at once, sharing the cores
        trains = dict(zip(scales, pool.map(synth, scales)))
    workers = 0 if tiny else max(1, min(8, (cores - 2) // len(scales)))
    # A few steps of every scale, side by side as the real run will be, measure the step times;
    # the rest of the budget sets each scale's iterations.
    calib_steps = 2 if tiny else 20

    def configs(tag: str, steps: dict[int, int]) -> dict[int, Path]:
        made = {}
        for s, plan in plans.items():
            n = steps[s]
            netd, joint = (n // 5, n - n // 5) if plan.two_stages else (0, n)
            if tiny and plan.two_stages:
                netd, joint = n // 2, n - n // 2
            made[s] = _config(work / f"x{s}" / f"{tag}.yaml", plan, root=trains[s], val=vals[s],
                              run_dir=work / f"x{s}" / tag, netd=netd, joint=joint, device=device, tiny=tiny,
                              workers=workers)
        return made

    calib = _train_side_by_side(configs("calib", {s: calib_steps for s in scales}))
    per_step = {s: t / calib_steps for s, t in calib.items()}
    reserve = 30 * len(scales) if tiny else 60 + 60 * len(scales)  # the held-out scoring, the copies
    left = minutes * 60 - (time.monotonic() - started) - reserve
    steps = {s: 2 if tiny else max(4, int(left / per_step[s])) for s in scales}
    print("s/step side by side (with start-up): " + ", ".join(f"x{s} {per_step[s]:.3f} -> {steps[s]} iterations"
                                                           for s in scales), flush=True)
    final = configs("run", steps)
    trained = _train_side_by_side(final)
    # Each scale's held-out table: the new model and the shipped one it would replace, against the
    # scale's baseline (bicubic; at x1 the blurry input), the scales scored side by side.
    held_clips = "1" if tiny else "2"
    held_dir = held
    if tiny:  # one clip is enough to exercise the path
        held_dir = work / "held1"
        held_dir.mkdir()
        shutil.copy(held / "tree.avi", held_dir / "tree.avi")
    threads = "1" if tiny else str(max(1, cores // len(scales)))
    scoring = []
    for s, plan in plans.items():
        dest = out / f"x{s}"
        dest.mkdir(exist_ok=True)
        shutil.copytree(work / f"x{s}" / "run" / "model", dest / "model", dirs_exist_ok=True)
        shutil.copy(work / f"x{s}" / "run" / "log.csv", dest / "log.csv")
        env = {**os.environ, "VSRDB": f"{sys.executable} -m vsrdb", "SCALE": str(s)}
        if tiny:  # two settings exercise the path
            env["SETTINGS"] = "clean h264:crf=23"
        old = str(work / f"x{s}" / "calib" / "model") if tiny else plan.old
        script = (f'bash "{HERE / "eval_builtin_real.sh"}" "{dest / "model"}" new "{work / f"eval-x{s}"}" {threads} '
                  f'{held_clips} "{held_dir}" && bash "{HERE / "eval_builtin_real.sh"}" "{old}" old '
                  f'"{work / f"eval-x{s}"}" {threads} {held_clips} "{held_dir}"')
        print(f"+ {script}", flush=True)
        with open(work / f"eval-x{s}.err", "w") as err:  # a file: three of them run at once, unread
            scoring.append((s, subprocess.Popen(["bash", "-c", script], cwd=work, env=env, stderr=err)))
    for s, p in scoring:
        if p.wait():
            err = (work / f"eval-x{s}.err").read_text().strip().splitlines()
            raise SystemExit(f"held-out scoring at x{s} failed: {err[-1] if err else p.returncode}")
    summary: dict = {"device": device, "photos": len(photos), "scales": {}}
    for s, plan in plans.items():
        evals = work / f"eval-x{s}"
        datasets = sorted({p.stem.split("-", 1)[1] for p in evals.glob("new-*.json")})
        if not datasets:
            raise SystemExit(f"no held-out clip was scored at x{s} (none in {held_dir}?)")
        old_name = "its calibration run" if tiny else f"`{plan.old}` (shipped)"
        tables = subprocess.run([sys.executable, HERE / "builtin_tables.py", evals, "new", "old", "--datasets",
                                 *datasets, "--names", f"{plan.name} ({plan.model}, this run)",
                                 old_name], capture_output=True, text=True, check=True).stdout
        (out / f"x{s}" / "heldout.md").write_text(
            f"# x{s}: {plan.name} ({plan.model}, this run) against {old_name}, held-out clips\n\n" + tables)
        summary["scales"][f"x{s}"] = {
            "name": plan.name, "model": plan.model, "init": plan.init, "iterations": steps[s],
            "seconds_per_step": per_step[s], "train_seconds": trained[s],
            "training_clips": len(list((trains[s] / "train_sharp").iterdir()))}
    summary["total_seconds"] = time.monotonic() - started
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
    r.add_argument("--scales", type=int, nargs="+", choices=(4, 2, 1), default=[4, 2, 1],
                   help="the scales trained side by side on the one GPU (default: 4 2 1)")
    args = p.parse_args()
    if args.step == "prepare":
        prepare(args.data)
        return
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    run(args.data, args.out, minutes=args.minutes, device=device, tiny=args.tiny, scales=args.scales)


if __name__ == "__main__":
    main()
