"""vsrdb synth: REDS layout, sizes, determinism, and that the blur is real."""

import hashlib

import cv2
import numpy as np
import pytest

from vsrdb.cli import main
from vsrdb.data.synth import SynthConfig, synthesize


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(1)
    small = (rng.random((12, 16, 3)) * 255).astype(np.uint8)
    img = cv2.resize(small, (160, 120), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "photo.png"
    cv2.imwrite(str(path), img)
    return path


def digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.png")):
        h.update(p.read_bytes())
    return h.hexdigest()


def small_synth_digest(photo, out, *extra):
    """``digest`` of a one-clip dataset of ``photo`` (3 frames, 64x80, seed 4) made by ``vsrdb synth`` with ``extra``."""
    assert main(["synth", str(photo), "-o", str(out), "--clip-frames", "3", "--photo-size", "64x80",
                 "--photo-clips", "1", "--seed", "4", *extra]) == 0
    return digest(out)


# A camera that does not move, so that only what an option adds moves (sway, subjects).
STILL_CAMERA = dict(clip_frames=3, photo_size=(64, 80), max_shift=0.0, max_rotation=0.0, max_zoom=0.0)


def test_photo_clips_in_reds_layout_deterministic(photo, tmp_path):
    cfg = SynthConfig(clip_frames=4, photo_clips=2, photo_size=(64, 80), photo_subframes=5, seed=3)
    names = synthesize([photo], tmp_path / "a", cfg, progress=False)
    assert names == ["000", "001"]
    for sub, size in (("train_sharp", (64, 80)), ("train_blur_bicubic/X4", (16, 20)),
                      ("train_sharp_bicubic/X4", (16, 20))):
        frames = sorted((tmp_path / "a" / sub / "001").glob("*.png"))
        assert len(frames) == 4
        assert cv2.imread(str(frames[0])).shape[:2] == size
    synthesize([photo], tmp_path / "b", cfg, progress=False)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    synthesize([photo], tmp_path / "c", SynthConfig(**{**cfg.__dict__, "seed": 4}), progress=False)
    assert digest(tmp_path / "a") != digest(tmp_path / "c")


def test_blurry_frames_have_less_detail_than_sharp(photo, tmp_path):
    cfg = SynthConfig(clip_frames=3, photo_clips=1, photo_size=(96, 128), max_shift=12.0, seed=0)
    synthesize([photo], tmp_path, cfg, progress=False)
    sharp = cv2.imread(str(tmp_path / "train_sharp_bicubic/X4/000/00000001.png"), cv2.IMREAD_GRAYSCALE)
    blur = cv2.imread(str(tmp_path / "train_blur_bicubic/X4/000/00000001.png"), cv2.IMREAD_GRAYSCALE)
    detail = lambda im: cv2.Laplacian(im.astype(np.float32), cv2.CV_32F).var()  # noqa: E731
    assert detail(blur) < 0.8 * detail(sharp)


def test_video_clips_average_consecutive_frames(tmp_path):
    folder = tmp_path / "clip"
    folder.mkdir()
    for i in range(16):  # a bright bar moving 2 px per frame
        f = np.zeros((16, 48, 3), np.uint8)
        f[:, 2 * i:2 * i + 4] = 255
        cv2.imwrite(str(folder / f"{i}.png"), f)
    synthesize([folder], tmp_path / "out", SynthConfig(clip_frames=3, blur_frames=3, stride=3), progress=False)
    sharp = cv2.imread(str(tmp_path / "out/train_sharp/000/00000000.png"))
    assert sharp[0, 2:6].min() == 255 and sharp[0, 6:].max() == 0  # the middle of frames 0..2 is frame 1
    sharp_lr = sorted((tmp_path / "out/train_blur_bicubic/X4/000").glob("*.png"))
    assert len(sharp_lr) == 3  # windows start at 0, 3, 6; the 2-frame remainder (9, 12) is too short for a clip


def test_cli_refuses_to_overwrite_and_names_missing_sources(tmp_path, photo, capsys):
    assert main(["synth", str(photo), "-o", str(tmp_path / "ds"), "--clip-frames", "3", "--photo-size", "32x48",
                 "--photo-clips", "1"]) == 0
    assert main(["synth", str(photo), "-o", str(tmp_path / "ds")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["synth", str(tmp_path / "nope.mp4"), "-o", str(tmp_path / "ds2")]) == 2
    assert "nope.mp4: no such file" in capsys.readouterr().err
    assert not (tmp_path / "ds2").exists() and not (tmp_path / ".ds2.partial").exists()


def test_noise_and_jpeg_only_touch_the_blurry_lr(photo, tmp_path):
    base = SynthConfig(clip_frames=3, photo_clips=1, photo_size=(64, 80), seed=5)
    synthesize([photo], tmp_path / "clean", base, progress=False)
    synthesize([photo], tmp_path / "noisy", SynthConfig(**{**base.__dict__, "noise": 0.05, "jpeg": 30}),
               progress=False)
    read = lambda root, sub: cv2.imread(str(root / sub / "000" / "00000001.png")).astype(float)  # noqa: E731
    assert np.array_equal(read(tmp_path / "clean", "train_sharp"), read(tmp_path / "noisy", "train_sharp"))
    diff = np.abs(read(tmp_path / "clean", "train_blur_bicubic/X4") - read(tmp_path / "noisy", "train_blur_bicubic/X4"))
    assert diff.mean() > 3  # sigma 0.05 = 12.75 grey levels before JPEG smoothing


def test_min_shift_mixes_near_still_and_fast_clips(photo):
    """--min-shift draws each clip's speed bound log-uniformly, so many clips are near-still (pure SR)."""
    from vsrdb.data.synth import _load_photo, photo_clip

    img = _load_photo(photo)

    def motions(cfg):
        rng = np.random.default_rng(0)
        out = []
        for _ in range(8):
            sharp, _ = photo_clip(img, cfg, rng, [img])
            out.append(float(np.mean([(a - b).abs().mean() for a, b in zip(sharp, sharp[1:])])))
        return np.array(out)

    base = dict(clip_frames=4, photo_size=(64, 80), photo_subframes=3, foreground=0, max_shift=6.0)
    fixed = motions(SynthConfig(**base))
    mixed = motions(SynthConfig(**base, min_shift=0.05))
    assert np.median(mixed) < 0.5 * np.median(fixed)
    assert mixed.max() > 4 * mixed.min()


def test_sway_moves_a_still_scene_non_rigidly(photo, tmp_path, capsys):
    """--sway deforms the scene over time with a still camera: the flow between frames varies
    across the frame (not one shift), and a dataset made without it is unchanged for its seed."""
    from vsrdb.data.synth import _load_photo, photo_clip

    img = _load_photo(photo)
    still = dict(STILL_CAMERA, photo_subframes=3, foreground=0)
    sharp, _ = photo_clip(img, SynthConfig(**still), np.random.default_rng(2), [img])
    assert max(float((a - b).abs().max()) for a, b in zip(sharp, sharp[1:])) == 0
    spread = []
    for seed in range(4):
        sharp, blurry = photo_clip(img, SynthConfig(**still, sway=6.0), np.random.default_rng(seed), [img])
        g = [cv2.cvtColor((f.permute(1, 2, 0).numpy() * 255).astype(np.uint8), cv2.COLOR_RGB2GRAY) for f in sharp]
        flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g[0], g[1], None)
        spread.append(float(flow[8:-8, 8:-8].std(axis=(0, 1)).mean()))
        assert float((blurry[1] - sharp[1]).abs().mean()) > 0  # the sway also blurs
    assert max(spread) > 0.2

    def make(name, *extra):
        return small_synth_digest(photo, tmp_path / name, *extra)

    assert make("plain") == make("zero", "--sway", "0") != make("sway", "--sway", "6")
    assert main(["synth", str(photo), "-o", str(tmp_path / "bad"), "--sway", "-1"]) != 0
    assert "--sway -1.0: must be 0 or more" in capsys.readouterr().err


def test_photo_subframes_sets_the_exposure(photo, tmp_path, capsys):
    """--photo-subframes 1 is an instant exposure (blurry HR = sharp HR); 5 averages 5 renders."""
    def blur_gap(n, name):
        root = tmp_path / name
        assert main(["synth", str(photo), "-o", str(root), "--clip-frames", "3", "--photo-size", "64x80",
                     "--photo-clips", "1", "--max-shift", "16", "--photo-subframes", str(n), "--seed", "2"]) == 0
        read = lambda sub: cv2.imread(str(root / sub / "000" / "00000001.png")).astype(float)  # noqa: E731
        return np.abs(read("train_blur_bicubic/X4") - read("train_sharp_bicubic/X4")).mean()

    assert blur_gap(1, "instant") < 0.01
    assert blur_gap(5, "reds") > 2
    assert main(["synth", str(photo), "-o", str(tmp_path / "bad"), "--photo-subframes", "0"]) == 2
    assert "--photo-subframes 0" in capsys.readouterr().err


def test_object_shift_moves_subjects_before_a_still_camera(photo, tmp_path, capsys):
    """--object-shift gives the foreground patches their own speed: with a still camera, frames
    change only where the patches pass, and the blurry frames are blurred there and sharp elsewhere
    (a still shot with a fast subject). Without it the patches are as still as the camera, and a
    dataset made without it is unchanged for its seed."""
    from vsrdb.data.synth import _load_photo, photo_clip

    img = _load_photo(photo)
    still = dict(STILL_CAMERA, photo_subframes=5, foreground=1)
    sharp, blurry = photo_clip(img, SynthConfig(**still), np.random.default_rng(3), [img])
    assert max(float((a - b).abs().max()) for a, b in zip(sharp, sharp[1:])) == 0
    moved = []
    for seed in range(4):
        sharp, blurry = photo_clip(img, SynthConfig(**still, object_shift=12.0), np.random.default_rng(seed), [img])
        change = (sharp[2] - sharp[1]).abs().amax(0)  # [H, W]
        blur = (blurry[1] - sharp[1]).abs().amax(0)
        moving, resting = change > 0.02, change == 0
        assert resting.float().mean() > 0.3  # the camera is still: most of the frame does not move
        # ... and is sharp in the blurry frame (but where the subject passed between the two instants)
        assert float(blur[resting].mean()) < 1e-3 and float(blur[resting].quantile(0.99)) < 1 / 255
        moved.append(float(moving.float().mean()))
        if moving.any():  # the subject is blurred, many times more than what rests
            assert float(blur[moving].mean()) > 20 * float(blur[resting].mean())
    assert max(moved) > 0.02

    def make(name, *extra):
        return small_synth_digest(photo, tmp_path / name, *extra)

    assert make("plain") == make("zero", "--object-shift", "0") != make("fast", "--object-shift", "12")
    assert make("none", "--foreground", "0") != make("plain2")
    for bad, msg in ((["--object-shift", "-1"], "--object-shift -1.0: must be 0 or more"),
                     (["--foreground", "-2"], "--foreground -2: must be 0 or more")):
        assert main(["synth", str(photo), "-o", str(tmp_path / "bad"), *bad]) != 0
        assert msg in capsys.readouterr().err


def test_subjects_with_their_own_speed_have_firm_edges():
    """A --object-shift subject is an object with an outline (its matte ramps over about 2 px), not
    the soft blob of the default patches, whose matte fades over two thirds of its radius."""
    import torch

    from vsrdb.data.synth import photo_clip

    black, white = torch.zeros(3, 96, 128), torch.ones(3, 96, 128)
    still = dict(clip_frames=1, photo_size=(96, 128), photo_subframes=1, foreground=1, max_shift=0.0,
                 max_rotation=0.0, max_zoom=0.0)

    def ramp_share(**extra):
        sharp, _ = photo_clip(black, SynthConfig(**still, **extra), np.random.default_rng(0), [white])
        v = sharp[0][0]
        return float(((v > 0.05) & (v < 0.95)).sum() / (v > 0.05).sum())

    assert ramp_share(object_shift=0.01) < 0.6 * ramp_share()
