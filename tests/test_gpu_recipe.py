"""The one-shot GPU recipe of the built-in models (scripts/gpu_builtin_v4.py: version 4 at x4,
builtin-x2 and builtin-x1), run in its tiny mode on the CPU: synthesis at each scale, the timed
training side by side, and each scale's held-out table, into the output folder."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from test_restore_media import clip, make_video

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "gpu_builtin_v4.py"


def test_the_gpu_recipe_writes_weights_and_the_held_out_table(tmp_path):
    data = tmp_path / "data"
    (data / "photos").mkdir(parents=True)
    (data / "heldout").mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        photo = cv2.GaussianBlur(rng.integers(0, 256, (192, 256, 3), dtype=np.uint8), (5, 5), 1)
        cv2.imwrite(str(data / "photos" / f"p{i}.jpg"), photo)
    make_video(data / "heldout" / "tree.avi", clip(65, h=48, w=64), codec="mpeg4")  # 12 clip frames x 5 averaged
    out = tmp_path / "out"
    done = subprocess.run([sys.executable, str(SCRIPT), "run", "--data", str(data), "--out", str(out), "--tiny",
                           "--device", "cpu", "--minutes", "3"], capture_output=True, text=True, timeout=600,
                          env={"TMPDIR": str(tmp_path), **{k: v for k, v in __import__("os").environ.items()
                                                            if k != "TMPDIR"}})
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(summary["scales"]) == ["x1", "x2", "x4"]
    for scale in (4, 2, 1):
        dest = out / f"x{scale}"
        config = json.loads((dest / "model" / "config.json").read_text())
        assert config["model"] == "fmanet-tiny" and config["config"]["scale"] == scale, config
        assert (dest / "model" / "model.safetensors").stat().st_size > 0
        table = (dest / "heldout.md").read_text()
        # x1's baseline is the blurry input itself, the others' bicubic
        baseline = "input" if scale == 1 else "bicubic"
        assert f"# x{scale}: x{scale} (fmanet-tiny, this run)" in table and "| tree |" in table, table
        assert "h264:crf=23" in table and f"| {baseline} |" in table, table
        entry = summary["scales"][f"x{scale}"]
        assert entry["iterations"] == 2 and entry["training_clips"] == 2 and entry["seconds_per_step"] > 0
        assert (dest / "log.csv").read_text().count("\n") > 2
