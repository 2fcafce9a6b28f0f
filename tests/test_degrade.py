"""Real-footage degradations: each step does what it says, draws replay, synth records them,
training with them resumes exactly, evaluate scores degraded input."""

import json

import cv2
import numpy as np
import pytest
import torch

from vsrdb.cli import main
from vsrdb.data.datasets import WindowDataset, reds_clips
from vsrdb.data.degrade import (
    DEGRADATION_FILE,
    PRESETS,
    add_noise,
    apply_record,
    describe_record,
    load_degradation,
    parse_chain,
)
from vsrdb.errors import ConfigError, InputError

from conftest import synth_photo_dataset


def _clip(n: int = 8, h: int = 64, w: int = 96) -> np.ndarray:
    """A procedural picture (shapes, textures, letters) under a pan: something an encoder spends bits on."""
    from vsrdb.data.procedural import procedural_image

    big = procedural_image(h * 2, w * 2, np.random.default_rng(3)).permute(1, 2, 0).numpy()
    big = 0.8 * big.mean(-1, keepdims=True) + 0.2 * big  # photos' detail is mostly in luma, not in 4:2:0's chroma
    big = (big * 255).round().astype(np.uint8)
    return np.stack([big[i:i + h, 2 * i:2 * i + w] for i in range(n)]).copy()


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(255 ** 2 / max(((a.astype(np.float64) - b) ** 2).mean(), 1e-10)))


def _once(chain: str, frames: np.ndarray, seed: int = 0) -> np.ndarray:
    return apply_record(frames, parse_chain(chain).draw(np.random.default_rng(seed)))


@pytest.mark.parametrize("codec", ["h264", "h265", "vp9"])
def test_a_higher_crf_is_further_from_the_clean_clip(codec):
    clip = _clip()
    low, high = ("vp9:crf=20", "vp9:crf=55") if codec == "vp9" else (f"{codec}:crf=18", f"{codec}:crf=35")
    near, far = _psnr(_once(low, clip), clip), _psnr(_once(high, clip), clip)
    assert far < near - 3, (near, far)
    assert _once(high, clip).shape == clip.shape


def test_mpeg4_rate_and_jpeg_quality_order_the_error():
    clip = _clip()
    assert _psnr(_once("mpeg4:bpp=0.02", clip), clip) < _psnr(_once("mpeg4:bpp=2", clip), clip) - 1
    assert _psnr(_once("jpeg:10", clip), clip) < _psnr(_once("jpeg:95", clip), clip) - 5


def test_a_video_step_is_temporal_the_keyframe_differs_from_the_rest():
    """The whole clip goes through the encoder: frames after the keyframe are predicted, so a
    GOP of 4 puts keyframes (and their different error) at 0, 4, 8."""
    clip = _clip(n=12)
    out = _once("h264:crf=30:gop=4:preset=medium", clip)
    err = [float(np.abs(o.astype(int) - c).mean()) for o, c in zip(out, clip)]
    frame_by_frame = np.stack([_once("h264:crf=30", c[None])[0] for c in clip])
    assert not np.array_equal(out, frame_by_frame)
    assert len(set(np.round(err, 3))) > 3


@pytest.mark.parametrize("sigma", [3.0, 10.0])
def test_noise_at_a_sigma_measures_that_sigma(sigma):
    flat = np.full((6, 64, 64, 3), 128, np.uint8)
    for chain in (f"noise:{sigma}", f"poisson:{sigma}"):  # shot noise: sigma at mid-grey
        noisy = _once(chain, flat).astype(np.float64) - 128
        assert abs(noisy.std() - sigma) < 0.05 * sigma + 0.3, (chain, noisy.std())
        assert abs(noisy.mean()) < 0.2
    grey = _once(f"noise:{sigma}:grey", flat).astype(np.int16)
    assert np.array_equal(grey[..., 0], grey[..., 1]) and np.array_equal(grey[..., 1], grey[..., 2])
    colour = _once(f"noise:{sigma}", flat).astype(np.int16)
    assert not np.array_equal(colour[..., 0], colour[..., 1])
    frames = _once(f"noise:{sigma}", flat)
    assert not np.array_equal(frames[0], frames[1])  # independent per frame


def test_shot_noise_grows_with_brightness():
    dark = add_noise(np.full((2, 64, 64, 3), 30, np.uint8), 6, poisson=True, rng=np.random.default_rng(0))
    bright = add_noise(np.full((2, 64, 64, 3), 220, np.uint8), 6, poisson=True, rng=np.random.default_rng(0))
    assert dark.astype(float).std() < bright.astype(float).std() * 0.6


@pytest.mark.parametrize("preset", PRESETS)
def test_the_same_seed_gives_the_same_bytes(preset):
    clip = _clip(n=6, h=32, w=32)
    d = load_degradation(preset)
    records = [d.draw(np.random.default_rng(k)) for k in range(6)]
    assert records[0] == d.draw(np.random.default_rng(0))
    for r in records:
        assert np.array_equal(apply_record(clip, r), apply_record(clip, json.loads(json.dumps(r))))
    assert len({describe_record(r) for r in records}) > 3  # a draw, not one setting


def test_resize_with_scale_one_and_the_same_kernel_is_near_identity_and_jitter_is_not():
    clip = _clip()
    assert _psnr(_once("resize:1:kernel=bicubic:back=bicubic", clip), clip) > 45
    assert _psnr(_once("resize:0.7:kernel=area", clip), clip) < 35


@pytest.mark.parametrize("spec, message", [
    ("h264:crf=80", "crf 80"), ("blur:3", "unknown step 'blur'"), ("h264:crf=high", "not a number"),
    ("noise:3,h263:crf=2", "unknown step 'h263'"), ("h264:preset=fastest", "preset 'fastest'"),
])
def test_bad_chains_are_one_line_errors(spec, message):
    with pytest.raises(InputError, match=message):
        load_degradation(spec)


def test_bad_yaml_specs_name_the_key(tmp_path):
    with pytest.raises(ConfigError, match="step 1: video takes"):
        load_degradation({"steps": [{"kind": "video", "qp": 3}]})
    with pytest.raises(ConfigError, match="prob 2"):
        load_degradation({"steps": [{"kind": "noise", "prob": 2}]})
    with pytest.raises(ConfigError, match="unknown keys"):
        load_degradation({"step": []})
    f = tmp_path / "d.yaml"
    f.write_text("degrade:\n  clean: 0.5\n  steps:\n    - {kind: h264, crf: [20, 30]}\n")
    d = load_degradation(str(f))
    assert d.clean == 0.5 and d.steps[0].kind == "video" and d.steps[0].params["codec"] == "h264"
    with pytest.raises(InputError, match="no such degradation file"):
        load_degradation(str(tmp_path / "missing.yaml"))


def _frames(folder) -> np.ndarray:
    return np.stack([cv2.imread(str(p))[:, :, ::-1] for p in sorted(folder.glob("*.png"))])


def test_synth_records_each_clip_and_the_record_replays_it(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    clean = synth_photo_dataset(tmp_path / "a", (160, 200), photo_size=(64, 96))
    from vsrdb.data.degrade import load_degradation as load

    deg = synth_photo_dataset(tmp_path / "b", (160, 200), photo_size=(64, 96), degrade=load("web"))
    records = json.loads((deg / DEGRADATION_FILE).read_text())
    assert records["spec"]["name"] == "web" and set(records["clips"]) == {"000", "001"}
    for name, record in records["clips"].items():
        lr = lambda root: _frames(root / "train_blur_bicubic" / "X4" / name)  # noqa: E731
        assert np.array_equal(apply_record(lr(clean), record), lr(deg))
        sharp = lambda root: _frames(root / "train_sharp" / name)  # noqa: E731
        assert np.array_equal(sharp(clean), sharp(deg))  # the targets are unchanged
    assert any(r["steps"] for r in records["clips"].values())


def test_synth_command_takes_a_preset_a_chain_or_refuses(tmp_path, capsys):
    photo = tmp_path / "p.png"
    cv2.imwrite(str(photo), (np.random.default_rng(0).random((96, 128, 3)) * 255).astype(np.uint8))
    args = ["synth", str(photo), "--photo-size", "64x64", "--photo-clips", "1", "--clip-frames", "4"]
    assert main([*args, "-o", str(tmp_path / "c"), "--degrade", "noise:2,h264:crf=30"]) == 0
    rec = json.loads((tmp_path / "c" / DEGRADATION_FILE).read_text())["clips"]["000"]
    assert describe_record(rec) == "noise:2,h264:crf=30:preset=medium"
    assert main([*args, "-o", str(tmp_path / "d"), "--degrade", "h264:crf=99"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith("--degrade 'h264:crf=99': video crf 99 must be a number in [0, 51]")
    assert not (tmp_path / "d").exists()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synth_photo_dataset(tmp_path_factory.mktemp("data"), (160, 200), photo_size=(64, 80))


def test_training_windows_draw_a_new_degradation_each_epoch_and_keep_targets(dataset):
    clips = reds_clips(dataset, "all")
    plain = WindowDataset(clips, patch=16, flow=None, seed=1)
    real = WindowDataset(clips, patch=16, flow=None, seed=1, degrade=load_degradation("phone"))
    a, b = real[3], real[3]
    assert all(torch.equal(a[k], b[k]) for k in a)  # (seed, epoch, index) fixes the draw
    p = plain[3]
    assert torch.equal(a["hr"], p["hr"]) and torch.equal(a["lr_sharp"], p["lr_sharp"])
    assert not torch.equal(a["lr"], p["lr"]) and (a["lr"] - p["lr"]).abs().mean() < 0.1
    real.set_epoch(1)
    plain.set_epoch(1)
    c = real[3]
    assert not torch.equal(c["lr"] - plain[3]["lr"], a["lr"] - p["lr"])


def test_training_with_degradations_resumes_exactly_after_sigkill(tmp_path, dataset):
    import subprocess
    import sys

    from test_train import kill_at_checkpoint, losses, write_config

    extra = {"model": "fmanet-tiny", "stages.netd.iterations": 16, "stages.joint.iterations": 4,
             "data.degrade": "real", "data.workers": 1}
    whole = write_config(tmp_path / "a.yaml", dataset, tmp_path / "a", **extra)
    assert main(["train", str(whole), "--quiet"]) == 0
    cfg = write_config(tmp_path / "b.yaml", dataset, tmp_path / "b", **extra)
    proc = subprocess.Popen([sys.executable, "-m", "vsrdb.cli", "train", str(cfg), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    ckpt = tmp_path / "b" / "checkpoints" / "netd_last.pt"
    kill_at_checkpoint(proc, ckpt, timeout=90)
    assert ckpt.exists() and not (tmp_path / "b" / "model").exists()
    assert main(["train", str(cfg), "--resume", "--quiet"]) == 0
    assert losses(tmp_path / "b") == losses(tmp_path / "a")
    # and the degradations did change the trajectory: the same run without them differs
    clean = write_config(tmp_path / "c.yaml", dataset, tmp_path / "c", **{**extra, "data.degrade": None})
    assert main(["train", str(clean), "--quiet"]) == 0
    assert losses(tmp_path / "c") != losses(tmp_path / "a")


def test_a_bad_degradation_in_a_config_is_named_before_training(tmp_path, dataset, capsys):
    from test_train import write_config

    cfg = write_config(tmp_path / "a.yaml", dataset, tmp_path / "a", **{"data.degrade": {"steps": [{"kind": "h264",
                                                                                                   "crf": 90}]}})
    assert main(["train", str(cfg), "--quiet"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "data.degrade: step 1: video crf 90" in line and not (tmp_path / "a").exists()


def test_evaluate_scores_each_setting_on_the_degraded_input(tmp_path, dataset, capsys):
    out = tmp_path / "s.json"
    argv = ["evaluate", "--data", str(dataset), "--baseline", "bicubic", "--degrade", "clean",
            "--degrade", "h264:crf=40", "--degrade", "noise:12", "--json", str(out), "--quiet"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "bicubic @ clean" in text and "bicubic @ h264:crf=40" in text and "bicubic @ noise:12" in text
    scores = json.loads(out.read_text())
    assert scores["degrade"] == ["clean", "h264:crf=40", "noise:12"]
    psnr = {k: v["average"]["psnr"] for k, v in scores["methods"].items()}
    assert psnr["bicubic @ h264:crf=40"] < psnr["bicubic @ clean"] - 0.3
    assert psnr["bicubic @ noise:12"] < psnr["bicubic @ clean"] - 0.3
    # the same input each run: a second run scores the same
    assert main([*argv[:-1], "--overwrite", "--quiet"]) == 0
    again = json.loads(out.read_text())["methods"]
    assert {k: v["clips"] for k, v in again.items()} == {k: v["clips"] for k, v in scores["methods"].items()}
    assert main(["evaluate", "--pred", str(dataset), "--gt", str(dataset), "--degrade", "h264"]) == 2
    assert "use it with --data" in capsys.readouterr().err
