"""Time per frame of the native scales for the same output size (issue: x2 and x1).

x4 on 180x320, x2 on 360x640 and x1 on 720x1280 all write 720x1280 frames. The body of FMA-Net
works on a grid a quarter of the output's size at every scale, so the three should cost about
the same; the target is x1 and x2 within 1.2x of x4's time per frame. Each case is a fresh
``restore_speed.py`` subprocess (streaming Restorer, random weights, peak RSS its own), all in
one run on this machine, so the ratios compare like with like.

    python benchmarks/scale_speed.py                          # fmanet-cpu, fp32, 2 threads
    python benchmarks/scale_speed.py --model fmanet-cpu-l --precision bf16
    python benchmarks/scale_speed.py --device cuda --precision fp16   # on a GPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CASES = ((4, "180x320"), (2, "360x640"), (1, "720x1280"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fmanet-cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=3, help="output frames timed per case (after the first)")
    p.add_argument("--rounds", type=int, default=2,
                   help="runs of the three cases, interleaved; each case's best is kept (machines of this kind "
                        "are shared: a neighbour's load only ever slows a run)")
    args = p.parse_args()
    bench = Path(__file__).with_name("restore_speed.py")
    best: dict[int, dict] = {}
    for scale, size in CASES * args.rounds:  # interleaved: a slow spell spreads over every case
        cmd = [sys.executable, str(bench), "--case", "--model", args.model, "--size", size, "--arg", f"scale={scale}",
               "--frames", str(args.frames), "--precision", args.precision, "--device", args.device,
               "--threads", str(args.threads)]
        child = subprocess.run(cmd, capture_output=True, text=True)
        if child.returncode:
            sys.exit(f"x{scale} {size}: {child.stderr.strip().splitlines()[-1:]}")
        r = json.loads(child.stdout.strip().splitlines()[-1])
        if scale not in best or r["seconds_per_frame"] < best[scale]["seconds_per_frame"]:
            best[scale] = r
    rows = [(scale, size, best[scale]) for scale, size in CASES]
    from vsrdb.precision import describe_cpu

    first = rows[0][2]
    print(f"{args.model}, output 720x1280, {args.device} ({args.threads} threads), precision {first['precision']}")
    if args.device == "cpu":
        print(f"CPU: {describe_cpu()}")
    print("| scale | input | s / frame | vs x4 | TFLOP / frame | peak RSS GB | tiles |")
    print("|---|---|---|---|---|---|---|")
    for scale, size, r in rows:
        ratio = r["seconds_per_frame"] / first["seconds_per_frame"]
        print(f"| x{scale} | {size} | {r['seconds_per_frame']:.2f} | {ratio:.2f} | {r['tflop_per_frame']:.3f} | "
              f"{r['peak_rss_gb']:.2f} | {r['tiles']} |")


if __name__ == "__main__":
    main()
