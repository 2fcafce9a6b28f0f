"""Where a model's flicker comes from (issue 38, item 3): per frame pair, on one clip.

Reads a ``vsrdb synth`` clip (REDS layout, x4), compresses its blurry LR frames the way
``vsrdb evaluate --degrade h264:crf=N`` does (libx264, the encoder's own GOP and B-frames), keeps
each frame's picture type, restores them with the model and with bicubic, and prints per frame
pair: the pair's picture types, the codec's error on each input frame (PSNR of the decoded LR
against the clean blurry LR) and the model's and bicubic's tOF on that pair. Then the summary:
the model's tOF minus bicubic's, clean and compressed, by kind of pair, and its correlation with
the change in codec error between the two frames (a model that turns codec noise into detail
flickers where the codec's quality changes from frame to frame).

    python scripts/flicker_analysis.py data/eval/carphone --clip 000 --crf 23 [--weights builtin]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", type=Path, help="a vsrdb synth folder (REDS layout, x4)")
    p.add_argument("--clip", default="000")
    p.add_argument("--crf", type=int, default=23)
    p.add_argument("--weights", default="builtin")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import torch

    from vsrdb.checkpoints import load_checkpoint
    from vsrdb.data.degrade import encode_video_with_types
    from vsrdb.data.resize import imresize
    from vsrdb.evaluate.metrics import farneback, flow_difference, psnr, to_grey_u8
    from vsrdb.restore import Restorer
    from vsrdb.video import list_frames, read_image, to_tensor

    torch.set_num_threads(args.threads)
    blur = [read_image(f) for f in list_frames(args.data / "train_blur_bicubic" / "X4" / args.clip)]
    sharp = [to_tensor(read_image(f)) for f in list_frames(args.data / "train_sharp" / args.clip)]
    if len(blur) < 3:
        sys.exit(f"{args.data}: clip {args.clip} has {len(blur)} frames; at least 3 are needed")
    clean = np.stack(blur)
    coded, kinds = encode_video_with_types(clean, "h264", crf=args.crf)
    model = load_checkpoint(args.weights)
    gt_grey = [to_grey_u8(f) for f in sharp]
    gt_flow = [None] + [farneback(gt_grey[i - 1], gt_grey[i]) for i in range(1, len(sharp))]

    def pair_tof(frames: list) -> list[float]:
        grey = [to_grey_u8(f) for f in frames]
        return [float("nan")] + [flow_difference(farneback(grey[i - 1], grey[i]), gt_flow[i])
                                 for i in range(1, len(frames))]

    results = {}
    for name, lr in (("clean", clean), (f"crf{args.crf}", coded)):
        inputs = [to_tensor(f) for f in lr]
        restored = [o.float().cpu() for o in Restorer(model).run(iter(inputs))]
        bicubic = [imresize(f, 4.0).clamp(0, 1) for f in inputs]
        results[name] = {"model": pair_tof(restored), "bicubic": pair_tof(bicubic),
                         "psnr_model": [psnr(o, g) for o, g in zip(restored, sharp)],
                         "psnr_bicubic": [psnr(o, g) for o, g in zip(bicubic, sharp)]}
    codec_err = [psnr(to_tensor(c), to_tensor(b)) for c, b in zip(coded, clean)]
    key = f"crf{args.crf}"
    print(f"{args.data} clip {args.clip}: {len(blur)} frames, {clean.shape[2]}x{clean.shape[1]} LR, "
          f"weights {args.weights}")
    print("| frame | type | codec PSNR | tOF model / bicubic, clean | tOF model / bicubic, "
          f"{key} | PSNR model / bicubic, {key} |")
    print("|---|---|---|---|---|---|")
    for i in range(len(blur)):
        c, k = results["clean"], results[key]
        print(f"| {i} | {kinds[i]} | {codec_err[i]:.2f} | {c['model'][i]:.3f} / {c['bicubic'][i]:.3f} | "
              f"{k['model'][i]:.3f} / {k['bicubic'][i]:.3f} | {k['psnr_model'][i]:.2f} / {k['psnr_bicubic'][i]:.2f} |")
    for name in ("clean", key):
        r = results[name]
        excess = np.array(r["model"][1:]) - np.array(r["bicubic"][1:])
        print(f"{name}: tOF model {np.nanmean(r['model'][1:]):.3f}, bicubic {np.nanmean(r['bicubic'][1:]):.3f}, "
              f"model worse on {int((excess > 0).sum())} of {len(excess)} pairs")
    excess = np.array(results[key]["model"][1:]) - np.array(results[key]["bicubic"][1:])
    clean_excess = np.array(results["clean"]["model"][1:]) - np.array(results["clean"]["bicubic"][1:])
    added = excess - clean_excess  # what compression adds to the model's excess flicker, per pair
    jump = np.abs(np.diff(codec_err))
    by_kind: dict[str, list[float]] = {}
    for i, a in enumerate(added, start=1):
        by_kind.setdefault(f"{kinds[i - 1]}->{kinds[i]}", []).append(float(a))
    print("excess tOF added by compression (model minus bicubic, compressed minus clean), by pair: "
          + ", ".join(f"{k} {np.mean(v):+.3f} (n={len(v)})" for k, v in sorted(by_kind.items())))
    if len(added) > 2 and jump.std() > 0 and added.std() > 0:
        print(f"correlation of that with the change in codec PSNR between the pair's frames: "
              f"{np.corrcoef(jump, added)[0, 1]:+.2f}")


if __name__ == "__main__":
    main()
