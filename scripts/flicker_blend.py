"""Does a recurrent blend with the previous output cure a model's flicker? (issue 38, item 3)

Every restored frame comes from its own window, so nothing ties it to the frame before. This
experiment ties them after the fact, as ``vsrdb restore --deflicker`` does
(``vsrdb/restore/deflicker.py``): output t is blended with the previous *blended* output, warped
onto it by DIS optical flow, with a weight ``alpha * exp(-d^2 / sigma^2)`` per pixel, where d is the
RGB distance between the warped previous output and output t (so occluded or mis-aligned pixels
keep output t). It prints, per clip and per
(alpha, sigma), PSNR and tOF on the frames ``vsrdb evaluate`` scores (first and last excluded), next
to the model alone and bicubic, all on the same degraded input (``--degrade`` as in evaluate).

    python scripts/flicker_blend.py data/eval/carphone data/eval/tree --degrade h264:crf=23 [--weights builtin]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

BLENDS = ((0.5, 0.05), (0.7, 0.05), (0.7, 0.1), (0.85, 0.05))


def blend_with_previous(frames: list[Tensor], alpha: float, sigma: float) -> list[Tensor]:
    """``[3, H, W]`` frames in [0, 1] -> the same, each blended with the warped previous result
    (``vsrdb restore --deflicker``'s blend, ``vsrdb.restore.deflicker``)."""
    from vsrdb.restore.deflicker import deflicker

    out: list[Tensor] = []
    for frame in frames:
        out.append(deflicker(frame, out[-1] if out else None, alpha, sigma))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, nargs="+", help="vsrdb synth folders (REDS layout, x4)")
    p.add_argument("--degrade", default="", help="e.g. h264:crf=23 (default: the clean input)")
    p.add_argument("--weights", default="builtin")
    p.add_argument("--max-clips", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    from vsrdb.checkpoints import builtin_weights, load_checkpoint
    from vsrdb.data.datasets import find_clips
    from vsrdb.data.degrade import load_degradation
    from vsrdb.evaluate.methods import ModelMethod, baseline
    from vsrdb.evaluate.metrics import psnr, tof
    from vsrdb.evaluate.runs import clip_inputs
    from vsrdb.video.frames import read_image, to_tensor

    torch.set_num_threads(args.threads)
    model = ModelMethod(args.weights, load_checkpoint(builtin_weights(args.weights) or args.weights))
    bicubic = baseline("bicubic")
    degrade = load_degradation(args.degrade) if args.degrade else None
    print(f"{args.weights}, input {args.degrade or 'clean'}: PSNR (dB) / tOF per clip")
    for root in args.data:
        for clip in find_clips("reds", root, split="all")[:args.max_clips]:
            lr = list(clip_inputs(clip, 4, degrade))
            sharp = [to_tensor(read_image(path)) for path in clip.sharp]
            restored = [f.float().clamp(0, 1) for f in model.run(lr)]
            outputs = {"bicubic": [f.float() for f in bicubic.run(lr)], "model": restored}
            for alpha, sigma in BLENDS:
                outputs[f"blend {alpha} / {sigma}"] = blend_with_previous(restored, alpha, sigma)
            scored = slice(1, len(sharp) - 1)
            for name, frames in outputs.items():
                score = np.mean([psnr(o, g) for o, g in zip(frames[scored], sharp[scored])])
                print(f"  {root.name} {clip.name} {name:18s} {score:6.2f} / {tof(frames[scored], sharp[scored]):.3f}",
                      flush=True)


if __name__ == "__main__":
    main()
