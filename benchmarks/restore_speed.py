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
    python benchmarks/restore_speed.py --model fmanet-cpu --end-to-end   # vsrdb restore of an H.264 clip

``--end-to-end`` times ``vsrdb restore`` as a user runs it (decode, model, encode, the resume
cache) on a generated ``--frames``-frame H.264 clip of ``--size``, as wall seconds of the
whole command over its frames (start-up and model load included), and prints the issue-37
efficiency: the model's FLOPs per output frame over those seconds, divided by the same
dtype's 2048x2048 matmul rate measured just before and just after (the higher of the two,
so a noisy machine cannot flatter the ratio).

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


def gemm_gflops(threads: int, dtype: str = "fp32", repeats: int = 6) -> float:
    """2048x2048 matmul rate in ``dtype`` on this CPU: the best of ``repeats`` runs of 5 products
    (machines of this kind are shared, and a neighbour's load only ever lowers the figure)."""
    import torch

    from vsrdb.precision import DTYPES

    torch.set_num_threads(threads)
    a = torch.randn(2048, 2048).to(DTYPES[dtype])
    a @ a
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(5):
            a @ a
        best = max(best, 5 * 2 * 2048 ** 3 / (time.perf_counter() - start) / 1e9)
    return best


def window_flops(model, h: int, w: int) -> float:
    """FLOPs of one window's inference (convs, matmuls) counted by torch's FlopCounterMode."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    try:
        from vsrdb.ops.fused_conv import unfused
    except ImportError:  # a checkout from before the fused ops (timing an older version)
        from contextlib import nullcontext as unfused

    cfg = model.config
    small_h, small_w = min(h, 48), min(w, 64)  # count on a small window, scale by pixels
    lr = torch.rand(1, 3, cfg.num_seq, small_h, small_w)
    with torch.no_grad(), unfused(), FlopCounterMode(display=False) as counter:
        model.restore(lr)
    return counter.get_total_flops() * (h * w) / (small_h * small_w)


def model_args(args: argparse.Namespace) -> dict:
    """``--arg KEY=VALUE`` overrides of the preset's config (values as YAML: 48, true, 2.5)."""
    import yaml

    out = {}
    for item in args.arg:
        key, _, value = item.partition("=")
        out[key] = yaml.safe_load(value)
    return out


def run_case(args: argparse.Namespace) -> dict:
    import itertools

    import torch

    import vsrdb
    from vsrdb.devices import use_heap_allocator
    from vsrdb.restore import Restorer, pick_device

    torch.set_num_threads(args.threads)
    use_heap_allocator()
    h, w = map(int, args.size.split("x"))
    model = vsrdb.build(args.model, **model_args(args)).eval()
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
    result = {"size": f"{h}x{w}", "model": args.model, "args": model_args(args),
              "params": sum(p.numel() for p in model.parameters()), "device": str(device), "threads": args.threads,
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


def make_clip(path: str, h: int, w: int, frames: int) -> None:
    """A moving, textured H.264 clip (yuv420p, 25 fps): content the codec does not make trivial."""
    import av
    import numpy as np

    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (h // 8 + frames + 2, w // 8 + frames + 2, 3), dtype=np.uint8)
    big = np.kron(big, np.ones((8, 8, 1), dtype=np.uint8))  # 8x8 blocks, then a blur
    big = np.clip(np.cumsum(np.cumsum(big.astype(np.float32), 0), 1), 0, None)
    with av.open(path, "w") as out:
        st = out.add_stream("libx264", rate=25)
        st.width, st.height, st.pix_fmt = w, h, "yuv420p"
        for i in range(frames):
            crop = big[i * 2:i * 2 + h, i * 3:i * 3 + w]
            crop = (255 * (crop - crop.min()) / max(1e-6, float(crop.max() - crop.min()))).astype(np.uint8)
            for packet in st.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(crop), format="rgb24")):
                out.mux(packet)
        for packet in st.encode():
            out.mux(packet)


def end_to_end(args: argparse.Namespace) -> None:
    import tempfile

    import vsrdb
    from vsrdb.precision import describe_cpu, resolve_precision

    h, w = map(int, args.size.split("x"))
    precision = resolve_precision(args.precision, args.device).name
    rates = [gemm_gflops(args.threads, precision)] if args.device == "cpu" else []
    with tempfile.TemporaryDirectory() as tmp:
        clip = f"{tmp}/clip.mp4"
        make_clip(clip, h, w, args.frames)
        weights = ["--weights", "builtin"] if args.model == "fmanet-cpu" and not args.arg else []
        if not weights:  # a random-weight checkpoint of the preset (cost does not depend on values)
            from vsrdb.checkpoints import save_checkpoint

            save_checkpoint(vsrdb.build(args.model, **model_args(args)).eval(), f"{tmp}/model")
            weights = ["--weights", f"{tmp}/model"]
        cmd = [sys.executable, "-m", "vsrdb", "restore", clip, "-o", f"{tmp}/out.mp4", *weights, "--quiet",
               "--device", args.device, "--precision", precision, "--threads", str(args.threads)]
        if args.max_memory:
            cmd += ["--max-memory", str(args.max_memory)]
        start = time.perf_counter()
        subprocess.run(cmd, check=True)
        wall = time.perf_counter() - start
    if args.device == "cpu":
        rates.append(gemm_gflops(args.threads, precision))
    model = vsrdb.build(args.model, **model_args(args)).eval()
    flops = window_flops(model, h, w)
    per_frame = wall / args.frames
    print(f"vsrdb restore {args.model} {args.size} H.264 clip, {args.frames} frames, {args.device} "
          f"({args.threads} threads), precision {precision}")
    if args.device == "cpu":
        print(f"  CPU: {describe_cpu()}")
    print(f"  wall time per frame (whole command): {per_frame:.2f} s ({wall:.1f} s in all)")
    print(f"  work per output frame              : {flops / 1e12:.3f} TFLOP -> {flops / per_frame / 1e9:.0f} GFLOP/s")
    if rates:
        rate = max(rates)
        print(f"  {precision} 2048^2 matmul             : {' / '.join(f'{r:.0f}' for r in rates)} GFLOP/s "
              "(before / after)")
        print(f"  efficiency (useful / matmul rate)  : {flops / per_frame / 1e9 / rate:.2f}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="180x320", help="LR frame size HxW")
    p.add_argument("--model", default="fmanet")
    p.add_argument("--arg", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the preset's config (repeatable), e.g. --arg dim=48")
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
    p.add_argument("--end-to-end", action="store_true",
                   help="time `vsrdb restore` of a generated H.264 clip (--frames frames of --size) instead")
    p.add_argument("--case", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.end_to_end:
        end_to_end(args)
        return
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
