"""vsrdb in a chain of video tools: YUV4MPEG2 through standard input and output, with Debian's
ffmpeg on both sides (installed by .ci/run; these tests skip without it)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_restore_media import clip, decode, make_video

FFMPEG = shutil.which("ffmpeg")
pytestmark = pytest.mark.skipif(FFMPEG is None, reason="ffmpeg is not installed (Debian: apt-get install ffmpeg)")

VSRDB = [sys.executable, "-m", "vsrdb"]


def _sh(cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, timeout=300, **kw)


def _vsrdb(weights: str, *args: str) -> str:
    return " ".join([*VSRDB, "restore", *args, "--weights", weights, "--quiet", "--threads", "1"])


def _y4m(data: bytes) -> tuple[dict, list[bytes]]:
    """A Y4M stream's header fields and its frames' raw plane bytes."""
    head, _, rest = data.partition(b"\n")
    fields = {t[0]: t[1:] for t in head.decode().split()[1:]}
    frames = rest.split(b"FRAME\n")[1:]
    return fields, frames


@pytest.fixture
def source(tmp_path) -> Path:
    path = tmp_path / "in.mp4"
    make_video(path, clip(6, h=24, w=32))
    return path


@pytest.mark.parametrize("pix_fmt, extra", [("yuv420p", ""), ("yuv420p10le", ""), ("yuv420p", "--deflicker 0.7")])
def test_ffmpeg_into_vsrdb_into_ffmpeg_equals_a_file_to_file_run(tmp_path, weights, source, pix_fmt, extra):
    # (--deflicker: the stream's frames are tied in order on the pipe as in a file's job)
    to_y4m = f"{FFMPEG} -v error -i {source} -pix_fmt {pix_fmt} -strict -1 -f yuv4mpegpipe -"
    piped = _sh(f"{to_y4m} | {_vsrdb(weights, '-', '-o', '-')} {extra} | {FFMPEG} -v error -f yuv4mpegpipe -i - "
                f"-strict -1 -f yuv4mpegpipe {tmp_path / 'piped.y4m'}")
    assert piped.returncode == 0, piped.stderr.decode()
    # The same stream as a file, restored to a lossless file in the same pixel format.
    assert _sh(f"{to_y4m} > {tmp_path / 'in.y4m'}").returncode == 0
    done = _sh(f"{_vsrdb(weights, str(tmp_path / 'in.y4m'), '-o', str(tmp_path / 'ref.mkv'))} --codec ffv1 "
               f"--pix-fmt {pix_fmt} {extra}")
    assert done.returncode == 0, done.stderr.decode()
    assert _sh(f"{FFMPEG} -v error -i {tmp_path / 'ref.mkv'} -strict -1 -f yuv4mpegpipe {tmp_path / 'ref.y4m'}"
               ).returncode == 0
    head, frames = _y4m((tmp_path / "piped.y4m").read_bytes())
    _, ref = _y4m((tmp_path / "ref.y4m").read_bytes())  # (its chroma siting tag is ffv1's, not the input's)
    assert (head["W"], head["H"]) == ("128", "96")
    assert head["C"].startswith("420p10" if "10" in pix_fmt else "420")
    assert len(frames) == len(ref) == 6 and frames == ref  # bit for bit


@pytest.mark.parametrize("pix_fmt, tag", [("yuv422p", "422"), ("yuv444p10le", "444p10"), ("gray", "mono")])
def test_chroma_layout_depth_rate_aspect_and_range_are_carried_over(tmp_path, weights, source, pix_fmt, tag):
    done = _sh(f"{FFMPEG} -v error -i {source} -pix_fmt {pix_fmt} -color_range pc -strict -1 -f yuv4mpegpipe - "
               f"| sed '1s/F[0-9]*:[0-9]*/F30000:1001/; 1s/A[0-9]*:[0-9]*/A4:3/; 1s/ I. / It /' "
               f"| {_vsrdb(weights, '-', '-o', '-')}")
    assert done.returncode == 0, done.stderr.decode()
    head, frames = _y4m(done.stdout)
    assert head["C"] == tag and head["F"] == "30000:1001" and head["A"] == "4:3" and head["I"] == "t"
    assert "COLORRANGE=FULL" in done.stdout.split(b"\n", 1)[0].decode()
    assert (head["W"], head["H"]) == ("128", "96") and len(frames) == 6
    # and ffmpeg reads it back in that format
    probe = _sh(f"{FFMPEG} -v error -f yuv4mpegpipe -i - -f null -", input=done.stdout)
    assert probe.returncode == 0, probe.stderr.decode()


def test_matroska_on_standard_output_plays(tmp_path, weights, source):
    done = _sh(f"{FFMPEG} -v error -i {source} -f yuv4mpegpipe - | {_vsrdb(weights, '-', '-o', '-')} --format mkv "
               f"--codec h264 > {tmp_path / 'out.mkv'}")
    assert done.returncode == 0, done.stderr.decode()
    frames = decode(tmp_path / "out.mkv")
    assert len(frames) == 6 and frames[0].shape == (96, 128, 3)


def test_a_reader_that_closes_early_ends_the_run_in_one_line(tmp_path, weights):
    make_video(tmp_path / "long.mp4", clip(40, h=24, w=32))
    done = _sh(f"{FFMPEG} -v error -i {tmp_path / 'long.mp4'} -f yuv4mpegpipe - "
               f"| {_vsrdb(weights, '-', '-o', '-')} 2> {tmp_path / 'err.txt'} | head -c 100 > /dev/null; "
               "echo ${PIPESTATUS[1]}")
    assert done.stdout.decode().strip() in ("2", "141")  # vsrdb's status: an error, or SIGPIPE's
    err = (tmp_path / "err.txt").read_text()
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "closed the pipe" in err


def test_a_cut_stream_is_an_error_not_a_short_output(tmp_path, weights, source):
    full = _sh(f"{FFMPEG} -v error -i {source} -f yuv4mpegpipe -").stdout
    cut = full[: len(full) - 500]  # inside the last frame
    out = tmp_path / "out.mkv"
    done = subprocess.run([*VSRDB, "restore", "-", "-o", str(out), "--weights", weights, "--quiet"], input=cut,
                          capture_output=True, timeout=300)
    err = done.stderr.decode().strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1, err
    assert "standard input: frame 5 is cut short" in err and not out.exists()
    assert not [p for p in os.listdir(tmp_path) if "partial" in p]


@pytest.mark.parametrize("args, env, words", [
    (("-", "-o", "-", "--resume"), {}, "--resume: a pipe keeps no work to resume"),
    (("-", "IN", "-o", "OUT"), {}, "a pipe carries one stream"),
    (("-", "-o", "-"), {"WORLD_SIZE": "2"}, "a pipe is one stream: run one process"),
    (("SOUND", "-o", "-"), {}, "has sound, which a pipe output does not carry; add --no-audio"),
    (("-", "-o", "-", "--codec", "h265"), {}, "YUV4MPEG2 is raw: use --format mkv"),
    (("-", "-o", "OUT.mkv", "--format", "mkv"), {}, "--format mkv: is for -o -"),
    (("NOTY4M", "-o", "-"), {}, "not a YUV4MPEG2 stream")])
def test_what_needs_a_file_is_refused_on_a_pipe_in_one_line(tmp_path, weights, source, args, env, words):
    make_video(tmp_path / "sound.mp4", clip(3, h=24, w=32), audio=np.zeros(48000))
    names = {"IN": str(source), "OUT": str(tmp_path / "out"), "SOUND": str(tmp_path / "sound.mp4"),
             "OUT.mkv": str(tmp_path / "out.mkv")}
    stdin = source.read_bytes() if "NOTY4M" in args else _sh(f"{FFMPEG} -v error -i {source} -f yuv4mpegpipe -").stdout
    argv = [names.get(a, a) for a in args if a != "NOTY4M"]
    if "NOTY4M" in args:
        argv = ["-", *argv]
    done = subprocess.run([*VSRDB, "restore", *argv, "--weights", weights, "--quiet"], input=stdin,
                          capture_output=True, timeout=300, env={**os.environ, **env})
    err = done.stderr.decode().strip()
    assert done.returncode == 2 and len(err.splitlines()) == 1 and words in err, err
    assert not done.stdout


def test_a_listing_piped_into_a_reader_that_has_left_ends_quietly():
    """vsrdb info | head: the reader closes before vsrdb writes; no traceback, the exit status
    a shell reports for SIGPIPE."""
    read, write = os.pipe()
    os.close(read)
    try:
        done = subprocess.run([sys.executable, "-m", "vsrdb", "info"], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141 and done.stderr == ""


def test_a_pipe_runs_the_native_scale_asked_for(tmp_path, source):
    """--scale and --size on a pipe: the stream's own size decides what --size needs."""
    from vsrdb.checkpoints import builtin_weights

    if builtin_weights("builtin-x2") is None:
        pytest.skip("this installation has no builtin-x2")
    to_y4m = f"{FFMPEG} -v error -i {source} -f yuv4mpegpipe -"
    restore = " ".join([*VSRDB, "restore", "-", "-o", "-", "--threads", "1"])
    done = _sh(f"{to_y4m} | {restore} --scale 2 > {tmp_path / 'x2.y4m'}")
    assert done.returncode == 0, done.stderr.decode()
    assert "builtin-x2 (native x2, --scale 2)" in done.stderr.decode()
    head, frames = _y4m((tmp_path / "x2.y4m").read_bytes())
    assert (head["W"], head["H"]) == ("64", "48") and len(frames) == 6
    done = _sh(f"{to_y4m} | {restore} --size 64x48 > {tmp_path / 's.y4m'}")
    assert done.returncode == 0 and "--scale 2 runs builtin-x2 natively" in done.stderr.decode()
    assert _y4m((tmp_path / "s.y4m").read_bytes())[0]["W"] == "64"
