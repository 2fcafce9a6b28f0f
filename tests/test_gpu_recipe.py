"""The one-shot GPU recipe of the built-in model's version 4 (scripts/gpu_builtin_v4.py), run in its
tiny mode on the CPU: synthesis, the timed training, and the held-out table, into the output folder."""

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
    config = json.loads((out / "model" / "config.json").read_text())
    assert config["model"] == "fmanet-tiny" and (out / "model" / "model.safetensors").stat().st_size > 0
    table = (out / "heldout.md").read_text()
    assert "# Version 4 (fmanet-tiny, this run)" in table and "| tree |" in table and "h264:crf=23" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["iterations"] == {"netd": 2, "joint": 2} and summary["training_clips"] == 2
    assert summary["seconds_per_step"] > 0 and (out / "log.csv").read_text().count("\n") > 2
