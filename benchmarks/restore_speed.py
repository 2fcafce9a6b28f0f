"""Speed and memory of streaming restoration (issue: restore real videos).

Prints, per case: seconds per output frame in a streaming run (after the first), peak
resident memory of the whole process, and achieved GFLOP/s against this machine's sgemm
rate. Each case runs in a fresh subprocess so peak RSS is its own. Weights are random:
cost does not depend on their values.

    python benchmarks/restore_speed.py                       # 180x320, full config, 4 frames
    python benchmarks/restore_speed.py --size 720x1280 --frames 1
    python benchmarks/restore_speed.py --precision bf16         # bf16 weights and features
    python benchmarks/restore_speed.py --device cuda --precision fp16
    python benchmarks/restore_speed.py --profile            # + where one frame's time goes

``--profile`` runs one more frame under ``torch.profiler`` and prints the share of self time
spent in convolutions and matrix products against everything else (elementwise work, dtype
copies, layout reorders), with the costliest other ops: on a CPU with native bf16 (AMX or
AVX512-BF16) that share says what the bf16 path has left to gain outside the convolutions.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def gemm_gflops(threads: int, dtype: str = "fp32") -> float:
    """2048x2048 matmul rate in ``dtype`` on this CPU."""
    import torch

    from vsrdb.precision import DTYPES

    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048).to(DTYPES[dtype])
    a @ a
    start = time.perf_counter()
    for _ in range(5):
        a @ a
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9


def window_flops(model, h: int, w: int) -> float:
    """FLOPs of one window's inference (convs, matmuls) counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    cfg = model.config
    small_h, small_w = min(h, 48), min(w, 64)  # count on a small window, scale by pixels
    lr = torch.rand(1, 3, cfg.num_seq, small_h, small_w)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.restore(lr)
    return counter.get_total_flops() * (h * w) / (small_h * small_w)


def run_case(args: argparse.Namespace) -> dict:
    import itertools

    import torch

    import vsrdb
    from vsrdb.devices import use_heap_allocator
    from vsrdb.restore import Restorer, pick_device

    torch.set_num_threads(args.threads)
    use_heap_allocator()
    h, w = map(int, args.size.split("x"))
    model = vsrdb.build(args.model).eval()
    device = pick_device(args.device)
    restorer = Restorer(model, device=device, precision=args.precision, tile=args.tile,
                        max_memory=int(args.max_memory * (1 << 30)) if args.max_memory else None)
    gen = torch.Generator().manual_seed(0)
    n_in = max(args.frames, model.config.num_seq)
    frames = (torch.rand(3, h, w, generator=gen) for _ in range(n_in))
    times = []
    start = time.perf_counter()
    for _ in itertools.islice(restorer.run(frames), args.frames):
        if device.type == "cuda":
            torch.cuda.synchronize()
        now = time.perf_counter()
        times.append(now - start)
        start = now
    steady = times[1:] or times
    per_frame = sum(steady) / len(steady)
    flops = window_flops(model, h, w)
    result = {"size": f"{h}x{w}", "model": args.model, "device": str(device), "threads": args.threads,
              "precision": restorer.precision.name, "precision_reason": restorer.precision.reason,
              "frames": len(times), "first_frame_s": times[0], "seconds_per_frame": per_frame,
              "tiles": len(restorer.plan.tiles()), "tflop_per_frame": flops / 1e12,
              "gflops_achieved": flops / per_frame / 1e9,
              "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (1 << 20)}
    if device.type == "cuda":
        result["peak_gpu_gb"] = torch.cuda.max_memory_allocated() / (1 << 30)
    if args.profile:
        result["profile"] = profile_frame(restorer, h, w, model.config.num_seq)
    return result


# Ops whose time is the convolutions' and matrix products' own (oneDNN and BLAS kernels).
COMPUTE_OPS = ("conv", "mm", "matmul", "linear", "einsum", "baddbmm", "addmm", "bmm")


def profile_frame(restorer, h: int, w: int, t: int) -> dict:
    """Self CPU time of one restored frame by op: the convolution/matmul share, the rest, the top others."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    frames = [torch.rand(3, h, w, generator=torch.Generator().manual_seed(k)) for k in range(t)]
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        next(iter(restorer.run(iter(frames), start=t // 2, stop=t // 2 + 1)))
    by_op: dict[str, float] = {}
    for e in prof.key_averages():
        by_op[e.key] = by_op.get(e.key, 0.0) + e.self_cpu_time_total / 1e6
    total = sum(by_op.values()) or 1.0
    compute = sum(v for k, v in by_op.items() if any(c in k.lower() for c in COMPUTE_OPS))
    others = sorted(((v, k) for k, v in by_op.items() if not any(c in k.lower() for c in COMPUTE_OPS)), reverse=True)
    return {"total_s": total, "compute_s": compute, "compute_share": compute / total,
            "top_others": [(k, v) for v, k in others[:6]]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="180x320", help="LR frame size HxW")
    p.add_argument("--model", default="fmanet")
    p.add_argument("--frames", type=int, default=4, help="output frames to time")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", default="fp32", help="fp32, bf16, fp16 or auto (default fp32)")
    p.add_argument("--release-seconds", type=float, default=52.0,
                   help="the released code's time per frame to compare with (architecture doc: 52-56 s at "
                        "180x320 on this machine kind's Intel CPUs)")
    p.add_argument("--tile", type=int)
    p.add_argument("--max-memory", type=float, help="GB budget for choosing tiles")
    p.add_argument("--profile", action="store_true",
                   help="also profile one frame: convolution/matmul share of the time and the costliest other ops")
    p.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return
    child = subprocess.run([sys.executable, __file__, "--case", *sys.argv[1:]], capture_output=True, text=True)
    if child.returncode:
        sys.exit(child.stderr)
    r = json.loads(child.stdout.strip().splitlines()[-1])
    from vsrdb.precision import describe_cpu

    on_cpu = r["device"] == "cpu"
    rate = gemm_gflops(args.threads, r["precision"]) if on_cpu else float("nan")
    print(f"restore {r['model']} {r['size']} on {r['device']} ({r['threads']} threads), {r['tiles']} tile(s), "
          f"precision {r['precision']} ({r['precision_reason']})")
    if on_cpu:
        print(f"  CPU: {describe_cpu()}")
    print(f"  time per output frame (streaming) : {r['seconds_per_frame']:.2f} s   (first frame {r['first_frame_s']:.2f} s)"
          + (f" = {r['seconds_per_frame'] / args.release_seconds:.2f}x the release's {args.release_seconds:g} s"
             if r["size"] == "180x320" and r["model"] == "fmanet" else ""))
    print(f"  peak resident memory              : {r['peak_rss_gb']:.2f} GB")
    if "peak_gpu_gb" in r:
        print(f"  peak GPU memory                   : {r['peak_gpu_gb']:.2f} GB")
    print(f"  work per output frame             : {r['tflop_per_frame']:.3f} TFLOP")
    print(f"  achieved                          : {r['gflops_achieved']:.0f} GFLOP/s"
          + (f" = {100 * r['gflops_achieved'] / rate:.0f}% of {r['precision']} matmul ({rate:.0f} GFLOP/s)"
             if rate == rate else ""))
    if "profile" in r:
        pr = r["profile"]
        print(f"  profiled frame (self CPU time)    : {pr['total_s']:.2f} s: convolutions and matmuls "
              f"{100 * pr['compute_share']:.0f}%, everything else {100 * (1 - pr['compute_share']):.0f}%")
        for name, secs in pr["top_others"]:
            print(f"      {name:38s} {secs:7.3f} s  ({100 * secs / pr['total_s']:.0f}%)")


if __name__ == "__main__":
    main()
