"""Odd inputs, outputs, options and faults (issue 29's cases): each ends with exit status 2 and
one line naming the file and the problem, before any work where it can be known up front, and
never with exit 0 and less than every frame; finished work stays resumable."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
import torch
import yaml

from vsrdb.cli import main

from conftest import synth_photo_dataset
from test_restore_media import _one_line_error, _run, clip, decode, make_video
from test_train import write_config


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def tmpfs(tmp_path):
    """A small tmpfs (root only): real read-only and full file systems. Skips elsewhere."""
    mounts = []

    def make(size: str, *, ro: bool = False) -> Path:
        path = tmp_path / f"mnt{len(mounts)}"
        path.mkdir()
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True)
        if r.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {r.stderr.decode().strip()}")
        mounts.append(path)
        if ro:
            subprocess.run(["mount", "-o", "remount,ro", str(path)], check=True)
        return path

    yield make
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


# --- what an input is -------------------------------------------------------------------------

def test_a_folder_of_videos_with_an_image_restores_the_videos(tmp_path, weights, capsys):
    vids = tmp_path / "vids"
    vids.mkdir()
    make_video(vids / "a.mp4", clip(3))
    make_video(vids / "b.mp4", clip(4))
    cv2.imwrite(str(vids / "cover.jpg"), clip(1)[0])
    assert _run(vids, "-o", tmp_path / "out", "--weights", weights, "--ext", "mkv") == 0
    captured = capsys.readouterr()
    assert sorted(os.listdir(tmp_path / "out")) == ["a.mkv", "b.mkv"]
    assert [len(decode(tmp_path / "out" / n)) for n in ("a.mkv", "b.mkv")] == [3, 4]
    assert "cover.jpg" in captured.err and "skipped" in captured.err


def test_batch_outputs_never_go_into_an_input_folder(tmp_path, weights, capsys):
    clips = tmp_path / "clips"
    clips.mkdir()
    make_video(clips / "one.mkv", clip(3))
    make_video(clips / "two.mkv", clip(3))
    before = _listing(clips)
    for out, extra in ((clips / "out", ()), (clips, ("--ext", "mkv"))):
        assert _run(clips, "-o", out, "--weights", weights, *extra) == 2
        _one_line_error(capsys, str(out), "lies inside the input folder")
        assert _listing(clips) == before


def test_two_inputs_with_one_output_name_say_rename(tmp_path, weights, capsys):
    make_video(tmp_path / "a.mp4", clip(3))
    (tmp_path / "x").mkdir()
    make_video(tmp_path / "x" / "a.mp4", clip(3))
    assert _run(tmp_path / "a.mp4", tmp_path / "x" / "a.mp4", "-o", tmp_path / "out", "--weights", weights) == 2
    line = _one_line_error(capsys, "same name", "rename one of them")
    assert "--ext" not in line


@pytest.mark.parametrize("kind, words", [
    ("dangling", "a link to a missing file"), ("loop", "a link that loops"), ("folder", "a folder, not a file"),
    ("fifo", "a FIFO (named pipe), not a file")])
def test_a_frame_that_cannot_be_read_stops_the_run_naming_it(tmp_path, weights, capsys, kind, words):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(clip(8)):
        cv2.imwrite(str(frames / f"{i:03d}.png"), f)
    bad = frames / "004.png"  # one frame among eight, which used to be left out (7 frames, exit 0)
    bad.unlink()
    if kind == "dangling":
        bad.symlink_to(tmp_path / "gone.png")
    elif kind == "loop":
        bad.symlink_to(bad)
    elif kind == "folder":
        bad.mkdir()
    else:
        os.mkfifo(bad)
    assert _run(frames, "-o", tmp_path / "out", "--weights", weights) == 2
    _one_line_error(capsys, "004.png", words)
    assert not (tmp_path / "out").exists()


def test_a_fifo_given_as_the_input_is_named_so(tmp_path, weights, capsys):
    os.mkfifo(tmp_path / "in.mp4")
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", weights) == 2
    _one_line_error(capsys, "in.mp4: a FIFO (named pipe), not a file")


# --- every frame or an error -----------------------------------------------------------------

def test_a_cut_mkv_is_caught_by_its_stated_duration(tmp_path, weights, capsys):
    full = tmp_path / "full.mkv"
    make_video(full, clip(30), fps=25)
    with av.open(str(full)) as c:
        assert not c.streams.video[0].frames  # Matroska states no frame count
    cut = tmp_path / "cut.mkv"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    assert _run(cut, "-o", tmp_path / "out.mp4", "--weights", weights) == 2
    _one_line_error(capsys, str(cut), "but the file states a duration of 1.20 s", "cut short")
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.mp4.vsrdb-work").exists()
    assert _run(full, "-o", tmp_path / "ok.mp4", "--weights", weights) == 0  # the whole file still restores
    assert len(decode(tmp_path / "ok.mp4")) == 30


def test_resume_refuses_an_input_replaced_with_equal_size_and_mtime(tmp_path, weights, capsys, monkeypatch):
    import vsrdb.restore.job as job

    video = tmp_path / "in.mp4"
    make_video(video, clip(6))
    out = tmp_path / "out.mp4"

    def interrupted(self, **kw):
        raise KeyboardInterrupt

    monkeypatch.setattr(job.Job, "finish", interrupted)
    assert main(["restore", str(video), "-o", str(out), "--weights", weights, "--quiet"]) == 130
    monkeypatch.undo()
    st = video.stat()
    data = bytearray(video.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 8] = bytes(255 - b for b in data[middle:middle + 8])
    video.write_bytes(bytes(data))
    os.utime(video, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert video.stat().st_size == st.st_size and video.stat().st_mtime_ns == st.st_mtime_ns
    capsys.readouterr()
    assert _run(video, "-o", out, "--weights", weights, "--resume") == 2
    _one_line_error(capsys, str(out), "different input's contents", "--restart")
    assert not out.exists() and (tmp_path / "out.mp4.vsrdb-work").is_dir()


# --- options refused before any work ------------------------------------------------------------

@pytest.mark.parametrize("codec, crf, words", [
    ("vp9", 99, "out of range for vp9 (0 to 63"), ("av1", 70, "out of range for av1 (1 to 63"),
    ("h265", 99, "out of range for h265 (0 to 51"), ("h264", 99, "out of range for h264 (0 to 51"),
    ("ffv1", 10, "does not apply to ffv1")])
def test_crf_is_checked_for_its_codec_before_any_work(tmp_path, weights, capsys, codec, crf, words):
    make_video(tmp_path / "in.mp4", clip(3))
    out = tmp_path / "out.mkv"
    assert _run(tmp_path / "in.mp4", "-o", out, "--weights", weights, "--codec", codec, "--crf", crf) == 2
    _one_line_error(capsys, str(out), words)
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_fp16_on_a_cpu_is_refused_up_front(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mp4", clip(3))
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", weights, "--device", "cpu",
                "--precision", "fp16") == 2
    _one_line_error(capsys, "fp16 is for GPUs", "use bf16")
    dataset = synth_photo_dataset(tmp_path, (48, 64), photo_size=(24, 32), clip_frames=3, photo_clips=1)
    assert main(["evaluate", "--data", str(dataset), "--layout", "synth", "--weights", weights, "--device", "cpu",
                 "--precision", "fp16", "--quiet"]) == 2
    _one_line_error(capsys, "fp16 is for GPUs")


@pytest.mark.parametrize("argv, words", [
    (("--max-memory", "-1"), "-1 must be more than 0 GB"), (("--max-memory", "0"), "0 must be more than 0 GB"),
    (("--fps", "1e9"), "1e9 must be from 0.1 to 1000 frames per second"),
    (("--fps", "0.001"), "0.001 must be from 0.1 to 1000 frames per second")])
def test_impossible_numbers_are_refused_by_the_parser(tmp_path, weights, capsys, argv, words):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, f in enumerate(clip(3)):
        cv2.imwrite(str(frames / f"{i}.png"), f)
    with pytest.raises(SystemExit) as e:
        main(["restore", str(frames), "-o", str(tmp_path / "out.mkv"), "--weights", weights, *argv])
    assert e.value.code == 2 and words in capsys.readouterr().err
    assert not (tmp_path / "out.mkv").exists()


def test_a_memory_budget_no_tile_fits_is_refused_at_once(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mp4", clip(3, h=48, w=64))
    started = time.perf_counter()
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", weights, "--max-memory", "1e-7") == 2
    assert time.perf_counter() - started < 30
    _one_line_error(capsys, "too small for this model at any tile size", "--max-memory")


def test_a_frame_too_large_for_memory_is_refused_before_restoring(tmp_path, weights, capsys):
    frames = tmp_path / "big"
    frames.mkdir()
    cv2.imwrite(str(frames / "0.png"), np.full((8000, 8000, 3), 90, np.uint8))  # x4: 32000 x 32000
    assert _run(frames, "-o", tmp_path / "out", "--weights", weights) == 2
    _one_line_error(capsys, str(frames), "of memory to restore", "output frame alone is 12.3 GB")
    assert sorted(os.listdir(tmp_path)) == ["big"]


def test_frames_smaller_than_the_model_allows_name_the_file(tmp_path, weights, capsys):
    frames = tmp_path / "small"
    frames.mkdir()
    for i, f in enumerate(clip(3, h=2, w=2)):  # fmanet-tiny needs 3x3
        cv2.imwrite(str(frames / f"{i}.png"), f)
    assert _run(frames, "-o", tmp_path / "out", "--weights", weights) == 2
    _one_line_error(capsys, str(frames), "frames are 2x2", "needs at least 3x3")


def test_restorer_errors_are_given_the_file_name(tmp_path, weights, capsys, monkeypatch):
    import vsrdb.restore.restorer as restorer
    from vsrdb.errors import InputError

    def no_frames(self, frames, **kw):
        raise InputError("has no frames")
        yield

    monkeypatch.setattr(restorer.Restorer, "run", no_frames)
    make_video(tmp_path / "in.mp4", clip(3))
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", weights) == 2
    assert _one_line_error(capsys) == f"vsrdb restore: error: {tmp_path / 'in.mp4'}: has no frames"


# --- destinations ---------------------------------------------------------------------------------

def test_overwrite_never_empties_a_folder_vsrdb_did_not_write(tmp_path, weights, capsys):
    make_video(tmp_path / "clip.mp4", clip(3))
    videos = tmp_path / "Videos"  # the user's own folder, with a sub-folder
    (videos / "holiday").mkdir(parents=True)
    make_video(videos / "holiday" / "beach.mp4", clip(3))
    (videos / "notes.txt").write_text("mine")
    before = _listing(videos)
    assert _run(tmp_path / "clip.mp4", "-o", videos, "--weights", weights, "--overwrite") == 2
    _one_line_error(capsys, str(videos), "a folder that vsrdb did not write", "choose another name")
    assert _listing(videos) == before
    # vsrdb's own PNG output is replaced, and so is an empty folder
    out = tmp_path / "frames"
    assert _run(tmp_path / "clip.mp4", "-o", out, "--weights", weights) == 0
    assert _run(tmp_path / "clip.mp4", "-o", out, "--weights", weights, "--overwrite") == 0
    assert len(list(out.glob("*.png"))) == 3
    (tmp_path / "empty").mkdir()
    assert _run(tmp_path / "clip.mp4", "-o", tmp_path / "empty", "--weights", weights, "--overwrite") == 0
    # the demo's and evaluate's folders follow the same rule
    assert main(["demo", "-o", str(videos), "--overwrite", "--quiet"]) == 2
    _one_line_error(capsys, "a folder that vsrdb did not write")
    assert main(["evaluate", "--quiet", "--pred", str(out), "--gt", str(out), "--report", str(videos),
                 "--overwrite"]) == 2
    _one_line_error(capsys, "a folder that vsrdb did not write")
    assert _listing(videos) == before


def test_a_read_only_output_folder_is_one_line(tmp_path, weights, capsys, tmpfs):
    ro = tmpfs("1m", ro=True)
    make_video(tmp_path / "in.mp4", clip(3))
    assert _run(tmp_path / "in.mp4", "-o", ro / "out.mp4", "--weights", weights) == 2
    _one_line_error(capsys, str(ro), "cannot write there", "Read-only file system")
    dataset = synth_photo_dataset(tmp_path, (48, 64), photo_size=(24, 32), clip_frames=3, photo_clips=1)
    assert main(["evaluate", "--data", str(dataset), "--layout", "synth", "--baseline", "bicubic", "--json",
                 str(ro / "s.json"), "--quiet"]) == 2
    _one_line_error(capsys, str(ro), "cannot write there")


def test_an_output_name_too_long_for_the_work_files_is_refused(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mp4", clip(3))
    out = tmp_path / ("x" * 246 + ".mp4")
    assert _run(tmp_path / "in.mp4", "-o", out, "--weights", weights) == 2
    _one_line_error(capsys, "the name is 250 bytes", "shorten it")
    assert sorted(os.listdir(tmp_path)) == ["in.mp4"]


def test_a_full_disk_keeps_the_finished_frames_and_resume_completes(tmp_path, weights, capsys, tmpfs):
    small = tmpfs("400k")
    frames = tmp_path / "in"
    frames.mkdir()
    for i, f in enumerate(clip(12, h=40, w=48, seed=3)):
        cv2.imwrite(str(frames / f"{i:02d}.png"), f)
    out = small / "out"
    assert _run(frames, "-o", out, "--weights", weights) == 2
    line = _one_line_error(capsys, str(out), "No space left on device", "--resume")
    assert "frames are kept in" in line
    work = small / "out.vsrdb-work"
    assert not out.exists() and work.is_dir()
    kept = len(list((work / "frames").glob("*.png")))
    assert 0 < kept < 12
    subprocess.run(["mount", "-o", "remount,size=20m", str(small)], check=True)
    assert _run(frames, "-o", out, "--weights", weights, "--resume") == 0
    ref = tmp_path / "ref"
    assert _run(frames, "-o", ref, "--weights", weights) == 0
    names = sorted(os.listdir(out))
    assert names == sorted(os.listdir(ref)) and len([n for n in names if n.endswith(".png")]) == 12
    assert all((out / n).read_bytes() == (ref / n).read_bytes() for n in names)


def test_a_disk_too_small_for_the_frames_is_refused_up_front(tmp_path, weights, capsys, tmpfs):
    small = tmpfs("100k")
    frames = tmp_path / "in"
    frames.mkdir()
    for i, f in enumerate(clip(12, h=40, w=48, seed=3)):  # 12 x 160x192 output frames
        cv2.imwrite(str(frames / f"{i:02d}.png"), f)
    assert _run(frames, "-o", small / "out", "--weights", weights) == 2
    _one_line_error(capsys, str(small / "out"), "needs at least 276 kB free for its frames, and its disk has")
    assert os.listdir(small) == []


def test_a_failed_join_leaves_no_partial_file(tmp_path, weights, capsys, monkeypatch):
    import vsrdb.restore.job as job

    def full_disk(out_path, *args, **kw):
        Path(out_path).write_bytes(b"\0" * 1000)
        raise OSError(errno.ENOSPC, "No space left on device", str(out_path))

    monkeypatch.setattr(job, "join_segments", full_disk)
    make_video(tmp_path / "in.mp4", clip(3))
    out = tmp_path / "out.mp4"
    assert _run(tmp_path / "in.mp4", "-o", out, "--weights", weights) == 2
    _one_line_error(capsys, str(out), "No space left on device", "--resume")
    work = tmp_path / "out.mp4.vsrdb-work"
    assert not out.exists() and work.is_dir() and not list(work.glob("joined*"))
    monkeypatch.undo()
    assert _run(tmp_path / "in.mp4", "-o", out, "--weights", weights, "--resume") == 0
    assert len(decode(out)) == 3


def test_a_second_run_on_a_held_output_is_refused_untouched(tmp_path, weights, capsys, monkeypatch):
    import vsrdb.restore.job as job

    video = tmp_path / "in.mp4"
    make_video(video, clip(4))
    out = tmp_path / "out.mp4"
    monkeypatch.setattr(job.Job, "finish", lambda self, **kw: (_ for _ in ()).throw(KeyboardInterrupt))
    assert main(["restore", str(video), "-o", str(out), "--weights", weights, "--quiet"]) == 130
    monkeypatch.undo()
    job.release_work_folder(tmp_path / "out.mp4.vsrdb-work")  # as if that process had ended
    work = tmp_path / "out.mp4.vsrdb-work"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from vsrdb.files import hold_folder; "
                               "hold_folder(sys.argv[1], busy='busy'); print('held', flush=True); time.sleep(120)",
                               str(work)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {p: p.stat().st_mtime_ns for p in work.rglob("*")}
        for extra in ((), ("--resume",), ("--restart",)):
            capsys.readouterr()
            assert _run(video, "-o", out, "--weights", weights, *extra) == 2
            _one_line_error(capsys, str(out), "another vsrdb run is working on this output")
            assert {p: p.stat().st_mtime_ns for p in work.rglob("*")} == before
    finally:
        holder.kill()
        holder.wait()
    assert _run(video, "-o", out, "--weights", weights, "--resume") == 0  # the lock died with its holder
    assert len(decode(out)) == 4


# --- small ----------------------------------------------------------------------------------------

def test_interlaced_input_gets_a_note(tmp_path, weights, capsys):
    path = tmp_path / "tv.mp4"
    frames = clip(4, h=32, w=48)
    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 48, 32, "yuv420p"
        s.options = {"x264-params": "interlaced=1:tff=1", "flags": "+ildct+ilme"}
        for i, f in enumerate(frames):
            vf = av.VideoFrame.from_ndarray(f, format="rgb24")
            vf.pts = i
            for p in s.encode(vf):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    assert _run(path, "-o", tmp_path / "out.mp4", "--weights", weights) == 0
    assert "tv.mp4: interlaced video" in capsys.readouterr().err


def test_notes_name_the_output_not_the_internal_join(tmp_path, weights, capsys):
    make_video(tmp_path / "in.mov", clip(3), audio=np.zeros(48000), audio_codec="pcm_s16le")
    assert _run(tmp_path / "in.mov", "-o", tmp_path / "final.mp4", "--weights", weights) == 0
    err = capsys.readouterr().err
    assert "final.mp4: pcm_s16le audio cannot go into .mp4" in err and "joined" not in err


def test_a_garbage_authors_checkpoint_does_not_advise_unsafe_loading(tmp_path, capsys):
    folder = tmp_path / "w"
    folder.mkdir()
    (folder / "model_D_best.pt").write_bytes(os.urandom(4000))
    make_video(tmp_path / "in.mp4", clip(3))
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", folder) == 2
    line = _one_line_error(capsys, "model_D_best.pt: cannot read as a weights-only torch checkpoint")
    assert "weights_only" not in line.replace("weights-only", "")


def _as_from_a_terminal() -> None:
    # A suite started in the background by a non-interactive shell inherits SIGINT ignored, and
    # Python then keeps it ignored; a user's Ctrl-C reaches a process whose SIGINT is the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupted(p: subprocess.Popen, out: Path) -> None:
    """The run ended as a Ctrl-C should: one line that says so, the status of a SIGINT, no output."""
    _, err = p.communicate(timeout=120)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert p.returncode in (-signal.SIGINT, 130), (p.returncode, err)
    assert len(lines) <= 2 and "Traceback" not in err and "interrupted" in err, err
    assert not out.exists()


def _start_restore(tmp_path: Path, weights: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "vsrdb", *extra, "restore", str(tmp_path / "in.mp4"), "-o",
                             str(tmp_path / "out.mp4"), "--weights", weights, "--quiet"], stderr=subprocess.PIPE,
                            text=True, preexec_fn=_as_from_a_terminal)


def test_ctrl_c_at_any_moment_of_start_up_or_restoring_is_one_line(tmp_path, weights):
    # 60 frames: the run cannot end before the signal, however fast the machine (the suite once
    # signalled a 3-frame run that had already exited 0).
    make_video(tmp_path / "in.mp4", clip(60))
    for delay in (0.05, 0.2, 0.5):  # inside start-up: Python, torch and vsrdb still importing
        p = _start_restore(tmp_path, weights)
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _interrupted(p, tmp_path / "out.mp4")
    # While restoring: the work folder exists once the first frames are being made.
    p = _start_restore(tmp_path, weights)
    deadline = time.monotonic() + 60
    while not (tmp_path / "out.mp4.vsrdb-work").exists() and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    p.send_signal(signal.SIGINT)
    _interrupted(p, tmp_path / "out.mp4")


@pytest.mark.parametrize("where", ["swallowed", "wrapped"])
def test_a_ctrl_c_that_a_library_swallows_or_wraps_still_stops_the_run(tmp_path, weights, where):
    # Libraries imported while the command runs drop a KeyboardInterrupt with a bare except:, or
    # wrap it (Python wraps one raised in __set_name__ in a RuntimeError). The run must stop anyway.
    body = {
        "swallowed": "try:\n    os.kill(os.getpid(), signal.SIGINT)\n    time.sleep(1)\nexcept:\n    pass\n",
        "wrapped": ("class Named:\n    def __set_name__(self, owner, name):\n"
                    "        os.kill(os.getpid(), signal.SIGINT)\n        time.sleep(1)\n\n"
                    "class Owner:\n    field = Named()\n"),
    }[where]
    (tmp_path / "lib.py").write_text("import os, signal, time\n" + body)
    make_video(tmp_path / "in.mp4", clip(8))
    p = _start_restore(tmp_path, weights, "--model-module", str(tmp_path / "lib.py"))
    _interrupted(p, tmp_path / "out.mp4")


# --- training ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("key, value, words", [
    ("stages.netd.lr", -4e-4, "stages.netd.lr must be more than 0, got -0.0004"),
    ("data.batch", 0, "data.batch must be 1 or more, got 0"),
    ("stages.joint.iterations", -1, "stages.joint.iterations must be 0 or more"),
    ("gamma", 0, "gamma must be in (0, 1]")])
def test_training_values_out_of_range_are_named_before_training(tmp_path, key, value, words, capsys):
    dataset = synth_photo_dataset(tmp_path, (48, 64), photo_size=(24, 32), clip_frames=3, photo_clips=1)
    cfg = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run", **{key: value})
    assert main(["train", str(cfg), "--quiet"]) == 2
    _one_line_error(capsys, "c.yaml", words)
    assert not (tmp_path / "run").exists()


def test_a_failed_train_leaves_no_run_folder(tmp_path, capsys):
    cfg = write_config(tmp_path / "c.yaml", tmp_path / "missing", tmp_path / "run")
    assert main(["train", str(cfg), "--quiet"]) == 2
    capsys.readouterr()
    assert not (tmp_path / "run").exists()


def test_training_never_writes_into_a_read_only_dataset(tmp_path, tmpfs, capsys):
    source = synth_photo_dataset(tmp_path, (160, 200), photo_size=(64, 80), clip_frames=5, photo_clips=2)
    ro = tmpfs("20m")
    subprocess.run(["cp", "-r", f"{source}/.", str(ro)], check=True)
    subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    before = _listing(ro)
    cfg = write_config(tmp_path / "c.yaml", ro, tmp_path / "run", **{"stages.netd.iterations": 2,
                                                                     "stages.joint.iterations": 2})
    assert main(["train", str(cfg), "--quiet"]) == 0
    assert _listing(ro) == before
    caches = list(Path(os.environ["XDG_CACHE_HOME"]).glob("vsrdb/datasets/*/flow/*.npy"))
    assert caches, "the flows were cached under the user's cache"
    # An unwritable cache folder set by hand is named before training.
    data = yaml.safe_load(cfg.read_text())
    data["data"]["cache_dir"] = str(ro / "cache")
    data["run_dir"] = str(tmp_path / "run2")
    cfg.write_text(yaml.safe_dump(data))
    capsys.readouterr()
    assert main(["train", str(cfg), "--quiet"]) == 2
    _one_line_error(capsys, "data.cache_dir", "cannot write the flow cache")


# --- weights ------------------------------------------------------------------------------------------

def test_weights_that_are_not_floating_point_are_refused(tmp_path, weights, capsys):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "ints"
    folder.mkdir()
    (folder / "config.json").write_text((Path(weights) / "config.json").read_text())
    state = load_file(str(Path(weights) / "model.safetensors"))
    save_file({k: (v * 100).to(torch.int32) for k, v in state.items()}, str(folder / "model.safetensors"))
    make_video(tmp_path / "in.mp4", clip(3))
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", folder) == 2
    _one_line_error(capsys, "model.safetensors: tensor", "holds int32 values; weights must be floating point")
    assert not (tmp_path / "out.mp4").exists()


def test_a_checkpoint_config_with_a_value_of_the_wrong_type_is_named(tmp_path, weights, capsys):
    import json
    import shutil

    folder = tmp_path / "w"
    shutil.copytree(weights, folder)
    record = json.loads((folder / "config.json").read_text())
    record["config"]["dim"] = "wide"
    (folder / "config.json").write_text(json.dumps(record))
    make_video(tmp_path / "in.mp4", clip(3))
    assert _run(tmp_path / "in.mp4", "-o", tmp_path / "out.mp4", "--weights", folder) == 2
    _one_line_error(capsys, "config.json", "FMANetConfig.dim must be a whole number, got 'wide'")


def test_data_errors_come_before_the_run_folder(tmp_path, capsys):
    dataset = synth_photo_dataset(tmp_path, (48, 64), photo_size=(24, 32), clip_frames=3, photo_clips=1)  # LR 6x8
    cfg = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run", **{"data.patch": 20})
    assert main(["train", str(cfg), "--quiet"]) == 2
    _one_line_error(capsys, "data.patch 20 is larger than clip", "LR frames (8x6)", "data.patch 6 or less")
    cfg = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run", seed=-3)
    assert main(["train", str(cfg), "--quiet"]) == 2
    _one_line_error(capsys, "c.yaml", "seed must be 0 or more")
    assert not (tmp_path / "run").exists()


def test_a_second_training_run_on_one_run_dir_is_refused(tmp_path, capsys):
    dataset = synth_photo_dataset(tmp_path, (48, 64), photo_size=(24, 32), clip_frames=3, photo_clips=1)
    cfg = write_config(tmp_path / "c.yaml", dataset, tmp_path / "run", **{"stages.netd.iterations": 100000,
                                                                          "data.patch": 4, "data.flow": None})
    first = subprocess.Popen([sys.executable, "-m", "vsrdb", "train", str(cfg), "--quiet"], stderr=subprocess.PIPE,
                             text=True)
    try:
        deadline = time.monotonic() + 120
        log = tmp_path / "run" / "log.csv"
        while not (log.is_file() and len(log.read_text().splitlines()) > 2) and time.monotonic() < deadline:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            time.sleep(0.1)
        assert main(["train", str(cfg), "--quiet", "--resume"]) == 2
        _one_line_error(capsys, "run: another training run is using this run_dir")
        assert first.poll() is None  # the first run goes on
    finally:
        first.kill()
        first.wait()
    steps = [line.split(",")[1] for line in log.read_text().splitlines()[1:]]
    assert len(steps) == len(set(steps))  # every step logged once


def test_a_file_name_with_a_newline_or_escape_sequence_stays_one_escaped_line(tmp_path, weights):
    bad = tmp_path / "holiday\nclip\x1b[31m.mp4"
    bad.write_bytes(b"not a video at all")
    done = subprocess.run([sys.executable, "-m", "vsrdb", "restore", str(bad), "-o", str(tmp_path / "out.mp4"),
                           "--weights", weights, "--quiet"], capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "\x1b" not in lines[0] and "holiday\\nclip\\x1b[31m.mp4" in lines[0]
