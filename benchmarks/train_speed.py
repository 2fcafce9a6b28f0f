"""Seconds per training step in fp32 and under bf16 autocast (issue: speed at the hardware's limit).

A step is what the trainer's stage 2 does per batch: forward with the sharp HR window (so NetD
re-degrades it), an L1 on the restored centre frame and on the re-degraded LR, backward, and
an Adam step. Random data and weights: the cost does not depend on them.

    python benchmarks/train_speed.py                        # fmanet-cpu, batch 4, 32 px LR patches
    python benchmarks/train_speed.py --model jffra-cpu --steps 10
"""

from __future__ import annotations

import argparse
import time


def step_seconds(model_name: str, precision: str, *, batch: int, patch: int, steps: int, threads: int) -> float:
    import torch

    import vsrdb
    from vsrdb.precision import resolve_precision

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = vsrdb.build(model_name).train()
    amp = resolve_precision(precision, "cpu")
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    t = model.config.num_seq
    lr = torch.rand(batch, 3, t, patch, patch)
    hr = torch.rand(batch, 3, t, 4 * patch, 4 * patch)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=amp.dtype, enabled=amp.name != "fp32"):
            out = model(lr, hr)
            loss = (out["output"] - hr[:, :, t // 2]).abs().mean()
            if "recon" in out:
                loss = loss + (out["recon"] - lr[:, :, t // 2]).abs().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return sum(times[1:]) / steps  # the first step pays for allocations and oneDNN's kernel choice


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="fmanet-cpu")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--patch", type=int, default=32, help="LR patch side")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    from vsrdb.precision import describe_cpu

    print(f"train step {args.model}, batch {args.batch}, {args.patch} px LR, {args.threads} threads")
    print(f"  CPU: {describe_cpu()}")
    fp32 = step_seconds(args.model, "fp32", batch=args.batch, patch=args.patch, steps=args.steps, threads=args.threads)
    print(f"  fp32            : {fp32:.3f} s/step")
    bf16 = step_seconds(args.model, "bf16", batch=args.batch, patch=args.patch, steps=args.steps, threads=args.threads)
    print(f"  bf16 autocast   : {bf16:.3f} s/step  ({fp32 / bf16:.2f}x fp32)")


if __name__ == "__main__":
    main()
