"""Issue 5: metrics, the frame protocol, `vsrdb evaluate` in both modes, reports, bad input."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from vsrdb.cli import main
from vsrdb.evaluate.metrics import psnr, ssim, to_y, tof, tof_crop
from vsrdb.evaluate.scoring import ScoreOptions, SequenceScorer, motion_bins

from conftest import synth_photo_dataset


def _texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Smooth random colour texture, uint8 [h, w, 3]: something Farneback can track."""
    rng = np.random.default_rng(seed)
    noise = rng.random((h // 4 + 8, w // 4 + 8, 3)).astype(np.float32)
    big = cv2.resize(noise, (w + 32, h + 32), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 2.0)
    big = (big - big.min()) / (big.max() - big.min())
    return (big * 255).round().astype(np.uint8)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1).float() / 255


def _write_clip(folder: Path, frames: list[np.ndarray]) -> None:
    folder.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(folder / f"{i:08d}.png"), f[:, :, ::-1])


def _moving(h: int, w: int, n: int, step: int, seed: int = 0) -> list[np.ndarray]:
    base = _texture(h, w + step * n, seed)
    return [np.ascontiguousarray(base[:h, i * step:i * step + w]) for i in range(n)]


# ---------------------------------------------------------------- metrics

def test_ssim_equals_scikit_image_gaussian_ssim():
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (40, 52, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-30, 31, a.shape), 0, 255).astype(np.uint8)
    ref = structural_similarity(a, b, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert abs(ssim(_t(a), _t(b)) - ref) < 1e-6


def test_psnr_is_rgb_on_rounded_frames():
    a = torch.full((3, 8, 8), 100 / 255)
    b = a.clone()
    b[0, 0, 0] = 110.4 / 255  # rounds to 110
    mse = 10 ** 2 / (3 * 64)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 / mse), abs=1e-9)
    assert psnr(a, a) == float("inf")


def test_y_channel_is_matlab_rgb2ycbcr():
    white, black = torch.ones(3, 1, 1), torch.zeros(3, 1, 1)
    assert to_y(white).item() * 255 == pytest.approx(235, abs=0.01)
    assert to_y(black).item() * 255 == pytest.approx(16, abs=1e-9)


def test_tof_crop_is_the_largest_multiple_of_32_leaving_8_pixels():
    ys, xs = tof_crop(720, 1280)
    assert (ys.start, ys.stop - ys.start) == (8, 704)
    assert (xs.start, xs.stop - xs.start) == (16, 1248)
    ys, _ = tof_crop(132, 132)
    assert (ys.start, ys.stop) == (18, 114)


def test_tof_is_zero_for_identical_and_grows_with_temporal_error():
    frames = [_t(f) for f in _moving(96, 96, 4, 3)]
    assert tof(frames, frames) == 0.0
    frozen = [frames[0]] * 4  # an output that does not move while the target does
    jitter = [frames[0], frames[1], frames[1], frames[3]]
    assert tof(frozen, frames) > tof(jitter, frames) > 0.0


def test_tof_ignores_differences_outside_the_central_crop():
    frames = [_t(f) for f in _moving(96, 96, 3, 2)]
    edited = [f.clone() for f in frames]
    edited[1][:, :2, :] = 0.0  # 2 rows at the top border change; the crop starts at row 16
    # Farneback's window (15) spreads the change a little; it must not reach the crop.
    flows_differ = tof(edited, frames)
    assert flows_differ < 0.05


# ---------------------------------------------------------------- the frame protocol

@pytest.mark.parametrize("t,length,expected", [(3, 6, [1, 2, 3, 4]), (5, 6, [2, 3]), (1, 3, [0, 1, 2])])
def test_protocol_excludes_incomplete_windows(t, length, expected):
    frames = [_t(f) for f in _moving(48, 48, length, 1)]
    scorer = SequenceScorer(length, ScoreOptions(num_seq=t))
    for f in frames:
        scorer.add(f, f)
    score = scorer.result()
    assert score.frames == expected
    assert len(score.tof_pairs) == len(expected) - 1
    assert len(score.motion) == len(expected)
    everything = SequenceScorer(length, ScoreOptions(num_seq=t, all_frames=True))
    for f in frames:
        everything.add(f, f)
    assert everything.result().frames == list(range(length))


@pytest.mark.parametrize("step", [2, 6, 12])
def test_motion_magnitude_measures_the_targets_motion(step):
    frames = [_t(f) for f in _moving(128, 128, 3, step, seed=2)]
    s = SequenceScorer(3, ScoreOptions(all_frames=True))
    for f in frames:
        s.add(frames[0], f)  # the output does not matter: motion is the target's
    assert s.result().motion == pytest.approx([step] * 3, rel=0.02)


def test_motion_bins_split_frames_by_magnitude():
    from vsrdb.evaluate.scoring import ClipScore

    a = ClipScore(frames=[1, 2, 3], psnr=[30.0, 31.0, 20.0], ssim=[0.9, 0.9, 0.5], motion=[5.0, 19.9, 45.0],
                  tof_pairs=[1.0, 3.0])
    b = ClipScore(frames=[1, 2], psnr=[25.0, 26.0], ssim=[0.8, 0.8], motion=[20.0, 39.0], tof_pairs=[2.0])
    bins = motion_bins({"a": a, "b": b})
    assert bins["[0,20)"] == {"psnr": 30.5, "ssim": 0.9, "tof": 1.0, "frames": 2}
    assert bins["[20,40)"] == {"psnr": 25.5, "ssim": 0.8, "tof": 2.0, "frames": 2}
    assert bins[">=40"] == {"psnr": 20.0, "ssim": 0.5, "tof": 3.0, "frames": 1}


# ---------------------------------------------------------------- vsrdb evaluate --pred --gt

@pytest.fixture
def pred_gt(tmp_path):
    rng = np.random.default_rng(0)
    gt, pred = tmp_path / "gt", tmp_path / "pred"
    clips = {"a": _moving(64, 80, 5, 2, seed=4), "b": _moving(64, 80, 4, 3, seed=5)}
    for name, frames in clips.items():
        noisy = [np.clip(f.astype(int) + rng.integers(-12, 13, f.shape), 0, 255).astype(np.uint8) for f in frames]
        _write_clip(gt / name, frames)
        _write_clip(pred / name, noisy)
    return pred, gt


def test_evaluate_pred_gt_json_matches_an_independent_computation(pred_gt, tmp_path):
    from skimage.metrics import structural_similarity

    pred, gt = pred_gt
    out = tmp_path / "scores.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(out), "--quiet"]) == 0
    data = json.loads(out.read_text())
    assert set(data["clips"]) == {"a", "b"}
    for name, n_frames in (("a", 5), ("b", 4)):
        entry = data["clips"][name]
        assert set(entry) == {"psnr", "ssim", "tof", "frames"}
        assert entry["frames"] == n_frames - 2  # first and last excluded (T=3)
        p = [cv2.imread(str(f))[:, :, ::-1] for f in sorted((pred / name).iterdir())]
        g = [cv2.imread(str(f))[:, :, ::-1] for f in sorted((gt / name).iterdir())]
        keep = range(1, n_frames - 1)
        psnrs = [10 * np.log10(255 ** 2 / np.mean((p[i].astype(float) - g[i]) ** 2)) for i in keep]
        ssims = [structural_similarity(p[i], g[i], channel_axis=2, gaussian_weights=True, sigma=1.5,
                                       use_sample_covariance=False, data_range=255) for i in keep]
        tofs = []
        for i in list(keep)[1:]:
            fl = [cv2.calcOpticalFlowFarneback(cv2.cvtColor(s[i - 1], cv2.COLOR_RGB2GRAY),
                                               cv2.cvtColor(s[i], cv2.COLOR_RGB2GRAY), None,
                                               0.5, 3, 15, 3, 5, 1.2, 0) for s in (p, g)]
            d = (fl[0] - fl[1])[16:48, 8:72]  # 64x80: crop 32x64 at (16, 8)
            tofs.append(np.sqrt((d.astype(float) ** 2).sum(-1)).mean())
        assert entry["psnr"] == pytest.approx(np.mean(psnrs), abs=1e-9)
        assert entry["ssim"] == pytest.approx(np.mean(ssims), abs=1e-6)
        assert entry["tof"] == pytest.approx(np.mean(tofs), abs=1e-6)
    avg = data["average"]
    assert set(avg) == {"psnr", "ssim", "tof", "frames"} and avg["frames"] == 5
    assert avg["psnr"] == pytest.approx((data["clips"]["a"]["psnr"] + data["clips"]["b"]["psnr"]) / 2)

    every = tmp_path / "all.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(every), "--all-frames",
                 "--quiet"]) == 0
    assert json.loads(every.read_text())["clips"]["a"]["frames"] == 5


def test_evaluate_reads_video_files_as_clips(pred_gt, tmp_path):
    from vsrdb.video import open_writer

    pred, gt = pred_gt
    vids = tmp_path / "vids"
    vids.mkdir()
    for name in ("a", "b"):
        with open_writer(vids / f"{name}.mp4", fps=10, lossless=True) as w:
            for f in sorted((pred / name).iterdir()):
                w.write(np.ascontiguousarray(cv2.imread(str(f))[:, :, ::-1]))
    j1, j2 = tmp_path / "1.json", tmp_path / "2.json"
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json", str(j1), "--quiet"]) == 0
    assert main(["evaluate", "--pred", str(vids), "--gt", str(gt), "--json", str(j2), "--quiet"]) == 0
    assert json.loads(j1.read_text())["clips"] == json.loads(j2.read_text())["clips"]


def _fails(args, capsys, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_evaluate_bad_input_names_clip_and_frame(pred_gt, tmp_path, capsys):
    pred, gt = pred_gt
    base = ["evaluate", "--quiet", "--pred", str(pred), "--gt", str(gt)]
    shutil.copytree(gt / "b", gt / "c")
    _fails(base, capsys, "clip names differ", "missing from pred: c")
    shutil.rmtree(gt / "c")
    (pred / "b" / "00000003.png").unlink()
    _fails(base, capsys, "clip b", "3 frames", "4 in")
    cv2.imwrite(str(pred / "b" / "00000003.png"), np.zeros((32, 40, 3), np.uint8))
    _fails(base, capsys, "clip b frame 3", "40x32", "80x64")
    (pred / "b" / "00000003.png").write_bytes(b"not a png")
    _fails(base, capsys, "00000003.png", "cannot read")
    out = tmp_path / "exists.json"
    out.write_text("keep me")
    _fails(base + ["--json", str(out)], capsys, "exists.json", "--overwrite")
    assert out.read_text() == "keep me"
    _fails(["evaluate", "--pred", str(pred)], capsys, "--pred and --gt go together")


def test_evaluate_values_out_of_range_are_one_line(pred_gt, tmp_path, capsys):
    pred, gt = pred_gt
    base = ["evaluate", "--quiet", "--pred", str(pred), "--gt", str(gt)]
    _fails(base + ["--crop-border", "-1"], capsys, "--crop-border must be 0 or more, got -1")
    _fails(base + ["--crop-border", "30"], capsys, "--crop-border 30 leaves 20x4 of 80x64 frames")
    _fails(base + ["--num-seq", "0"], capsys, "--num-seq must be 1 or more, got 0")
    # clips of 5 and 4 frames: a 9-frame window scores nothing, which is an error, not an empty table
    _fails(base + ["--num-seq", "9"], capsys, "no frame was scored", "--all-frames")
    _fails(["evaluate", "--quiet", "--data", str(tmp_path), "--max-clips", "-1"], capsys,
           "--max-clips must be 1 or more, got -1")


def test_evaluate_json_holds_an_infinite_psnr(pred_gt, tmp_path):
    _, gt = pred_gt  # scored against itself: every frame equal, PSNR infinite
    out = tmp_path / "same.json"
    assert main(["evaluate", "--quiet", "--pred", str(gt), "--gt", str(gt), "--json", str(out)]) == 0
    data = json.loads(out.read_text())  # strict JSON: no Infinity literal
    assert data["average"]["psnr"] == "inf" and data["average"]["ssim"] == pytest.approx(1.0)


# ---------------------------------------------------------------- vsrdb evaluate --data

@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A tiny synthetic REDS-layout dataset and an (untrained) tiny FMA-Net checkpoint."""
    from vsrdb.checkpoints import save_checkpoint
    from vsrdb.models import build

    root = tmp_path_factory.mktemp("evaldata")
    data = synth_photo_dataset(root, (160, 200), photo_size=(64, 96))
    torch.manual_seed(0)
    model = build("fmanet-tiny").eval()
    save_checkpoint(model, root / "tiny")
    return data, root / "tiny"


def test_evaluate_runs_models_and_baselines_over_a_dataset(tiny_run, tmp_path):
    data, weights = tiny_run
    out = tmp_path / "s.json"
    assert main(["evaluate", "--data", str(data), "--layout", "synth", "--weights", str(weights),
                 "--baseline", "bicubic", "--baseline", "lanczos", "--baseline", "rl-bicubic", "--json", str(out),
                 "--quiet", "--device", "cpu"]) == 0
    res = json.loads(out.read_text())
    assert res["method"] == "tiny"
    assert set(res["methods"]) == {"tiny", "bicubic", "lanczos", "rl-bicubic"}
    assert res["parameters"] == 210_765
    assert res["seconds_per_frame"] > 0 and res["peak_memory_mb"] > 0
    assert res["average"]["frames"] == 2 * 3
    bic = res["methods"]["bicubic"]
    assert bic["parameters"] == 0
    # The bicubic baseline is the MATLAB imresize of the blurry frame: check one clip by hand.
    from vsrdb.data.datasets import reds_clips
    from vsrdb.data.resize import imresize
    from vsrdb.video import read_image, to_tensor

    clip = reds_clips(data, "all")[0]
    want = np.mean([psnr(imresize(to_tensor(read_image(clip.blur[i])), 4.0).clamp(0, 1),
                         to_tensor(read_image(clip.sharp[i]))) for i in (1, 2, 3)])
    assert bic["clips"][clip.name]["psnr"] == pytest.approx(want, abs=1e-9)
    assert res["methods"]["lanczos"]["average"]["psnr"] != pytest.approx(bic["average"]["psnr"], abs=1e-6)


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def test_report_renders_in_headless_chromium(tiny_run, tmp_path):
    data, weights = tiny_run
    report = tmp_path / "report"
    assert main(["evaluate", "--data", str(data), "--layout", "synth", "--weights", str(weights),
                 "--report", str(report), "--quiet", "--device", "cpu"]) == 0
    page = (report / "report.html").read_text()
    md = (report / "report.md").read_text()
    assert "| tiny |" in md and "| bicubic |" in md
    assert page.count("<table") == 3 and "K^D degradation kernels" in page and "NetR image flow" in page
    assert "src=\"http" not in page  # self-contained: every picture is embedded
    assert list((report / "images").glob("*.png"))
    browser = _chromium()
    if browser is None:
        pytest.skip("chromium is not installed (Debian package 'chromium'); the page was checked as text only")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--hide-scrollbars", "--window-size=1200,1800"]
    dom = subprocess.run([browser, *flags, "--virtual-time-budget=3000", "--dump-dom", report.as_uri() + "/report.html"],
                         capture_output=True, text=True, timeout=120).stdout
    # After the page's script ran, both slider images carry a picture and the selects list every frame.
    assert dom.count('<img class="base" alt="right" src="data:image/jpeg') == 2
    assert dom.count("<option") >= 2 * 2 * 4
    shot = tmp_path / "shot.png"
    subprocess.run([browser, *flags, f"--screenshot={shot}", report.as_uri() + "/report.html"],
                   capture_output=True, timeout=120)
    img = cv2.imread(str(shot))[:, :, ::-1].astype(int)
    header = (np.abs(img - 0xE8) <= 1).all(-1).sum()  # table header cells (#e8e8e8)
    assert header > 2000, header
    colourful = (img.max(-1) - img.min(-1) > 40).sum()  # the frames and maps; the page itself is grey
    assert colourful > 20000, colourful
