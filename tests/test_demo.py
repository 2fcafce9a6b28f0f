"""Issue 7: procedural content, `vsrdb synth --procedural`, `vsrdb demo`, the built-in weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from vsrdb.cli import main
from vsrdb.data.procedural import procedural_image


def test_procedural_pictures_are_deterministic_varied_and_detailed():
    a = procedural_image(96, 128, np.random.default_rng(3))
    b = procedural_image(96, 128, np.random.default_rng(3))
    c = procedural_image(96, 128, np.random.default_rng(4))
    assert a.shape == (3, 96, 128) and torch.equal(a, b)
    assert (a - c).abs().mean() > 0.05
    assert 0 <= a.min() and a.max() <= 1
    grad = (a[:, 1:] - a[:, :-1]).abs()
    assert (grad > 0.2).float().mean() > 0.005  # hard edges: what deblurring has to restore


def test_synth_makes_clips_from_procedural_pictures_alone(tmp_path):
    out = tmp_path / "ds"
    assert main(["synth", "--procedural", "2", "--photo-clips", "1", "--clip-frames", "3", "--photo-size", "32x48",
                 "--procedural-size", "64x96", "-o", str(out)]) == 0
    clips = sorted((out / "train_sharp").iterdir())
    assert [c.name for c in clips] == ["000", "001"]
    assert len(list((out / "train_blur_bicubic" / "X4" / "001").iterdir())) == 3


def test_synth_without_any_source_is_refused(tmp_path, capsys):
    assert main(["synth", "-o", str(tmp_path / "x")]) == 2
    assert "nothing to synthesise from" in capsys.readouterr().err


def test_demo_writes_video_report_and_scores(tmp_path, capsys):
    import av

    from vsrdb.checkpoints import save_checkpoint
    from vsrdb.demo import run_demo
    from vsrdb.models import build

    torch.manual_seed(0)
    save_checkpoint(build("fmanet-tiny").eval(), tmp_path / "w")
    scores = run_demo(str(tmp_path / "demo"), frames=4, progress=False, weights=str(tmp_path / "w"))
    folder = tmp_path / "demo"
    assert set(scores) == {"vsrdb-builtin", "bicubic", "folder"}
    for name in ("vsrdb-builtin", "bicubic"):
        avg = scores[name]["average"]
        assert avg["frames"] == 2 and np.isfinite(avg["psnr"]) and np.isfinite(avg["tof"])
    with av.open(str(folder / "side_by_side.mp4")) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 4 and frames[0].shape == (256, 3 * 384, 3)
    page = (folder / "report" / "report.html").read_text()
    assert "vsrdb-builtin" in page and "K^R restoration kernels" in page
    out = capsys.readouterr().out
    assert "| vsrdb-builtin |" in out and "| bicubic |" in out
    # The folder is not replaced without --overwrite.
    assert main(["demo", "-o", str(folder), "--frames", "3", "--weights", str(tmp_path / "w"), "--quiet"]) == 2
    assert "exists" in capsys.readouterr().err


BUILTIN = Path(__file__).resolve().parents[1] / "src" / "vsrdb" / "weights" / "builtin"


@pytest.mark.skipif(not (BUILTIN / "config.json").exists(), reason="no built-in weights in this checkout")
def test_builtin_weights_ship_small_and_load_safely():
    from vsrdb.checkpoints import builtin_weights as _builtin_weights
    from vsrdb.checkpoints import load_checkpoint

    assert Path(_builtin_weights()) == BUILTIN
    assert (BUILTIN / "model.safetensors").stat().st_size <= 20 * 2 ** 20
    meta = json.loads((BUILTIN / "config.json").read_text())
    assert meta["model"] == "fmanet-cpu"
    model = load_checkpoint(BUILTIN)
    assert model.net_r is not None
    lr = torch.rand(1, 3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = model.restore(lr)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()


@pytest.mark.skipif(not (BUILTIN / "config.json").exists(), reason="no built-in weights in this checkout")
def test_info_lists_the_built_in_models_and_each_loads_by_name(capsys):
    from vsrdb.checkpoints import BUILTIN_MODELS, load_checkpoint

    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in BUILTIN_MODELS:
        line = next(line for line in out.splitlines() if line.startswith(f"{name} "))
        assert "fmanet-cpu" in line and "MB" in line, line
        assert load_checkpoint(name).net_r is not None
    assert main(["info", "builtin-clean"]) == 0
    assert "model: fmanet-cpu" in capsys.readouterr().out


def test_info_says_where_the_cpu_kernel_stands_without_building_it(tmp_path, monkeypatch, capsys):
    from vsrdb.ops import kernels

    monkeypatch.setattr(kernels, "_state", {})
    monkeypatch.setenv("VSRDB_KERNELS_DIR", str(tmp_path / "kernels"))
    assert main(["info"]) == 0
    assert f"not built yet: the first vsrdb restore on a CPU compiles them into {tmp_path / 'kernels'}" in \
        capsys.readouterr().out
    assert not (tmp_path / "kernels").exists()  # nothing was built or created
    monkeypatch.setenv("PATH", str(tmp_path))  # no compiler, no ninja
    assert "cannot be built here (no c++ or ninja on PATH)" in kernels.describe()
    monkeypatch.setenv("VSRDB_KERNELS", "0")
    assert "off (VSRDB_KERNELS=0)" in kernels.describe()
