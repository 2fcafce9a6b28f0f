"""The built-in model's shape for the time issue 37 freed (issue 38, item 4): candidate FMA-Net
shapes timed on this CPU against a time per frame, in fp32 and in bf16 where the CPU runs it natively.

Each candidate is ``fmanet-cpu`` with config overrides, restored by the streaming Restorer at
180x320 LR (``restore_speed.py --case``, random weights, 2 threads); the table gives parameters,
work per frame and seconds per frame, and marks the shapes within the budget. The budget is
version 3.1's time per frame before issue 37 on the same CPU (``--budget-fp32``/``--budget-bf16``,
measured end to end with ``restore_speed.py --end-to-end`` on the code of commit 12604b6; the
Restorer's time is about 0.07 s less than the whole command's).

    python benchmarks/builtin_shape.py --budget-fp32 3.41 --budget-bf16 2.16
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

CANDIDATES: list[dict] = [
    {},                                                   # fmanet-cpu itself (version 3.1's shape)
    {"dim": 48},
    {"dim": 48, "num_rdb": 4},
    {"dim": 48, "num_frma": 3},
    {"dim": 54},
    {"dim": 60},
    # growth 16 fills AVX-512's 16-wide fp32 lanes (the dense layers' outputs), growth 12 does not
    {"dim": 48, "growth_rate": 16},
    {"dim": 48, "growth_rate": 16, "num_rdb": 4},
    {"dim": 48, "growth_rate": 16, "num_frma": 3},
    {"dim": 48, "growth_rate": 16, "num_rdb": 4, "num_transformer_block": 2},
    {"dim": 30, "num_seq": 5},                            # wider window (T=5) at a smaller width
]


def timed(overrides: dict, precision: str, frames: int) -> dict:
    script = Path(__file__).with_name("restore_speed.py")
    cmd = [sys.executable, str(script), "--case", "--model", "fmanet-cpu", "--frames", str(frames),
           "--precision", precision] + [a for k, v in overrides.items() for a in ("--arg", f"{k}={v}")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(done.stderr)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-fp32", type=float, required=True, help="seconds per frame allowed in fp32")
    p.add_argument("--budget-bf16", type=float, help="seconds per frame allowed in bf16 (native bf16 CPUs)")
    p.add_argument("--frames", type=int, default=4)
    args = p.parse_args()
    from vsrdb.precision import describe_cpu, resolve_precision

    precisions = ["fp32"] + (["bf16"] if args.budget_bf16 and resolve_precision("auto", "cpu").name == "bf16" else [])
    print(f"CPU: {describe_cpu()}; budget fp32 {args.budget_fp32} s" +
          (f", bf16 {args.budget_bf16} s" if "bf16" in precisions else ""))
    print("| fmanet-cpu with | parameters | TFLOP / frame | " + " | ".join(f"{p} s/frame" for p in precisions)
          + " | within budget |")
    print("|---|---|---|" + "---|" * len(precisions) + "---|")
    for overrides in CANDIDATES:
        rows = {prec: timed(overrides, prec, args.frames) for prec in precisions}
        first = rows["fp32"]
        budget = {"fp32": args.budget_fp32, "bf16": args.budget_bf16}
        ok = all(rows[prec]["seconds_per_frame"] <= budget[prec] for prec in precisions)
        name = ", ".join(f"{k}={v}" for k, v in overrides.items()) or "(as is)"
        print(f"| {name} | {first['params']:,} | {first['tflop_per_frame']:.3f} | "
              + " | ".join(f"{rows[prec]['seconds_per_frame']:.2f}" for prec in precisions)
              + f" | {'yes' if ok else 'no'} |", flush=True)


if __name__ == "__main__":
    main()
