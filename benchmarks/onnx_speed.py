"""ONNX Runtime against PyTorch (fp32, bf16) on one window of a model (docs/deploy.md).

    python benchmarks/onnx_speed.py                          # built-in model, 180x320 LR window
    python benchmarks/onnx_speed.py --weights CKPT --size 90x160
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weights", default="builtin")
    p.add_argument("--size", default="180x320", help="LR HxW")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    import numpy as np
    import onnxruntime as ort
    import torch

    import vsrdb
    from vsrdb.export import export_onnx
    from vsrdb.precision import describe_cpu

    torch.set_num_threads(args.threads)
    h, w = map(int, args.size.split("x"))
    model = vsrdb.load_checkpoint(args.weights)
    lr = torch.rand(1, 3, model.config.num_seq, h, w, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(model, Path(tmp) / "model.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = args.threads, 1
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = lr.numpy()
    session.run(None, {"lr": x})
    start = time.perf_counter()
    for _ in range(args.repeat):
        got = session.run(None, {"lr": x})[0]
    print(f"{args.weights} window {args.size}, {args.threads} threads, {describe_cpu()}")
    print(f"  onnxruntime {ort.__version__} fp32 : {(time.perf_counter() - start) / args.repeat:.3f} s/window")
    with torch.no_grad():
        print(f"  max |onnxruntime - torch fp32| : {np.abs(got - model.restore(lr).numpy()).max():.2e}")
        for dtype in (torch.float32, torch.bfloat16):
            m = vsrdb.load_checkpoint(args.weights).to(dtype)
            m.restore(lr)
            start = time.perf_counter()
            for _ in range(args.repeat):
                m.restore(lr)
            print(f"  torch {str(dtype)[6:]:8s}              : {(time.perf_counter() - start) / args.repeat:.3f} s/window")


if __name__ == "__main__":
    main()
