"""Per-frame restoration time of FMA-Net++ beside FMA-Net, in one run (issue: FMA-Net++).

Both stream the same frames through the Restorer (FMA-Net: sliding T=3 windows with cached
per-frame features; FMA-Net++: its stream, every frame computed once per HRBA block), random
weights (cost does not depend on them), fp32 unless --precision says otherwise. Each model
first restores a few frames untimed (oneDNN's first calls pick their kernels); then the
whole clip is timed, from the first frame read to the last written, over its frame count.

    python benchmarks/sequence_speed.py --size 90x160 --frames 40
"""

from __future__ import annotations

import argparse
import time

import torch

import vsrdb
from vsrdb.precision import describe_cpu
from vsrdb.restore import Restorer


def seconds_per_frame(name: str, frames: list[torch.Tensor], precision: str, chunk: int | None) -> float:
    model = vsrdb.build(name).eval()
    restorer = Restorer(model, precision=precision)
    if chunk:
        restorer.sequence_chunk = chunk
    for _ in restorer.run(iter(frames[:4])):
        pass
    start = time.perf_counter()
    count = sum(1 for _ in restorer.run(iter(frames)))
    return (time.perf_counter() - start) / count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="90x160", help="LR frame size HxW")
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--models", default="fmanet,fmanetpp")
    parser.add_argument("--chunk", type=int, default=None,
                        help="frames pushed to a sequence model's stream at once (default: the Restorer's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    h, w = (int(v) for v in args.size.split("x"))
    gen = torch.Generator().manual_seed(0)
    frames = [torch.rand(3, h, w, generator=gen) for _ in range(args.frames)]
    print(f"CPU: {describe_cpu()}; {args.threads} threads; {args.frames} frames of {w}x{h}; {args.precision}",
          flush=True)
    times = {}
    for name in args.models.split(","):
        times[name] = seconds_per_frame(name, frames, args.precision, args.chunk)
        print(f"  {name:14s} {times[name]:.3f} s per output frame", flush=True)
    names = list(times)
    if len(names) == 2:
        print(f"  {names[1]} / {names[0]}: {times[names[1]] / times[names[0]]:.2f}x")


if __name__ == "__main__":
    main()
