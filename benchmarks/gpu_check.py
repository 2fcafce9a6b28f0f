"""The GPU path in one short run (under 5 minutes on one GPU): what no CPU machine can check.

    python benchmarks/gpu_check.py                 # every visible GPU
    python benchmarks/gpu_check.py --device cpu    # the same steps on the CPU (fp32/bf16), to try the script

It runs, and prints one table of:
1. the test suite's CUDA tests (``pytest -m cuda``) and the device tests (tests/test_devices.py);
2. a few training steps of every family's CPU-size preset in fp32, bf16 and fp16 autocast,
   with DDP over all visible GPUs (torchrun, NCCL), on a small generated dataset;
3. ``vsrdb restore`` of a generated clip with each precision, checked for every frame, x4 size
   and closeness to the fp32 output;
4. ``benchmarks/restore_speed.py --device cuda`` for the full ``fmanet`` at 180x320.
Each row says ok or FAILED with the first line of the error; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ("fmanet-cpu", "hoffr-cpu", "jffra-cpu", "fmanetpp-cpu")


def run(cmd: list[str], *, timeout: float, env: dict | None = None) -> tuple[bool, str, float]:
    start = time.perf_counter()
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT,
                           env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return False, f"timed out after {timeout:.0f} s", time.perf_counter() - start
    text = (r.stdout + r.stderr).strip().splitlines()
    if r.returncode == 0:
        said = r.stdout.strip().splitlines() or text  # the result line, not a progress bar
        return True, said[-1] if said else "", time.perf_counter() - start
    errors = [ln for ln in text if "error" in ln.lower() or "Error" in ln] or text[-1:]
    return False, (errors[-1] if errors else f"exit {r.returncode}")[:160], time.perf_counter() - start


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu, to try the script")
    p.add_argument("--steps", type=int, default=3, help="training steps per stage")
    args = p.parse_args()

    import torch

    from vsrdb import build
    from vsrdb.precision import describe_cpu

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU here (torch.cuda.is_available() is False); --device cpu tries the script")
        return 2
    gpus = torch.cuda.device_count() if cuda else 2
    from vsrdb.precision import cpu_capabilities

    # On a CPU: bf16 only where it is native (emulated bf16 takes minutes per step).
    precisions = ["fp32", "bf16", "fp16"] if cuda else ["fp32"] + (["bf16"] if cpu_capabilities()["bf16"] else [])
    if cuda:
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(gpus))
        print(f"gpu_check: {gpus} GPU(s): {names}; torch {torch.__version__}, CUDA {torch.version.cuda}")
    else:
        print(f"gpu_check on CPU: {describe_cpu()}")
    rows: list[tuple[str, bool, str, float]] = []
    py = sys.executable

    # 1. tests
    rows.append(("tests: device tests (meta)", *run([py, "-m", "pytest", "-q", "tests/test_devices.py"], timeout=600)))
    if cuda:
        rows.append(("tests: marked cuda", *run([py, "-m", "pytest", "-q", "-m", "cuda", "tests"], timeout=600)))

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        # 2. training steps, every family and precision, DDP over all GPUs
        ok, msg, secs = run([py, "-m", "vsrdb", "synth", "--procedural", "8", "--procedural-size", "192x256",
                             "--clip-frames", "8", "--exposure", "re", "-o", str(tmp / "data"), "--seed", "1"],
                            timeout=300)
        rows.append(("data: vsrdb synth (8 clips, varying exposure)", ok, msg, secs))
        for family in FAMILIES:
            probe = build(family)
            stages = [s.name for s in probe.training_stages(probe.loss_weights())]
            for precision in precisions:
                run_dir = tmp / f"run-{family}-{precision}"
                cfg = {"model": family,
                       "data": {"layout": "reds", "root": str(tmp / "data"), "val_root": str(tmp / "data"),
                                "patch": 32, "batch": 2 * gpus, "workers": 0, "val_windows": 1, "flow": "dis"},
                       "stages": {s: {"iterations": args.steps} for s in stages},
                       "run_dir": str(run_dir), "checkpoint_every": args.steps, "val_every": 1000,
                       "log_every": 1, "amp": precision, "device": args.device}
                if not cuda:
                    cfg["threads"] = 1
                path = tmp / f"{family}-{precision}.yaml"
                path.write_text(json.dumps(cfg))  # JSON is YAML
                cmd = [py, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "-m", "vsrdb.train", str(path)]
                ok, msg, secs = run(cmd, timeout=300)
                final = Path(msg.removeprefix("trained: ").strip()) if msg.startswith("trained: ") else None
                if ok and not (final is not None and (final / "config.json").exists()):
                    ok, msg = False, f"no final model in the run folder ({msg})"
                rows.append((f"train {family} {precision} x{gpus} (DDP)", ok, msg, secs))

        # 3. vsrdb restore with each precision
        import vsrdb

        torch.manual_seed(0)
        vsrdb.save_checkpoint(vsrdb.build("fmanet-cpu"), tmp / "w")
        clip = tmp / "data" / "train_blur_bicubic" / "X4"
        first = sorted(p for p in clip.iterdir() if p.is_dir())[0]
        outputs = {}
        for precision in precisions:
            out = tmp / f"restored-{precision}"
            ok, msg, secs = run([py, "-m", "vsrdb", "restore", str(first), "-o", str(out), "--weights", str(tmp / "w"),
                                 "--device", args.device, "--precision", precision, "--quiet"], timeout=300)
            if ok:
                frames = sorted(out.glob("*.png"))
                outputs[precision] = frames
                if len(frames) != len(list(first.glob("*.png"))):
                    ok, msg = False, f"{len(frames)} frames written"
            rows.append((f"restore {precision}", ok, msg, secs))
        if "fp32" in outputs:
            import numpy as np
            from PIL import Image

            ref = [np.asarray(Image.open(f), dtype=np.float64) for f in outputs["fp32"]]
            for precision, frames in outputs.items():
                if precision == "fp32":
                    continue
                got = [np.asarray(Image.open(f), dtype=np.float64) for f in frames]
                mse = float(np.mean([(a - b) ** 2 for a, b in zip(got, ref)]))
                psnr = 10 * np.log10(255 ** 2 / max(mse, 1e-12))
                rows.append((f"restore {precision} vs fp32", psnr > 40, f"{psnr:.1f} dB from the fp32 frames", 0.0))

    # 4. speed
    if cuda:
        for precision in ("fp32", "bf16", "fp16"):
            ok, msg, secs = run([py, "benchmarks/restore_speed.py", "--device", "cuda", "--precision", precision],
                                timeout=300)
            rows.append((f"restore_speed fmanet 180x320 {precision}", ok, msg, secs))

    width = max(len(r[0]) for r in rows)
    print(f"\n{'check'.ljust(width)}  result  seconds  detail")
    for name, ok, msg, secs in rows:
        print(f"{name.ljust(width)}  {'ok    ' if ok else 'FAILED'}  {secs:7.1f}  {msg}")
    failed = sum(not r[1] for r in rows)
    print(f"\n{len(rows) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
