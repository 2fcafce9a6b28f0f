"""docs/builtin-model.md's per-clip tables from `scripts/eval_builtin_real.sh` JSON files.

    python scripts/builtin_tables.py runs/eval5 NEW_LABEL OLD_LABEL [--datasets megamind tree]

Reads OUT/LABEL-DATASET.json (and LABEL-DATASET-*.json, merged) for both labels and prints one
table per degradation setting: PSNR / SSIM / tOF per clip, the PSNR gain over bicubic on the same
input (at x1 over the blurry input itself, `input`), the Megamind mean, and a tOF worse than the
baseline's in bold. The gains the issue's targets name follow each table.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

BASELINES = ("bicubic", "input")  # evaluate's baseline at x4 and x2, and at x1 (the blurry input itself)


def _load(out: Path, label: str, dataset: str) -> dict:
    # Settings scored in separate runs (LABEL-DATASET-a.json, LABEL-DATASET-b.json, ...) are merged:
    # the inputs are seeded by clip name, so every run sees the same degraded bytes.
    files = [f for f in [out / f"{label}-{dataset}.json"] if f.exists()] + sorted(out.glob(f"{label}-{dataset}-*.json"))
    if not files:
        raise SystemExit(f"error: no {label}-{dataset}.json (or {label}-{dataset}-*.json) in {out}")
    methods: dict = {}
    for f in files:
        methods.update(json.loads(f.read_text())["methods"])
    return methods


def _method(methods: dict, setting: str, baseline: bool) -> dict:
    for name, m in methods.items():
        head, _, tail = name.partition(" @ ")
        if tail == setting and (head in BASELINES) == baseline:
            return m
    raise KeyError(setting)


def _cell(s: dict, bicubic: dict) -> str:
    tof = f"{s['tof']:.3f}"
    if s["tof"] > bicubic["tof"] + 5e-4:
        tof = f"**{tof}**"
    return f"{s['psnr']:.2f} / {s['ssim']:.4f} / {tof}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("new")
    p.add_argument("old")
    p.add_argument("--datasets", nargs="+", default=["megamind", "tree"])
    p.add_argument("--names", nargs=2, default=["new default (`builtin`)", "version 2 (`builtin-clean`)"])
    args = p.parse_args()
    runs = {ds: (_load(args.out, args.new, ds), _load(args.out, args.old, ds)) for ds in args.datasets}
    first = runs[args.datasets[0]][0]
    settings = [n.partition(" @ ")[2] for n in first if n.partition(" @ ")[0] not in BASELINES]
    base = next(n.partition(" @ ")[0] for n in first if n.partition(" @ ")[0] in BASELINES)
    for setting in settings:
        print(f"**{setting}** (cells: PSNR / SSIM / tOF; gain = PSNR over {base} on the same input; "
              f"a tOF worse than {base}'s in bold)\n")
        print(f"| clip | {args.names[0]} | gain | {args.names[1]} | gain | {base} |")
        print("|---|---|---|---|---|---|")
        summary = []
        for ds, (new, old) in runs.items():
            n, o, b = (_method(new, setting, False), _method(old, setting, False), _method(new, setting, True))
            rows = [(f"{ds.capitalize()} {c}" if len(b["clips"]) > 1 else ds, n["clips"][c], o["clips"][c],
                     b["clips"][c]) for c in b["clips"]]
            if len(b["clips"]) > 1:
                rows.append((f"**{ds.capitalize()} mean**", n["average"], o["average"], b["average"]))
            for label, ns, os_, bs in rows:
                print(f"| {label} | {_cell(ns, bs)} | {ns['psnr'] - bs['psnr']:+.2f} | {_cell(os_, bs)} | "
                      f"{os_['psnr'] - bs['psnr']:+.2f} | {bs['psnr']:.2f} / {bs['ssim']:.4f} / {bs['tof']:.3f} |")
            gains = [ns["psnr"] - bs["psnr"] for _, ns, _, bs in rows[: len(b["clips"])]]
            summary.append(f"{ds}: min clip gain {min(gains):+.2f} dB, tOF worse than {base}'s on "
                           f"{sum(ns['tof'] > bs['tof'] + 5e-4 for _, ns, _, bs in rows[: len(b['clips'])])} "
                           f"of {len(gains)} clips")
        print("\n" + "; ".join(summary) + "\n")


if __name__ == "__main__":
    main()
