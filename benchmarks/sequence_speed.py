"""Per-frame restoration time of FMA-Net++ beside FMA-Net, in one run (issue: FMA-Net++).

Both stream the same frames through the Restorer (FMA-Net: sliding T=3 windows with cached
NetD features; FMA-Net++: chunks of frames with 2M frames of context each way), random
weights (cost does not depend on them), fp32 unless --precision says otherwise.

    python benchmarks/sequence_speed.py --size 90x160 --frames 40
"""

from __future__ import annotations

import argparse
import time

import torch

import vsrdb
from vsrdb.precision import describe_cpu
from vsrdb.restore import Restorer


def seconds_per_frame(name: str, frames: list[torch.Tensor], precision: str, warmup: int) -> float:
    model = vsrdb.build(name).eval()
    restorer = Restorer(model, precision=precision)
    start = None
    for i, _ in enumerate(restorer.run(iter(frames))):
        if i + 1 == warmup:
            start = time.perf_counter()
    return (time.perf_counter() - start) / (len(frames) - warmup)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="90x160", help="LR frame size HxW")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--models", default="fmanet,fmanetpp")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, h, w, generator=gen) for _ in range(args.frames)]
    print(f"CPU: {describe_cpu()}; {args.threads} threads; {args.frames} frames of {w}x{h}; {args.precision}",
          flush=True)
    times = {}
    for name in args.models.split(","):
        # FMA-Net++'s first chunk (its outputs come all at once) is the warm-up.
        warmup = Restorer(vsrdb.build(name)).sequence_chunk if name.startswith("fmanetpp") else 2
        times[name] = seconds_per_frame(name, frames, args.precision, warmup)
        print(f"  {name:14s} {times[name]:.3f} s per output frame", flush=True)
    names = list(times)
    if len(names) == 2:
        print(f"  {names[1]} / {names[0]}: {times[names[1]] / times[names[0]]:.2f}x")


if __name__ == "__main__":
    main()
