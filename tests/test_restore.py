"""vsrdb restore: streaming windows, tiling, colour handling, I/O and every bad-input path."""

import os
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

import vsrdb
from vsrdb.cli import main
from vsrdb.restore import Restorer, plan_tiles
from vsrdb.video import natural_key, open_frames, open_writer, to_array, to_tensor


def make_clip(n=7, h=20, w=24, seed=0):
    """A moving pattern: smooth gradients plus a drifting square, as uint8 RGB frames."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(h, w, 3)).astype(np.float32)
    base = cv2.GaussianBlur(base, (5, 5), 1.5)
    frames = []
    for i in range(n):
        f = np.roll(base, i, axis=1).copy()
        f[4:10, 2 + i:8 + i] = (255, 40, 40)
        frames.append(f.clip(0, 255).astype(np.uint8))
    return frames


def write_video(path, frames, fps=12):
    with av.open(str(path), "w") as out:
        st = out.add_stream("libx264rgb", rate=fps)
        st.pix_fmt, st.width, st.height = "rgb24", frames[0].shape[1], frames[0].shape[0]
        st.options = {"qp": "0"}
        for f in frames:
            for p in st.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(p)
        for p in st.encode():
            out.mux(p)


def per_window_reference(model, frames):
    """The plain forward over each clamped window: what streaming must equal."""
    n, t = len(frames), model.config.num_seq
    c = t // 2
    outs = []
    with torch.no_grad():
        for i in range(n):
            idx = [min(max(i + k, 0), n - 1) for k in range(-c, t - c)]
            outs.append(model(torch.stack([frames[j] for j in idx], 1)[None])["output"][0])
    return outs


@pytest.mark.parametrize("t", [3, 4, 5])
def test_streaming_gives_every_frame_equal_to_per_window_forward(t):
    model = vsrdb.build("fmanet-tiny", num_seq=t, dim={3: 18, 4: 24, 5: 30}[t], num_heads=2).eval()
    frames = [to_tensor(f) for f in make_clip(8)]
    outs = list(Restorer(model).run(iter(frames)))
    assert len(outs) == len(frames) and outs[0].shape == (3, 80, 96)
    ref = per_window_reference(model, frames)
    assert max((a - b).abs().max().item() for a, b in zip(outs, ref)) <= 1e-4


def test_each_frame_is_encoded_once():
    model = vsrdb.build("fmanet-tiny").eval()
    calls = []
    original = model.encode_frame
    model.encode_frame = lambda x: calls.append(1) or original(x)
    list(Restorer(model).run(iter([to_tensor(f) for f in make_clip(6)])))
    assert len(calls) == 6


def test_tiled_output_agrees_closely_with_untiled():
    model = vsrdb.build("fmanet-tiny").eval()
    frames = [to_tensor(f) for f in make_clip(4, h=32, w=40)]
    whole = list(Restorer(model).run(iter(frames)))
    tiled_restorer = Restorer(model, tile=20, overlap=6)
    tiled = list(tiled_restorer.run(iter(frames)))
    assert tiled_restorer.plan.tiled
    mse = torch.stack([((a - b) ** 2).mean() for a, b in zip(whole, tiled)]).mean()
    assert 10 * torch.log10(1 / mse) > 35  # PSNR between tiled and untiled (random weights)


def test_tile_plan_covers_frame_with_overlap():
    plan = plan_tiles(100, 130, tile=40, overlap=8)
    cover = np.zeros((100, 130), int)
    for y, x, h, w in plan.tiles():
        cover[y:y + h, x:x + w] += 1
    assert cover.min() >= 1
    assert all(b - a <= 40 - 8 for a, b in zip(plan.xs, plan.xs[1:]))


def test_tile_size_follows_memory_budget():
    model = vsrdb.build("fmanet")
    assert not plan_tiles(180, 320, tile=None, overlap=16, tile_bytes=model.inference_bytes, budget=8 << 30).tiled
    small = plan_tiles(720, 1280, tile=None, overlap=16, tile_bytes=model.inference_bytes, budget=2 << 30)
    assert small.tiled and small.size_x < 1280
    assert model.inference_bytes(small.size_y, small.size_x) <= 2 << 30


def test_bgr_weights_get_bgr_frames():
    model = vsrdb.build("fmanet-tiny").eval()
    frames = [to_tensor(f) for f in make_clip(3)]
    rgb = list(Restorer(model).run(iter(frames)))
    model.channel_order = "BGR"
    bgr = list(Restorer(model).run(iter([f.flip(0) for f in frames])))
    assert torch.allclose(rgb[1], bgr[1].flip(0), atol=1e-6)


def test_colour_formats_become_rgb(tmp_path):
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4, 1) * 20
    assert to_tensor(grey).shape == (3, 3, 4) and torch.equal(to_tensor(grey)[0], to_tensor(grey)[2])
    rgba = np.zeros((3, 4, 4), np.uint8)
    rgba[..., 0], rgba[..., 3] = 255, 7
    assert torch.equal(to_tensor(rgba)[0], torch.ones(3, 4)) and to_tensor(rgba).shape[0] == 3
    deep = np.full((2, 2, 3), 65535, np.uint16)
    assert torch.allclose(to_tensor(deep), torch.ones(3, 2, 2))
    # 16-bit RGB and RGBA PNGs through the folder reader, in RGB order
    img16 = np.zeros((5, 6, 3), np.uint16)
    img16[..., 2] = 40000  # blue in RGB terms
    cv2.imwrite(str(tmp_path / "a.png"), img16[..., ::-1])
    frame = next(iter(open_frames(tmp_path)))
    assert frame.dtype == np.uint16 and frame[0, 0, 2] == 40000 and frame[0, 0, 0] == 0


def test_folder_frames_sort_naturally(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"frame{i}.png"), np.full((4, 4, 3), i, np.uint8))
    assert [f[0, 0, 0] for f in open_frames(tmp_path)] == [1, 2, 10]
    assert sorted(["f10", "f9", "F1"], key=natural_key) == ["F1", "f9", "f10"]


def test_lossless_video_round_trip(tmp_path):
    frames = make_clip(3)
    with open_writer(tmp_path / "x.mkv", fps=Fraction(24), lossless=True) as w:
        for f in frames:
            w.write(f)
    back = list(open_frames(tmp_path / "x.mkv"))
    assert len(back) == 3 and all(np.array_equal(a, b) for a, b in zip(frames, back))
    assert open_frames(tmp_path / "x.mkv").fps == 24


def test_cli_restores_video_keeping_count_size_and_fps(tmp_path, weights):
    write_video(tmp_path / "in.mp4", make_clip(7), fps=12)
    assert main(["restore", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--weights", weights,
                 "--quiet"]) == 0
    src = open_frames(tmp_path / "out.mp4")
    frames = list(src)
    assert len(frames) == 7 and frames[0].shape == (80, 96, 3) and src.fps == 12
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", "out.mp4"]  # no temporary leftovers


def test_cli_says_why_its_kernel_is_not_used_and_restores_anyway(tmp_path, weights, capsys, monkeypatch):
    # A kernel cache another user can write is not loaded from: one note, the same frames.
    from vsrdb.ops import kernels

    write_video(tmp_path / "in.mp4", make_clip(7), fps=12)
    shared = tmp_path / "cache"
    (shared / "vsrdb" / "kernels").mkdir(parents=True)
    (shared / "vsrdb" / "kernels").chmod(0o777)
    monkeypatch.setenv("XDG_CACHE_HOME", str(shared))
    monkeypatch.delenv("VSRDB_KERNELS_DIR", raising=False)
    monkeypatch.setattr(kernels, "_state", {})
    assert main(["restore", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--weights", weights]) == 0
    err = capsys.readouterr().err
    assert "CPU kernels are not in use" in err and "writable by group and others" in err
    assert len(list(open_frames(tmp_path / "out.mp4"))) == 7


def test_cli_frame_folder_to_png_folder_matches_library(tmp_path, weights):
    clip = make_clip(5)
    (tmp_path / "in").mkdir()
    for i, f in enumerate(clip):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), f[..., ::-1])
    assert main(["restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--weights", weights,
                 "--quiet"]) == 0
    written = list(open_frames(tmp_path / "out"))
    model = vsrdb.load_checkpoint(weights)
    expected = list(Restorer(model).run(iter(to_tensor(f) for f in clip)))
    assert len(written) == 5
    assert np.abs(written[2].astype(int) - to_array(expected[2]).astype(int)).max() <= 1


def _fails(capsys, argv, message):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_cli_bad_inputs_give_one_line_errors(tmp_path, weights, capsys):
    w = ["--weights", weights, "--quiet"]
    write_video(tmp_path / "ok.mp4", make_clip(4))
    _fails(capsys, ["restore", str(tmp_path / "missing.mp4"), "-o", str(tmp_path / "o.mp4"), *w], "no such file")
    (tmp_path / "corrupt.mp4").write_bytes(os.urandom(4000))
    _fails(capsys, ["restore", str(tmp_path / "corrupt.mp4"), "-o", str(tmp_path / "o.mp4"), *w], "corrupt.mp4")
    (tmp_path / "empty").mkdir()
    _fails(capsys, ["restore", str(tmp_path / "empty"), "-o", str(tmp_path / "o.mp4"), *w], "no frames")
    _fails(capsys, ["restore", str(tmp_path / "ok.mp4"), "-o", str(tmp_path / "o.abc"), *w], "unknown output extension")
    _fails(capsys, ["restore", str(tmp_path / "ok.mp4"), "-o", str(tmp_path / "no" / "o.mp4"), *w], "does not exist")
    (tmp_path / "exists.mp4").write_bytes(b"keep me")
    _fails(capsys, ["restore", str(tmp_path / "ok.mp4"), "-o", str(tmp_path / "exists.mp4"), *w], "--overwrite")
    assert (tmp_path / "exists.mp4").read_bytes() == b"keep me"
    from vsrdb.checkpoints import builtin_weights as _builtin_weights

    if _builtin_weights() is None:  # a checkout without the built-in model says what to pass
        _fails(capsys, ["restore", str(tmp_path / "ok.mp4"), "-o", str(tmp_path / "o.mp4")], "--weights")
    else:  # otherwise the built-in model restores without --weights
        assert main(["restore", str(tmp_path / "ok.mp4"), "-o", str(tmp_path / "o.mp4"), "--quiet"]) == 0
        assert len(list(open_frames(tmp_path / "o.mp4"))) == 4
        (tmp_path / "o.mp4").unlink()
    assert sorted(os.listdir(tmp_path)) == ["corrupt.mp4", "empty", "exists.mp4", "ok.mp4"]


def test_overwrite_replaces_only_when_complete(tmp_path, weights):
    write_video(tmp_path / "in.mp4", make_clip(4))
    (tmp_path / "out.mp4").write_bytes(b"old")
    assert main(["restore", str(tmp_path / "in.mp4"), "-o", str(tmp_path / "out.mp4"), "--weights", weights,
                 "--overwrite", "--quiet"]) == 0
    assert len(list(open_frames(tmp_path / "out.mp4"))) == 4


@pytest.mark.parametrize("output", ["out.mp4", "out_frames"])
def test_interrupt_leaves_no_output_and_keeps_work_for_resume(tmp_path, weights, output):
    """Ctrl-C mid-stream: nothing sits under the final name; the finished frames stay in the
    work folder, a rerun says how to resume, and --resume completes it."""
    from vsrdb.restore import restore_video

    model = vsrdb.load_checkpoint(weights)
    write_video(tmp_path / "in.mp4", make_clip(6))
    original = Restorer._blend  # every restored frame passes through it, once
    calls = []

    def interrupted(self, tiles):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, tiles)

    Restorer._blend = interrupted  # type: ignore[method-assign]
    try:
        with pytest.raises(KeyboardInterrupt):
            restore_video(str(tmp_path / "in.mp4"), str(tmp_path / output), model, progress=False, segment=4)
    finally:
        Restorer._blend = original  # type: ignore[method-assign]
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", output + ".vsrdb-work"]
    with pytest.raises(ValueError, match="--resume"):
        restore_video(str(tmp_path / "in.mp4"), str(tmp_path / output), model, progress=False, segment=4)
    done = restore_video(str(tmp_path / "in.mp4"), str(tmp_path / output), model, progress=False, segment=4,
                         resume=True)
    # frames 0 and 1 were kept before the interrupt: the resumed run restores the other four, and
    # its time per frame is over those four
    assert done["frames"] == 6 and done["restored"] == 4
    assert done["seconds_per_frame"] == pytest.approx(done["seconds"] / 4)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", output]


def test_corrupt_frame_in_folder_is_named(tmp_path, weights, capsys):
    (tmp_path / "in").mkdir()
    for i, f in enumerate(make_clip(4)):
        cv2.imwrite(str(tmp_path / "in" / f"{i}.png"), f)
    (tmp_path / "in" / "2.png").write_bytes(b"garbage")
    _fails(capsys, ["restore", str(tmp_path / "in"), "-o", str(tmp_path / "o.mp4"), "--weights", weights,
                    "--quiet"], "2.png: cannot read")
    assert sorted(os.listdir(tmp_path)) == ["in"]
