"""The picture of docs/restore.md's "Native scales": one held-out frame at x2 and at x1.

Reads two ``vsrdb synth`` clips of the same footage (``--scale 2`` and ``--scale 1``), restores
the x2 one with bicubic, the x4 model shrunk to x2 (what ``restore --outscale 2`` writes) and the
native x2 model, and the x1 one with the native x1 model, and writes one PNG: a crop of each,
enlarged with nearest neighbours so that pixels stay pixels, with its PSNR against the sharp frame.

    python scripts/scale_picture.py data/eval-x2/tree data/eval-x1/tree -o docs/scales.png \\
        --x1-weights runs/builtin-x1/model --x1-label "x1 run (not shipped)" --zoom 2
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("x2_data", type=Path, help="a vsrdb synth --scale 2 folder")
    p.add_argument("x1_data", type=Path, help="a vsrdb synth --scale 1 folder of the same footage")
    p.add_argument("-o", "--output", type=Path, required=True)
    p.add_argument("--clip", default="000")
    p.add_argument("--frame", type=int, default=5)
    p.add_argument("--x4-weights", default="builtin")
    p.add_argument("--x2-weights", default="builtin-x2")
    p.add_argument("--x1-weights", help="native x1 weights (left out when not given)")
    p.add_argument("--x1-label", default="native x1")
    p.add_argument("--crop", default="", help="Y,X,H,W of the sharp frame (default: its centre, 96x128)")
    p.add_argument("--zoom", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()

    import cv2
    import torch

    from vsrdb.checkpoints import load_checkpoint
    from vsrdb.data.resize import imresize, resample
    from vsrdb.evaluate.metrics import psnr
    from vsrdb.restore import Restorer
    from vsrdb.video import list_frames, read_image, to_tensor

    torch.set_num_threads(args.threads)

    def clip(root: Path, scale: int) -> tuple[list[torch.Tensor], torch.Tensor]:
        lr = [to_tensor(read_image(f)) for f in list_frames(root / "train_blur_bicubic" / f"X{scale}" / args.clip)]
        sharp = to_tensor(read_image(list_frames(root / "train_sharp" / args.clip)[args.frame]))
        return lr, sharp

    def restored(weights: str, frames: list[torch.Tensor], size: tuple[int, int]) -> torch.Tensor:
        model = load_checkpoint(weights)
        with torch.no_grad():
            out = list(Restorer(model).run(iter(frames)))[args.frame]
        return resample(out, size).clamp(0, 1)

    lr2, sharp = clip(args.x2_data, 2)
    size = tuple(sharp.shape[-2:])
    panels = [("input x2 (bicubic)", imresize(lr2[args.frame], 2.0).clamp(0, 1)),
              ("x4 shrunk (--outscale 2)", restored(args.x4_weights, lr2, size)),
              ("native x2 (--scale 2)", restored(args.x2_weights, lr2, size))]
    lr1, sharp1 = clip(args.x1_data, 1)
    if tuple(sharp1.shape[-2:]) != size:
        raise SystemExit(f"{args.x1_data}: its frames are {tuple(sharp1.shape[-2:])}, not {size} as at x2")
    panels.append(("input x1 (blurry)", lr1[args.frame]))
    if args.x1_weights:
        panels.append((args.x1_label, restored(args.x1_weights, lr1, size)))
    panels.append(("sharp", sharp))
    h, w = size
    y, x, ch, cw = map(int, args.crop.split(",")) if args.crop else ((h - 96) // 2, (w - 128) // 2, 96, 128)
    tiles = []
    for label, img in panels:
        score = "" if label == "sharp" else f"  {psnr(img, sharp):.2f} dB"
        crop = (img[:, y:y + ch, x:x + cw].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        crop = cv2.resize(crop, (cw * args.zoom, ch * args.zoom), interpolation=cv2.INTER_NEAREST)
        bar = np.full((28, crop.shape[1], 3), 255, np.uint8)
        cv2.putText(bar, label + score, (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(np.concatenate([crop, bar], axis=0))
    rows = [np.concatenate(tiles[i:i + 3], axis=1) for i in range(0, len(tiles), 3)]
    if rows[-1].shape[1] < rows[0].shape[1]:
        rows[-1] = np.pad(rows[-1], ((0, 0), (0, rows[0].shape[1] - rows[-1].shape[1]), (0, 0)), constant_values=255)
    picture = np.concatenate(rows, axis=0)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_name(args.output.name + ".partial.png")
    cv2.imwrite(str(tmp), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    tmp.replace(args.output)
    print(f"wrote {args.output}: {', '.join(label for label, _ in panels)}")


if __name__ == "__main__":
    main()
