"""vsrdb restore on real containers: damaged files, input protection, sound and sync, colour
tags, 10-bit, kill-and-resume, batches with a broken file, torchrun, and the small paths."""

import os
import shutil
import signal
import subprocess
import sys
import time
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

import vsrdb
from vsrdb.checkpoints import builtin_weights
from vsrdb.cli import main
from vsrdb.video import OUTPUT_CONTAINERS, open_frames

FPS = 12
RED, GREEN = (230, 30, 30), (30, 200, 40)


def clip(n, h=24, w=32, seed=0):
    """Smooth moving texture with a red and a green patch, uint8 RGB."""
    rng = np.random.default_rng(seed)
    base = cv2.GaussianBlur(rng.integers(0, 256, size=(h, w, 3)).astype(np.float32), (7, 7), 2)
    out = []
    for i in range(n):
        f = np.roll(base, i, axis=1)
        out.append(f.clip(0, 255).astype(np.uint8))
    return out


def make_video(path, frames, *, fps=FPS, codec="libx264", pix_fmt="yuv420p", matrix=None, audio=None,
               audio_codec="aac", pts=None, faststart=False, chapters=None, title=None):
    """Write a real container: ``frames`` (uint8 or uint16 RGB) encoded with ``matrix``
    ('ITU709'/'ITU601', tagged) or untagged BT.601; ``audio`` a mono float array at 48 kHz."""
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), "w", options=options) as c:
        if title:
            c.metadata["title"] = title
        if chapters:
            c.set_chapters(chapters)
        v = c.add_stream(codec, rate=fps)
        v.width, v.height, v.pix_fmt = frames[0].shape[1], frames[0].shape[0], pix_fmt
        v.options = {"qp": "0"} if codec == "libx264" else {"x265-params": "lossless=1:log-level=error"}
        if pts is not None:
            v.codec_context.time_base = Fraction(1, 1000)
        if matrix:
            cc = v.codec_context
            cc.colorspace, cc.color_primaries, cc.color_trc = (1, 1, 1) if matrix == "ITU709" else (6, 6, 6)
            cc.color_range = 1
        a = None
        if audio is not None:
            a = c.add_stream(audio_codec, rate=48000)
            a.layout = "mono"
        for i, img in enumerate(frames):
            fmt = "rgb48le" if img.dtype == np.uint16 else "rgb24"
            vf = av.VideoFrame.from_ndarray(img, format=fmt).reformat(
                format=pix_fmt, dst_colorspace=matrix or "ITU601", dst_color_range="MPEG")
            vf.pts = i if pts is None else pts[i]
            if pts is not None:
                vf.time_base = Fraction(1, 1000)
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if a is not None:
            sample_fmt = "s16" if audio_codec.startswith("pcm_s16") else "fltp"
            data = audio[None].astype(np.float32)
            if sample_fmt == "s16":
                data = (data * 32767).astype(np.int16)
            af = av.AudioFrame.from_ndarray(data, format=sample_fmt, layout="mono")
            af.sample_rate, af.pts = 48000, 0
            for p in a.encode(af):
                c.mux(p)
            for p in a.encode(None):
                c.mux(p)


def decode(path, *, as_player=False):
    """Frames of a video as uint8/uint16 RGB; ``as_player``: with the matrix a player uses (the
    stream's tag, else BT.709 from 720 lines and BT.601 below)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        deep = any(comp.bits > 8 for comp in s.format.components)
        out = []
        for f in c.decode(s):
            kw = {}
            if as_player:
                cs = f.colorspace
                kw = {"src_colorspace": {1: "ITU709", 6: "SMPTE170M", 5: "ITU601"}.get(cs, "ITU709" if f.height >= 720
                                                                                      else "ITU601"),
                      "src_color_range": "JPEG" if f.color_range == 2 else "MPEG"}
            out.append(f.to_ndarray(format="rgb48le" if deep else "rgb24", **kw))
        return out


def frame_times(path):
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [float(f.pts * f.time_base) for f in c.decode(s)]


@pytest.fixture(scope="module")
def builtin():
    found = builtin_weights()
    if found is None:
        pytest.skip("the built-in model is not in this checkout")
    return found


def _run(*argv):
    return main(["restore", *map(str, argv), "--quiet"])


def _one_line_error(capsys, *words):
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.strip()]
    assert len(err) == 1, err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


# --- every frame or an error ------------------------------------------------------------------

def test_cut_mp4_fails_naming_the_file_and_leaves_nothing(tmp_path, weights, capsys):
    make_video(tmp_path / "full.mp4", clip(20), faststart=True, audio=np.zeros(48000 * 2))
    data = (tmp_path / "full.mp4").read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 60 // 100])
    assert _run(tmp_path / "cut.mp4", "-o", tmp_path / "out.mp4", "--weights", weights) == 2
    line = _one_line_error(capsys, "cut.mp4", "of the 20")
    assert "damaged or cut" in line
    assert sorted(os.listdir(tmp_path)) == ["cut.mp4", "full.mp4"]  # no output, no work folder
    assert _run(tmp_path / "full.mp4", "-o", tmp_path / "out.mp4", "--weights", weights) == 0
    assert len(decode(tmp_path / "out.mp4")) == 20


# --- the input is never destroyed ----------------------------------------------------------

def test_output_equal_to_input_is_refused_even_with_overwrite(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mp4", clip(4))
    before = (tmp_path / "in.mp4").read_bytes()
    os.symlink(tmp_path / "in.mp4", tmp_path / "link.mp4")
    for out in ("in.mp4", "link.mp4"):
        assert _run(tmp_path / "in.mp4", "-o", tmp_path / out, "--weights", weights, "--overwrite") == 2
        _one_line_error(capsys, "is the input")
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(clip(3)):
        cv2.imwrite(str(frames / f"{i}.png"), f)
    assert _run(frames, "-o", frames, "--weights", weights, "--overwrite") == 2
    _one_line_error(capsys, "is the input")
    assert _run(frames, "-o", frames / "out", "--weights", weights, "--overwrite") == 2
    _one_line_error(capsys, "inside the input folder")
    assert _run(tmp_path / "in.mp4", "-o", tmp_path, "--weights", weights, "--overwrite") == 2
    _one_line_error(capsys, "holds the input")
    assert (tmp_path / "in.mp4").read_bytes() == before and len(os.listdir(frames)) == 3


# --- sound, sync, timestamps, metadata --------------------------------------------------------

def test_sound_is_copied_in_sync_with_variable_frame_times(tmp_path, weights):
    n, click_frame = 24, 13
    # variable frame rate: intervals of 70-100 ms
    pts = np.cumsum([0] + [70 + 10 * (i % 4) for i in range(n - 1)]).tolist()
    click_time = pts[click_frame] / 1000
    audio = np.zeros(int(48000 * (pts[-1] / 1000 + 0.5)))
    audio[int(click_time * 48000):int(click_time * 48000) + 96] = 0.9
    chapters = [{"id": 1, "start": 0, "end": 1000, "time_base": Fraction(1, 1000), "metadata": {"title": "one"}},
                {"id": 2, "start": 1000, "end": 2000, "time_base": Fraction(1, 1000), "metadata": {"title": "two"}}]
    make_video(tmp_path / "in.mkv", clip(n), pts=pts, audio=audio, chapters=chapters, title="my clip")
    assert _run(tmp_path / "in.mkv", "-o", tmp_path / "out.mp4", "--weights", weights, "--segment", "5") == 0
    times_in, times_out = frame_times(tmp_path / "in.mkv"), frame_times(tmp_path / "out.mp4")
    assert len(times_out) == n
    assert max(abs(a - b) for a, b in zip(times_in, times_out)) < 1e-3  # every frame keeps its time
    with av.open(str(tmp_path / "in.mkv")) as c:
        src_packets = [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size] == src_packets  # copied, not re-encoded
    with av.open(str(tmp_path / "out.mp4")) as c:
        samples = np.concatenate([f.to_ndarray()[0] for f in c.decode(c.streams.audio[0])])
        start = float(c.streams.audio[0].start_time * c.streams.audio[0].time_base)
        heard = start + np.argmax(np.abs(samples) > 0.3) / 48000
        assert [ch["metadata"]["title"] for ch in c.chapters()] == ["one", "two"]
        assert c.metadata.get("title") == "my clip"
    seen = times_out[click_frame]
    assert abs(heard - seen) < 0.07, (heard, seen)  # within one frame
    assert _run(tmp_path / "in.mkv", "-o", tmp_path / "mute.mkv", "--weights", weights, "--no-audio") == 0
    with av.open(str(tmp_path / "mute.mkv")) as c:
        assert not c.streams.audio and len(c.streams.video) == 1


def test_subtitles_are_copied_into_mkv_and_dropped_from_mp4_with_a_note(tmp_path, weights, capsys):
    make_video(tmp_path / "v.mkv", clip(12))
    (tmp_path / "s.srt").write_text("1\n00:00:00,100 --> 00:00:00,400\nHello\n\n"
                                    "2\n00:00:00,500 --> 00:00:00,900\nWorld\n")
    with av.open(str(tmp_path / "v.mkv")) as vin, av.open(str(tmp_path / "s.srt")) as srt, \
            av.open(str(tmp_path / "in.mkv"), "w") as out:
        vo, so = out.add_stream_from_template(vin.streams.video[0]), out.add_stream_from_template(srt.streams[0])
        so.metadata["language"] = "fra"
        for src, dst in ((vin, vo), (srt, so)):
            for p in src.demux(src.streams[0]):
                if p.size:
                    p.stream = dst
                    out.mux(p)

    def subtitles(path):
        with av.open(str(path)) as c:
            if not c.streams.subtitles:
                return None, []
            s = c.streams.subtitles[0]
            return s.metadata.get("language"), [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(s) if p.size]

    assert subtitles(tmp_path / "in.mkv") == ("fra", [(0.1, b"Hello"), (0.5, b"World")])
    assert _run(tmp_path / "in.mkv", "-o", tmp_path / "out.mkv", "--weights", weights) == 0
    assert subtitles(tmp_path / "out.mkv") == ("fra", [(0.1, b"Hello"), (0.5, b"World")])
    assert len(decode(tmp_path / "out.mkv")) == 12
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "in.mkv"), "-o", str(tmp_path / "out.mp4"), "--weights", str(weights)]) == 0
    assert "subtitle stream 1 (srt) cannot go into .mp4; dropped (use .mkv to keep it)" in capsys.readouterr().err
    assert subtitles(tmp_path / "out.mp4") == (None, [])


def test_phone_rotation_is_kept_in_mp4_and_mov(tmp_path, weights, capsys):
    from vsrdb.video import set_display_rotation

    make_video(tmp_path / "in.mp4", clip(3))
    assert set_display_rotation(tmp_path / "in.mp4", -90)
    for ext in (".mp4", ".mov"):
        assert _run(tmp_path / "in.mp4", "-o", tmp_path / f"out{ext}", "--weights", weights) == 0
        with av.open(str(tmp_path / f"out{ext}")) as c:
            assert next(c.decode(c.streams.video[0])).rotation == -90
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mkv", "--weights", weights) == 0
    assert "rotated by -90 degrees" in capsys.readouterr().err


def test_pcm_into_mp4_is_reencoded_and_said_once(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mov", clip(6), audio=np.zeros(48000), audio_codec="pcm_s16le")
    assert _run(tmp_path / "in.mov", "-o", tmp_path / "out.mp4", "--weights", weights) == 0
    err = capsys.readouterr().err
    assert err.count("re-encoded as AAC") == 1
    with av.open(str(tmp_path / "out.mp4")) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
    assert _run(tmp_path / "in.mov", "-o", tmp_path / "out.mkv", "--weights", weights) == 0
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert c.streams.audio[0].codec_context.name == "pcm_s16le"


# --- colour --------------------------------------------------------------------------------

def patches(n, h=24, w=32):
    f = np.zeros((h, w, 3), np.uint8)
    f[:, : w // 2], f[:, w // 2:] = RED, GREEN
    return [f.copy() for _ in range(n)]


@pytest.mark.parametrize("matrix", ["ITU709", None])
def test_colour_survives_under_the_outputs_own_tags(tmp_path, builtin, matrix):
    make_video(tmp_path / "in.mp4", patches(3), matrix=matrix)
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", builtin) == 0
    with av.open(str(tmp_path / "out.mp4")) as c:
        cc = c.streams.video[0].codec_context
        expected = (1, 1, 1) if matrix else (6, 6, 6)  # untagged SD input: decoded and tagged as BT.601
        assert (cc.colorspace, cc.color_primaries, cc.color_trc, cc.color_range) == (*expected, 1)
    out = decode(tmp_path / "out.mp4", as_player=True)[1].astype(int)
    h, w = out.shape[:2]
    assert np.abs(out[h // 2, w // 4] - RED).max() <= 3, out[h // 2, w // 4]
    assert np.abs(out[h // 2, 3 * w // 4] - GREEN).max() <= 3, out[h // 2, 3 * w // 4]


# --- bit depth and codecs --------------------------------------------------------------------

def test_ten_bit_in_gives_ten_bit_out(tmp_path, builtin):
    # A ramp along both axes: about 750 distinct 10-bit levels in, so a restored frame holds far
    # more than 256 whatever the weights do, unless the path drops to 8 bits somewhere.
    y, x = np.mgrid[0:24, 0:32]
    ramp = (4000 + 1700 * x + 70 * y)[..., None].repeat(3, 2).astype(np.uint16)
    make_video(tmp_path / "in.mkv", [ramp] * 3, codec="libx265", pix_fmt="yuv420p10le", matrix="ITU709")
    assert _run(tmp_path / "in.mkv", "-o", tmp_path / "out.mkv", "--weights", builtin) == 0
    with av.open(str(tmp_path / "out.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
        raw = next(c.decode(c.streams.video[0])).to_ndarray()  # the 10-bit luma samples themselves
    luma = raw[: raw.shape[0] * 2 // 3] if raw.ndim == 2 else raw[0]
    assert len(np.unique(luma)) > 256 and np.any(luma % 4 != 0)  # more levels than 8 bits hold
    assert _run(tmp_path / "in.mkv", "-o", tmp_path / "lossless.mkv", "--weights", builtin, "--lossless") == 0
    with av.open(str(tmp_path / "lossless.mkv")) as c:
        assert c.streams.video[0].codec_context.pix_fmt == "gbrp10le"


MASTER = "G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50)"  # BT.2020, 1000 cd/m2


def _hdr_of(path):
    from vsrdb.video.colour import HdrMetadata

    with av.open(str(path)) as c:
        s = c.streams.video[0]
        f = next(c.decode(s))
        cc = s.codec_context
        return s.codec_context.name, (cc.colorspace, cc.color_trc, cc.color_primaries), HdrMetadata.from_frame(f)


def test_hdr10_mastering_and_light_levels_are_kept(tmp_path, weights, capsys):
    ramp = np.linspace(4000, 60000, 32)[None, :, None].repeat(24, 0).repeat(3, 2).astype(np.uint16)
    with av.open(str(tmp_path / "in.mkv"), "w") as c:
        v = c.add_stream("libx265", rate=FPS)
        v.width, v.height, v.pix_fmt = 32, 24, "yuv420p10le"
        v.options = {"x265-params": f"log-level=error:master-display={MASTER}:max-cll=1000,400"}
        cc = v.codec_context
        cc.colorspace, cc.color_trc, cc.color_primaries, cc.color_range = 9, 16, 9, 1
        for i in range(3):
            vf = av.VideoFrame.from_ndarray(ramp, format="rgb48le").reformat(format="yuv420p10le",
                                                                            dst_colorspace="BT2020")
            vf.pts = i
            for p in v.encode(vf):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
    codec, tags, source = _hdr_of(tmp_path / "in.mkv")
    assert source is not None and source.luminance == (0.005, 1000.0) and (source.max_cll, source.max_fall) == (1000, 400)

    # Default codec for HDR is HEVC; the metadata rides in its SEI, the tags in the VUI.
    assert _run(tmp_path / "in.mkv", "-o", tmp_path / "out.mp4", "--weights", weights) == 0
    codec, out_tags, kept = _hdr_of(tmp_path / "out.mp4")
    assert codec == "hevc" and out_tags == (9, 16, 9)
    assert kept.max_cll == 1000 and kept.max_fall == 400
    for a, b in zip((*kept.primaries, kept.white, kept.luminance), (*source.primaries, source.white, source.luminance)):
        assert np.allclose(a, b, atol=1e-4), (a, b)
    # H.264 carries it too (x264's SEI); FFV1 cannot, and the user is told.
    assert _run(tmp_path / "in.mkv", "-o", tmp_path / "out264.mkv", "--weights", weights, "--codec", "h264") == 0
    codec, _, kept = _hdr_of(tmp_path / "out264.mkv")
    assert codec == "h264" and (kept.max_cll, kept.max_fall) == (1000, 400)
    assert np.allclose(kept.luminance, source.luminance, atol=1e-4) and np.allclose(kept.white, source.white, atol=1e-4)
    capsys.readouterr()
    assert main(["restore", str(tmp_path / "in.mkv"), "-o", str(tmp_path / "ffv1.mkv"), "--weights", str(weights),
                 "--codec", "ffv1"]) == 0
    assert "ffv1 cannot carry the input's mastering display 0.005-1000 cd/m2, MaxCLL 1000" in capsys.readouterr().err


@pytest.mark.parametrize("ext", sorted(OUTPUT_CONTAINERS))
def test_every_advertised_extension_writes(tmp_path, weights, ext):
    make_video(tmp_path / "in.mp4", clip(4), audio=np.zeros(48000))
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / f"out{ext}", "--weights", weights) == 0
    assert len(decode(tmp_path / f"out{ext}")) == 4


def test_impossible_formats_are_refused_before_any_work(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mp4", clip(4))
    for args, words in ((["-o", tmp_path / "o.webm", "--codec", "h264"], ["o.webm", "cannot hold h264"]),
                        (["-o", tmp_path / "o.gif"], ["unknown output extension"]),
                        (["-o", tmp_path / "o.mp4", "--pix-fmt", "rgb24"], ["cannot write pixel format"]),
                        (["-o", tmp_path / "o.mp4", "--codec", "av1", "--lossless"], ["cannot be lossless"])):
        assert _run(tmp_path / "in.mp4", *args, "--weights", weights) == 2
        _one_line_error(capsys, *words)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


# --- resume after SIGKILL --------------------------------------------------------------------

def _restore_cmd(*argv):
    return [sys.executable, "-m", "vsrdb", "restore", *map(str, argv), "--quiet", "--threads", "1"]


@pytest.mark.parametrize("out_name,scale", [("out_frames", 4), ("out.mp4", 4), ("out.mp4", 2)])
def test_sigkill_then_resume_equals_an_uninterrupted_run(tmp_path, out_name, scale):
    torch.manual_seed(0)
    vsrdb.save_checkpoint(vsrdb.build("fmanet-cpu", scale=scale), tmp_path / "w")  # slow enough to be killed
    frames = tmp_path / "in"
    frames.mkdir()
    u = 4 // scale  # a x2 model's body works on the input unshuffled by 2: the same cost per frame
    for i, f in enumerate(clip(14, h=40 * u, w=56 * u)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), f)
    common = ("--weights", tmp_path / "w", "--segment", "4")
    out = tmp_path / out_name
    work = tmp_path / (out_name + ".vsrdb-work")
    proc = subprocess.Popen(_restore_cmd(frames, "-o", out, *common), stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline and not (work / "seg_000001.json").exists():
        time.sleep(0.05)
    time.sleep(0.3)  # into the third segment
    assert proc.poll() is None, "the run finished before it could be killed; make it slower"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not out.exists() and work.is_dir()
    again = subprocess.run(_restore_cmd(frames, "-o", out, *common), capture_output=True, text=True)
    assert again.returncode == 2 and "--resume" in again.stderr and "frames done" in again.stderr
    assert subprocess.run(_restore_cmd(frames, "-o", out, *common, "--resume")).returncode == 0
    assert not work.exists()
    ref = tmp_path / ("ref_" + out_name)
    assert subprocess.run(_restore_cmd(frames, "-o", ref, *common)).returncode == 0
    if out.is_dir():
        names = sorted(os.listdir(out))
        assert names == sorted(os.listdir(ref)) and len([n for n in names if n.endswith(".png")]) == 14
        assert ".vsrdb-output" in names  # the marker that lets --overwrite replace it
        assert all((out / n).read_bytes() == (ref / n).read_bytes() for n in names)  # bit-identical PNGs
    else:
        a, b = decode(out), decode(ref)
        assert len(a) == len(b) == 14 and all(np.array_equal(x, y) for x, y in zip(a, b))
        assert a[0].shape == (40 * u * scale, 56 * u * scale, 3)


# --- batches and torchrun --------------------------------------------------------------------

def test_folder_of_videos_with_one_broken_file(tmp_path, weights, capsys):
    vids = tmp_path / "vids"
    vids.mkdir()
    make_video(vids / "a.mp4", clip(5), audio=np.zeros(48000))
    make_video(vids / "c.mkv", clip(4, seed=1))
    (vids / "b.mp4").write_bytes(os.urandom(3000))
    out = tmp_path / "out"
    assert _run(vids, "-o", out, "--weights", weights) == 1
    captured = capsys.readouterr()
    assert sorted(os.listdir(out)) == ["a.mp4", "c.mkv"]
    assert len(decode(out / "a.mp4")) == 5 and len(decode(out / "c.mkv")) == 4
    failed = [line for line in captured.err.splitlines() if line.startswith("failed")]
    assert len(failed) == 1 and "b.mp4" in failed[0]
    assert "2 restored, 0 skipped, 1 failed" in captured.out
    (vids / "b.mp4").unlink()
    assert _run(vids, "-o", out, "--weights", weights) == 0  # finished ones are skipped
    assert "0 restored, 2 skipped, 0 failed" in capsys.readouterr().out


@pytest.mark.parametrize("scale", [4, 1])
def test_torchrun_two_processes_equal_one(tmp_path, weights, scale):
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not on PATH")
    if scale != 4:
        torch.manual_seed(0)
        weights = str(tmp_path / f"x{scale}")
        vsrdb.save_checkpoint(vsrdb.build("fmanet-tiny", scale=scale), weights)
    make_video(tmp_path / "a.mp4", clip(9), audio=np.zeros(48000))
    (tmp_path / "b").mkdir()
    for i, f in enumerate(clip(7, seed=2)):
        cv2.imwrite(str(tmp_path / "b" / f"{i}.png"), f)
    args = (tmp_path / "a.mp4", tmp_path / "b", "--weights", weights, "--segment", "3")
    one = subprocess.run(_restore_cmd(*args, "-o", tmp_path / "one"), capture_output=True, text=True)
    assert one.returncode == 0, one.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run(["torchrun", "--nproc_per_node=2", "--master_port", str(29510 + scale), "-m", "vsrdb", "restore",
                          *map(str, args), "-o", str(tmp_path / "two"), "--quiet", "--threads", "1"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "on 2 processes" in two.stdout
    assert sorted(os.listdir(tmp_path / "two")) == ["a.mp4", "b"]
    a1, a2 = decode(tmp_path / "one" / "a.mp4"), decode(tmp_path / "two" / "a.mp4")
    assert len(a1) == 9 and all(np.array_equal(x, y) for x, y in zip(a1, a2))
    assert a1[0].shape[:2] == tuple(n * scale for n in clip(1)[0].shape[:2])
    names = sorted(os.listdir(tmp_path / "one" / "b"))
    assert len([n for n in names if n.endswith(".png")]) == 7
    assert all((tmp_path / "one" / "b" / n).read_bytes() == (tmp_path / "two" / "b" / n).read_bytes() for n in names)


# --- the small paths --------------------------------------------------------------------------

def test_device_thread_and_weight_errors_are_one_line(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mp4", clip(3))
    o = tmp_path / "o.mp4"
    if not torch.cuda.is_available():
        assert _run(tmp_path / "in.mp4", "-o", o, "--weights", weights, "--device", "cuda") == 2
        _one_line_error(capsys, "no CUDA GPU")
    assert _run(tmp_path / "in.mp4", "-o", o, "--weights", weights, "--device", "gpu0") == 2
    _one_line_error(capsys, "unknown device 'gpu0'")
    with pytest.raises(SystemExit) as e:
        _run(tmp_path / "in.mp4", "-o", o, "--weights", weights, "--threads", "-1")
    assert e.value.code == 2 and "must be 1 or more" in capsys.readouterr().err
    model = vsrdb.load_checkpoint(weights)
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    vsrdb.save_checkpoint(model, tmp_path / "nan")
    assert _run(tmp_path / "in.mp4", "-o", o, "--weights", tmp_path / "nan") == 2
    _one_line_error(capsys, "NaN or Inf")
    assert sorted(os.listdir(tmp_path)) == ["in.mp4", "nan"]


def test_short_clips_fps_builtin_and_file_replaced_by_frames(tmp_path, builtin):
    (tmp_path / "one").mkdir()
    cv2.imwrite(str(tmp_path / "one" / "0.png"), clip(1)[0])
    (tmp_path / "out").write_bytes(b"a file where the frames go")
    assert _run(tmp_path / "one", "-o", tmp_path / "out", "--weights", "builtin", "--overwrite") == 0
    assert len(list((tmp_path / "out").glob("*.png"))) == 1
    make_video(tmp_path / "two.mp4", clip(2))
    assert _run(tmp_path / "two.mp4", "-o", tmp_path / "two_out.mp4") == 0
    assert len(decode(tmp_path / "two_out.mp4")) == 2
    assert _run(tmp_path / "one", "-o", tmp_path / "f.mkv", "--fps", "24000/1001") == 0
    assert open_frames(tmp_path / "f.mkv").fps == Fraction(24000, 1001)


# --- output size (--outscale, --size) ---------------------------------------------------------

def test_outscale_two_gives_x2_frames_with_sound_times_and_tags_kept(tmp_path, weights, capsys):
    n = 8
    audio = 0.3 * np.sin(np.linspace(0, 400, int(48000 * n / FPS)))
    make_video(tmp_path / "in.mp4", clip(n), matrix="ITU709", audio=audio)
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "full.mkv", "--weights", weights) == 0
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "x2.mp4", "--weights", weights, "--outscale", "2") == 0
    full, half = decode(tmp_path / "full.mkv"), decode(tmp_path / "x2.mp4")
    assert len(half) == n and half[0].shape == (48, 64, 3)  # 24x32 in, x2 out
    # the x4 restoration averaged down, not a different picture (both went through a lossy encoder)
    shrunk = [cv2.resize(f, (64, 48), interpolation=cv2.INTER_AREA).astype(int) for f in full]
    assert np.mean([np.abs(a - b).mean() for a, b in zip(shrunk, half)]) < 4
    assert frame_times(tmp_path / "x2.mp4") == pytest.approx(frame_times(tmp_path / "in.mp4"), abs=1e-3)
    with av.open(str(tmp_path / "x2.mp4")) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_primaries, cc.color_trc) == (1, 1, 1)
        assert c.streams.audio[0].codec_context.name == "aac"
        heard = sum(f.samples for f in c.decode(c.streams.audio[0])) / 48000
        assert heard == pytest.approx(n / FPS, abs=0.05)
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "x1.mkv", "--weights", weights, "--outscale", "1") == 0
    assert decode(tmp_path / "x1.mkv")[0].shape == (24, 32, 3)  # deblurred at the input's size
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "s", "--weights", weights, "--size", "100x60") == 0
    assert cv2.imread(str(sorted((tmp_path / "s").glob("*.png"))[0])).shape == (60, 100, 3)
    capsys.readouterr()


@pytest.mark.parametrize("flags, words", [
    (["--outscale", "5"], ["--outscale 5", "between 1 and the model's scale (4)"]),
    (["--outscale", "0.5"], ["--outscale", "at least 1"]),
    (["--size", "200x96"], ["--size 200x96", "larger than the model's x4 output", "128x96"]),
    (["--size", "101x60"], ["--size 101x60", "even sides"]),
    (["--size", "wide"], ["--size", "WIDTHxHEIGHT"]),
    (["--size", "64x48", "--outscale", "2"], ["not allowed with argument"]),
])
def test_impossible_output_sizes_are_refused_before_any_work(tmp_path, weights, capsys, flags, words):
    make_video(tmp_path / "in.mp4", clip(4))
    try:
        code = _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", weights, *flags)
    except SystemExit as e:  # the parser's own refusals: its usage, then the one line
        code = e.code
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert all(w in last for w in words), last
    assert not (tmp_path / "out.mp4").exists() and not list(tmp_path.glob(".out.mp4*"))
