"""Do restored frames stay the same across a change to the inference path? (issue 37, item 3)

``--save FILE`` restores a fixed set of clips with fixed models through the streaming
``Restorer`` and stores every output frame; ``--compare FILE`` restores them again with the
code as it is now and prints, per case, the largest absolute difference from the stored fp32
frames and the PSNR of the bf16 frames against this run's fp32 frames.

Cases: the authors' reference checkpoint (``../shared/reference/tiny_a_official_checkpoint``,
BGR, skipped without ``../shared``), the built-in model, and the full ``fmanet`` with seeded
random weights; each untiled and in a forced tile grid. Frames: the first 5 of
``../shared/data/clips/tree.avi`` area-downscaled to 72x96 (a seeded random clip without
``../shared``; its figures are then not comparable with a run that had it).

    git stash; python benchmarks/restore_agreement.py --save /tmp/before.pt; git stash pop
    python benchmarks/restore_agreement.py --compare /tmp/before.pt
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

SHARED = Path(os.environ.get("VSRDB_SHARED", Path(__file__).resolve().parents[2] / "shared"))
LR_SIZE = (72, 96)
FRAMES = 5


def clip() -> tuple[list[torch.Tensor], str]:
    path = SHARED / "data" / "clips" / "tree.avi"
    if path.is_file():
        from vsrdb.video import open_frames, to_tensor

        frames = []
        with open_frames(path) as src:
            for arr in src:
                frames.append(F.interpolate(to_tensor(arr)[None], size=LR_SIZE, mode="area")[0])
                if len(frames) == FRAMES:
                    break
        return frames, str(path)
    gen = torch.Generator().manual_seed(0)
    return [torch.rand(3, *LR_SIZE, generator=gen) for _ in range(FRAMES)], "random frames (no ../shared)"


def models() -> dict[str, torch.nn.Module]:
    import vsrdb
    from vsrdb.checkpoints import load_checkpoint

    out = {}
    ref = SHARED / "reference" / "tiny_a_official_checkpoint"
    if ref.is_dir():
        out["authors' tiny_a checkpoint"] = load_checkpoint(ref)
    out["builtin"] = load_checkpoint("builtin")
    torch.manual_seed(0)
    out["fmanet (seeded random weights)"] = vsrdb.build("fmanet").eval()
    return out


def restore_all(precision: str) -> dict[str, torch.Tensor]:
    from vsrdb.restore import Restorer

    frames, _ = clip()
    results = {}
    for name, model in models().items():
        for tile in (None, 40):
            r = Restorer(model, precision=precision, tile=tile, max_memory=8 << 30)
            results[f"{name}, {'tiles of 40' if tile else 'untiled'}"] = torch.stack(list(r.run(iter(frames))))
    return results


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = (a.clamp(0, 1) - b.clamp(0, 1)).pow(2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--save", metavar="FILE")
    g.add_argument("--compare", metavar="FILE")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from vsrdb.precision import describe_cpu

    print(f"CPU: {describe_cpu()}; frames: {clip()[1]}, {FRAMES} at {LR_SIZE[1]}x{LR_SIZE[0]} LR")
    fp32 = restore_all("fp32")
    if args.save:
        torch.save(fp32, args.save)
        print(f"saved {len(fp32)} cases to {args.save}")
        return
    before = torch.load(args.compare, weights_only=True)
    from vsrdb.precision import cpu_capabilities

    bf16 = restore_all("bf16")
    native = "native" if cpu_capabilities()["bf16"] else "emulated"
    worst = 0.0
    for name, out in fp32.items():
        diff = (out - before[name]).abs().max().item() if name in before else float("nan")
        worst = max(worst, diff)
        print(f"  {name:48s} fp32 max |now - saved| {diff:.2e}   bf16 ({native}) vs fp32 "
              f"{psnr(bf16[name], out):6.2f} dB (min over frames "
              f"{min(psnr(a, b) for a, b in zip(bf16[name], out)):6.2f})")
    print(f"largest fp32 difference: {worst:.2e} ({'within' if worst <= 1e-5 else 'OVER'} 1e-5)")
    sys.exit(0 if worst <= 1e-5 else 1)


if __name__ == "__main__":
    main()
