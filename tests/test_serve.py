"""vsrdb serve: a real server process on a free loopback port, driven through its HTTP API with
raw requests (tokens, hostile Host/Origin headers, hostile file names, oversized uploads, a
SIGKILL) and through headless Chromium as a person would use the page."""

from __future__ import annotations

import http.client
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from urllib.parse import quote

import av
import numpy as np
import pytest
import torch

import vsrdb

from test_restore_media import clip, decode, make_video

pytest.importorskip("starlette", reason="vsrdb serve needs the serve extra (pip install 'vsrdb[serve]')")
pytest.importorskip("uvicorn", reason="vsrdb serve needs the serve extra (pip install 'vsrdb[serve]')")

from vsrdb.errors import InputError  # noqa: E402
from vsrdb.serve.jobs import extract_frames_zip, safe_display_name  # noqa: E402


class Server:
    """``vsrdb serve --port 0`` in a child process; the URL it prints gives port and token."""

    def __init__(self, workdir: Path, *args: str) -> None:
        self.workdir = workdir
        cmd = [sys.executable, "-m", "vsrdb", "serve", "--port", "0", "--workdir", str(workdir), "--threads", "1",
               *args]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if "open http://" not in line:
            self.proc.kill()
            raise AssertionError(f"serve did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.split("open ", 1)[1].strip()
        self.port = int(self.url.split(":")[2].split("/")[0])
        self.token = self.url.split("token=")[1]
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                if self.request("GET", "/api/info")[0] == 200:
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("serve did not answer")

    def request(self, method: str, path: str, body=None, *, headers: dict | None = None, auth: bool = True,
                chunked: bool = False):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"Host": f"127.0.0.1:{self.port}"}
        if auth:
            h["Authorization"] = f"Bearer {self.token}"
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h, encode_chunked=chunked)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered before the whole body was sent (a refused upload)
        r = conn.getresponse()
        data = r.read()
        conn.close()
        return r.status, dict(r.getheaders()), data

    def json(self, method: str, path: str, body=None, **kw):
        status, _, data = self.request(method, path, body, **kw)
        return status, json.loads(data) if data else None

    def upload(self, path: Path, name: str | None = None, **options):
        q = "&".join(f"{k}={quote(str(v))}" for k, v in {"name": name or path.name, **options}.items())
        return self.json("POST", f"/api/jobs?{q}", path.read_bytes())

    def wait(self, job_id: str, until, timeout: float = 120.0) -> dict:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status, job = self.json("GET", f"/api/jobs/{job_id}")
            assert status == 200, job
            if until(job):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job never got there: {job}")

    def stop(self, sig=signal.SIGTERM) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def tiny(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("w") / "tiny"
    vsrdb.save_checkpoint(vsrdb.build("fmanet-tiny"), path)
    return path


@pytest.fixture
def server(tmp_path, tiny):
    started = []

    def start(*args: str, workdir: Path | None = None) -> Server:
        s = Server(workdir or tmp_path / "work", "--weights", str(tiny), *args)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def _sound():
    return (0.3 * np.sin(np.arange(48000) * 2 * np.pi * 440 / 48000)).astype(np.float32)


def _files_under(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


# --- who may talk to it ------------------------------------------------------------------------

def test_requests_without_the_token_are_refused(server):
    s = server()
    assert s.request("GET", "/api/jobs", auth=False)[0] == 401
    assert s.request("GET", "/api/jobs", auth=False, headers={"Authorization": "Bearer wrong"})[0] == 401
    assert s.request("GET", "/api/jobs", auth=False, headers={"Cookie": f"vsrdb-token-{s.port}=wrong"})[0] == 401
    status, _, body = s.request("GET", "/", auth=False)
    assert status == 401 and b"open the link" in body
    assert s.request("POST", "/api/jobs?name=a.mp4", b"x" * 10, auth=False)[0] == 401
    assert not list((s.workdir / "jobs").iterdir())
    # The printed link sets an HttpOnly, SameSite=Strict cookie and drops the token from the URL.
    status, headers, _ = s.request("GET", f"/?token={s.token}", auth=False)
    cookie = headers["set-cookie"]
    assert status == 303 and headers["location"] == "/"
    assert cookie.startswith(f"vsrdb-token-{s.port}={s.token}") and "HttpOnly" in cookie
    assert "samesite=strict" in cookie.lower()
    status, _, body = s.request("GET", "/", auth=False, headers={"Cookie": f"vsrdb-token-{s.port}={s.token}"})
    assert status == 200 and b"<title>vsrdb" in body
    assert (s.workdir / "token").stat().st_mode & 0o077 == 0  # the kept token is the owner's alone


def test_foreign_host_or_origin_is_refused(server, tmp_path):
    s = server()
    own = f"http://127.0.0.1:{s.port}"
    video = tmp_path / "a.mp4"
    make_video(video, clip(3))
    for headers in ({"Host": f"evil.example:{s.port}"},  # DNS rebinding: a foreign name at our address
                    {"Host": f"127.0.0.1.evil.example:{s.port}"},
                    {"Origin": "http://evil.example"},  # another site's page
                    {"Origin": f"http://localhost:{s.port + 1}"},  # another local server's page
                    {"Origin": "null"},
                    {"Sec-Fetch-Site": "cross-site"}):
        status, _, body = s.request("POST", "/api/jobs?name=a.mp4&model=tiny", video.read_bytes(), headers=headers)
        assert status == 403, (headers, status, body)
        assert s.request("GET", "/api/jobs", headers=headers)[0] == 403
    assert not list((s.workdir / "jobs").iterdir())
    # The page's own origin, and the loopback names at any port (SSH forwarding), are accepted.
    assert s.request("GET", "/api/jobs", headers={"Origin": own})[0] == 200
    assert s.request("GET", "/api/jobs", headers={"Host": "localhost:9999"})[0] == 200
    assert s.request("GET", "/api/jobs", headers={"Host": f"[::1]:{s.port}"})[0] == 200
    status, headers, _ = s.request("GET", "/api/jobs", headers={"Host": f"192.168.1.20:{s.port}"})  # --host 0.0.0.0
    assert status == 200 and headers["x-content-type-options"] == "nosniff"


def test_upload_names_never_become_paths(server, tmp_path):
    s = server()
    video = tmp_path / "a.mp4"
    make_video(video, clip(3))
    before = _files_under(tmp_path) - _files_under(s.workdir)
    ids = []
    for name in ("../../x.mp4", "..\\..\\y.mp4", "/etc/passwd", "....//z.mkv", "\x00.mp4"):
        status, job = s.upload(video, name=name, model="tiny")
        assert status == 201, job
        ids.append(job["id"])
        assert "/" not in job["name"] and "\\" not in job["name"] and not job["name"].startswith(".")
        folder = s.workdir / "jobs" / job["id"]
        assert job["input"].startswith("input") and (folder / job["input"]).is_file()
    assert not (tmp_path / "x.mp4").exists() and not (s.workdir / "x.mp4").exists()
    for job_id in ids[1:]:  # one run is enough to see where outputs go; the rest stay queued
        s.json("POST", f"/api/jobs/{job_id}/cancel")
    job = s.wait(ids[0], lambda j: j["status"] in ("done", "failed"))
    assert job["status"] == "done" and job["download_name"] == "x-vsrdb.mp4"
    after = _files_under(tmp_path) - _files_under(s.workdir)
    assert after == before  # nothing was written outside the work folder
    jobs_dir = s.workdir / "jobs"
    assert all(p.parent == jobs_dir for p in jobs_dir.iterdir()) and len(list(jobs_dir.iterdir())) == len(ids)
    # Job ids are the server's: anything else is not a path either.
    for bad in ("..%2F..%2Ftoken", "..", "%2e%2e", ids[0] + "%2F..%2F..%2Ftoken"):
        assert s.request("GET", f"/api/jobs/{bad}/download")[0] == 404, bad
        assert s.request("DELETE", f"/api/jobs/{bad}")[0] in (404, 405), bad
    assert s.request("GET", f"/api/jobs/{ids[0]}/media/..%2F..%2Ftoken")[0] == 404
    assert s.request("GET", f"/api/jobs/{ids[0]}/media/job.json")[0] == 404


def test_upload_over_the_limit_is_refused_without_filling_the_disk(server, tmp_path):
    s = server("--max-upload", "0.0002")  # 200 kB
    # Declared too large: refused from the headers, before the body is read.
    status, job = s.json("POST", "/api/jobs?name=big.mp4&model=tiny", b"\0" * 300_000)
    assert status == 413 and job["error"] == ("vsrdb serve: big.mp4: larger than this server's upload limit (200 kB; "
                                              "start it with --max-upload GB to change it)")
    # Streamed without a length: cut off at the limit, and what came is deleted.
    chunks = (b"\0" * 65536 for _ in range(64))  # 4 MB
    status, _, body = s.request("POST", "/api/jobs?name=big.mp4&model=tiny", chunks, chunked=True)
    assert status == 413, body
    assert not list((s.workdir / "jobs").iterdir())
    assert sum(p.stat().st_size for p in s.workdir.rglob("*") if p.is_file()) < 300_000
    # An upload within the limit still works.
    small = tmp_path / "small.mp4"
    make_video(small, clip(3))
    assert s.upload(small, model="tiny")[0] == 201


def test_errors_are_the_command_lines_one_line(server, tmp_path, tiny):
    s = server()
    bad = tmp_path / "holiday.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    status, job = s.upload(bad, model="tiny")
    assert status == 201
    job = s.wait(job["id"], lambda j: j["status"] in ("done", "failed"))
    cli = subprocess.run([sys.executable, "-m", "vsrdb", "restore", "holiday.mp4", "-o", "out.mp4", "--weights",
                          str(tiny), "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert cli.returncode == 2
    assert job["status"] == "failed" and job["error"] == cli.stderr.strip()
    assert "holiday.mp4" in job["error"] and "\n" not in job["error"]
    # An impossible option is refused before the upload is read, in restore's words.
    video = tmp_path / "a.mp4"
    make_video(video, clip(3))
    status, answer = s.upload(video, model="tiny", container="webm", codec="h264")
    cli = subprocess.run([sys.executable, "-m", "vsrdb", "restore", str(video), "-o", "output.webm", "--codec", "h264",
                          "--weights", str(tiny), "--quiet"], cwd=tmp_path, capture_output=True, text=True)
    assert status == 400 and answer["error"] == cli.stderr.strip()
    status, answer = s.upload(video, model="../../secret")
    assert status == 400 and "unknown model" in answer["error"]
    status, answer = s.upload(video, model="tiny", precision="fp16")  # no native fp16 on these CPUs
    assert status == 400 and "fp16" in answer["error"]
    status, answer = s.upload(video, model="tiny", outscale="2", scale="2")
    assert status == 400 and answer["error"] == "vsrdb restore: error: --scale 2: tiny runs natively at x4"
    for outscale in ("8", "1.5", "0", "x2"):  # tiny is x4
        status, answer = s.upload(video, model="tiny", outscale=outscale)
        assert status == 400 and answer["error"] == f"vsrdb restore: error: --outscale {outscale}: must be a " \
                                                    "whole number from 1 to tiny's scale (4)", answer
    for share in ("0", "1.5", "lots"):
        status, answer = s.upload(video, model="tiny", deflicker=share)
        assert status == 400 and answer["error"] == f"vsrdb restore: error: --deflicker {share}: must be more " \
                                                    "than 0 and at most 1", answer
    assert len(list((s.workdir / "jobs").iterdir())) == 1  # only the unreadable file's job


def test_a_zip_of_frames_restores_to_frames(server, tmp_path):
    import cv2

    s = server()
    archive = tmp_path / "shots.zip"
    frames = clip(4)
    with zipfile.ZipFile(archive, "w") as z:
        for i in (10, 2, 1, 3):  # natural order, not the archive's
            z.writestr(f"take/f{i}.png", cv2.imencode(".png", frames[min(i, 3)][:, :, ::-1])[1].tobytes())
        z.writestr("../../escape.png", cv2.imencode(".png", frames[0])[1].tobytes())
        z.writestr("notes.txt", "skipped")
    status, job = s.upload(archive, model="tiny", container="png")
    assert status == 201
    job = s.wait(job["id"], lambda j: j["status"] in ("done", "failed"))
    assert job["status"] == "done", job["error"]
    # The member named ../../escape.png is skipped like any dot-name: nothing is written by a name.
    assert job["frames_total"] == 4 and not (tmp_path / "escape.png").exists()
    status, headers, data = s.request("GET", f"/api/jobs/{job['id']}/download")
    assert status == 200 and 'filename="shots-vsrdb-frames.zip"' in headers["content-disposition"]
    out = tmp_path / "out.zip"
    out.write_bytes(data)
    with zipfile.ZipFile(out) as z:
        names = z.namelist()
        first = cv2.imdecode(np.frombuffer(z.read(names[0]), np.uint8), cv2.IMREAD_COLOR)
    assert len(names) == 4 and first.shape == (96, 128, 3)
    # the built-in model run natively at x2 (where builtin-x2 ships): restore --outscale 2 --scale 2
    status, info = s.json("GET", "/api/info")
    if 2 in next(m for m in info["models"] if m["id"] == "builtin")["native"]:
        status, job = s.upload(archive, model="builtin", container="png", outscale="2", scale="2")
        assert status == 201 and job["options"]["scale"] == 2
        job = s.wait(job["id"], lambda j: j["status"] in ("done", "failed"))
        assert job["status"] == "done", job["error"]
        with zipfile.ZipFile(io.BytesIO(s.request("GET", f"/api/jobs/{job['id']}/download")[2])) as z:
            first = cv2.imdecode(np.frombuffer(z.read(z.namelist()[0]), np.uint8), cv2.IMREAD_COLOR)
        assert first.shape == (48, 64, 3)
        status, answer = s.upload(archive, model="builtin", container="png", scale="1")
        assert status == 400 and answer["error"] == "vsrdb restore: error: --scale 1: builtin runs natively at x4, x2"


def test_extract_frames_zip_writes_only_its_own_names(tmp_path):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("../../../evil.png", b"x")
        z.writestr("/abs/evil2.png", b"y")
        z.writestr("__MACOSX/._f.png", b"z")
        z.writestr("big.png", b"\0" * 5000)
    with pytest.raises(InputError, match="more than the upload limit"):
        extract_frames_zip(archive, tmp_path / "d0", max_bytes=1000)
    # Dot-names (.., __MACOSX, hidden) are skipped; the rest get fixed names in dest.
    assert extract_frames_zip(archive, tmp_path / "d", max_bytes=10_000) == 2
    assert sorted(os.listdir(tmp_path / "d")) == ["000000.png", "000001.png"]
    assert sorted(os.listdir(tmp_path)) == ["a.zip", "d"]
    (tmp_path / "bad.zip").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(InputError, match="bad.zip: not a readable zip"):
        extract_frames_zip(tmp_path / "bad.zip", tmp_path / "d2", max_bytes=10_000)
    assert safe_display_name("../../a/b\\c.mp4") == "c.mp4" and safe_display_name("..") == "upload"


# --- stop, resume, and a server killed mid-job -----------------------------------------------------

def _children_in(folder: Path) -> list[int]:
    """Processes whose working folder is ``folder`` (a job's vsrdb restore)."""
    found = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if os.readlink(p / "cwd") == str(folder):
                    found.append(int(p.name))
            except OSError:
                pass
    return found


def test_stop_resume_and_sigkill_then_restart_equal_an_uninterrupted_run(tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "cpu"
    vsrdb.save_checkpoint(vsrdb.build("fmanet-cpu"), weights)  # slow enough to stop and kill mid-run
    video = tmp_path / "clip.mp4"
    make_video(video, clip(14, h=40, w=56), audio=_sound())
    work = tmp_path / "work"
    s = Server(work, "--weights", str(weights))
    try:
        status, job = s.upload(video, model="cpu")
        assert status == 201
        folder = work / "jobs" / job["id"]
        s.wait(job["id"], lambda j: j["status"] == "running" and j["frames_done"] >= 2)
        assert s.json("POST", f"/api/jobs/{job['id']}/cancel")[0] == 200
        stopped = s.wait(job["id"], lambda j: j["status"] == "stopped")
        assert 2 <= stopped["frames_done"] < 14 and (folder / "output.mp4.vsrdb-work").is_dir()
        assert s.json("POST", f"/api/jobs/{job['id']}/resume")[0] == 200
        running = s.wait(job["id"], lambda j: j["status"] == "running" and j["frames_done"] >= stopped["frames_done"] + 2)
        assert running["fps"] > 0 and running["eta"] is not None
        s.stop(signal.SIGKILL)
        deadline = time.time() + 10
        while _children_in(folder) and time.time() < deadline:
            time.sleep(0.1)
        assert not _children_in(folder), "the job's vsrdb restore outlived the killed server"
        assert not (folder / "output.mp4").exists()
        s = Server(work, "--weights", str(weights))  # picks the job up again by itself
        done = s.wait(job["id"], lambda j: j["status"] in ("done", "failed"), timeout=180)
        assert done["status"] == "done", done["error"]
        assert done["frames_done"] == done["frames_total"] == 14
        status, _, data = s.request("GET", f"/api/jobs/{job['id']}/download")
        assert status == 200
    finally:
        s.stop()
    got = tmp_path / "got.mp4"
    got.write_bytes(data)
    ref = tmp_path / "ref.mp4"
    subprocess.run([sys.executable, "-m", "vsrdb", "restore", str(video), "-o", str(ref), "--weights", str(weights),
                    "--threads", "1", "--quiet"], check=True)
    a, b = decode(got), decode(ref)
    assert len(a) == len(b) == 14 and all(np.array_equal(x, y) for x, y in zip(a, b))
    with av.open(str(got)) as c:
        assert len(c.streams.audio) == 1
    log = (folder / "log.txt").read_text()
    assert log.count("--resume") >= 3  # first run, after the stop, after the restart


# --- the page, in a real browser ------------------------------------------------------------------

def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if path is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="playwright drives the browser (pip install playwright)")
    return path


def test_the_page_restores_an_upload_with_sound_in_headless_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    browser_path = _chromium()
    s = server()
    video = tmp_path / "walk.mp4"
    make_video(video, clip(8, h=32, w=48), audio=_sound())
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\0garbage" * 100)
    shot = tmp_path / "serve-page.png"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
        try:
            page = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 1000}).new_page()
            page.goto(s.url)
            assert page.url == f"http://127.0.0.1:{s.port}/"  # the token went into a cookie
            # builtin also ships at x2: its native x2 is offered next to its x4 output shrunk to x2
            page.select_option("#model", "builtin")
            if len(page.evaluate("() => models.find(m => m.id === 'builtin').native")) > 1:
                assert page.eval_on_selector_all("#outscale option", "os => os.map(o => o.textContent)") == \
                    ["×4", "×2", "×2, native x2: faster", "same size (deblur only)"]
            page.select_option("#model", "tiny")
            # The sizes a x4 model makes; x2 here is the x4 output shrunk as restore --outscale 2 does.
            assert page.eval_on_selector_all("#outscale option", "os => os.map(o => o.textContent)") == \
                ["×4", "×2", "same size (deblur only)"]
            page.select_option("#outscale", "2")
            page.check("#deflicker")  # restore --deflicker
            page.set_input_files("#files", str(video))
            page.click("#start")
            row = page.locator(".job[data-status=done]")
            row.wait_for(timeout=60_000)
            assert row.locator(".bar").get_attribute("aria-valuenow") == "100"
            assert "8 / 8 frames" in row.locator(".stats").inner_text()
            page.wait_for_function("() => ['before', 'after'].every(i => document.getElementById(i).naturalWidth > 0)"
                                   " && ['vin', 'vout'].every(i => document.getElementById(i).readyState >= 2)",
                                   timeout=30_000)
            sizes = page.evaluate("() => ['before', 'after', 'vout', 'vin'].map(i => { const e = "
                                  "document.getElementById(i); return e.naturalWidth || e.videoWidth; })")
            assert sizes == [96, 96, 96, 48]
            assert "tiny ×2 → .mp4" in row.locator(".stats").inner_text()
            assert row.locator(".stats").inner_text().endswith(", steadier")
            page.uncheck("#deflicker")
            page.fill("#wipe", "25")
            assert "25%" in page.evaluate("() => document.getElementById('after').style.clipPath")
            page.evaluate("() => document.getElementById('vout').play()")
            page.wait_for_function("() => !document.getElementById('vin').paused", timeout=10_000)
            with page.expect_download() as d:
                row.locator("a.download").click()
            download = tmp_path / "download.mp4"
            d.value.save_as(download)
            assert d.value.suggested_filename == "walk-vsrdb.mp4"
            # A file that is not a video: its one line on the page.
            page.set_input_files("#files", str(broken))
            page.click("#start")
            failed = page.locator(".job[data-status=failed] .error")
            failed.wait_for(timeout=60_000)
            assert failed.inner_text().startswith("vsrdb restore: error: broken.mp4")
            # An impossible option: refused before the upload, its one line on the page.
            page.select_option("#container", "webm")
            page.select_option("#codec", "h264")
            page.set_input_files("#files", str(video))
            page.click("#start")
            page.wait_for_function("() => document.getElementById('message').textContent.length > 0")
            message = page.locator("#message").inner_text()
            assert message.startswith("vsrdb restore: error: output.webm") and "\n" not in message
            assert page.locator(".job").count() == 2
            page.locator(".job[data-status=done]").scroll_into_view_if_needed()
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    frames = decode(download)
    assert len(frames) == 8 and frames[0].shape == (64, 96, 3)
    with av.open(str(download)) as c:
        assert c.streams.audio and c.streams.audio[0].codec_context.name == "aac"
        assert c.streams.audio[0].duration * c.streams.audio[0].time_base > 0.9
    assert shot.stat().st_size > 10_000
    if os.environ.get("VSRDB_SCREENSHOT"):
        shutil.copy(shot, os.environ["VSRDB_SCREENSHOT"])


# --- the work folder is the user's alone ----------------------------------------------------------

def _serve_fails(workdir: Path, *words: str, **popen) -> None:
    done = subprocess.run([sys.executable, "-m", "vsrdb", "serve", "--port", "0", "--workdir", str(workdir)],
                          capture_output=True, text=True, timeout=60, **popen)
    lines = [ln for ln in done.stderr.splitlines() if ln.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_a_work_folder_another_user_could_change_is_refused(tmp_path):
    work = tmp_path / "work"
    (work / "jobs").mkdir(parents=True, mode=0o700)
    work.chmod(0o700)
    (work / "jobs").chmod(0o777)  # as mkdir makes it under umask 000
    _serve_fails(work, "must be yours alone", "jobs is writable by group and others (mode 777)")
    (work / "jobs").chmod(0o700)
    if os.getuid() == 0:  # a token planted by another user: only root can make one here
        (work / "token").write_text("k" * 40)
        os.chown(work / "token", 65534, 65534)
        _serve_fails(work, "token belongs to another user (uid 65534)")


def test_under_umask_000_everything_the_server_makes_is_private(server, tmp_path):
    old = os.umask(0)
    try:
        s = server(workdir=tmp_path / "open")
    finally:
        os.umask(old)
    make_video(tmp_path / "in.mp4", clip(3))
    status, job = s.upload(tmp_path / "in.mp4")
    assert status == 201, job
    s.wait(job["id"], lambda j: j["status"] in ("done", "failed"))
    for root, dirs, files in os.walk(s.workdir):
        for name in [root, *(os.path.join(root, d) for d in dirs), *(os.path.join(root, f) for f in files)]:
            assert os.lstat(name).st_mode & 0o077 == 0, (name, oct(os.lstat(name).st_mode))


def test_one_server_per_work_folder(server, tmp_path):
    s = server()
    _serve_fails(s.workdir, "another vsrdb serve uses this work folder")


def test_a_planted_job_record_is_never_listed_or_run(server, tmp_path):
    secret = tmp_path / "secret.mp4"  # a video only the server's user can read
    make_video(secret, clip(3))
    work = tmp_path / "work"
    folder = work / "jobs" / "0123456789abcdef"
    folder.mkdir(parents=True)
    for p in (work, work / "jobs", folder):
        p.chmod(0o700)
    record = {"id": "0123456789abcdef", "name": "x.mp4", "input": str(secret), "output": str(tmp_path / "leak.mp4"),
              "options": {"model": "builtin", "container": "mp4", "codec": None, "precision": "fp32", "crf": None,
                          "fps": None}, "status": "queued"}
    (folder / "job.json").write_text(json.dumps(record))
    (folder / "job.json").chmod(0o600)
    s = server()
    status, jobs = s.json("GET", "/api/jobs")
    assert status == 200 and jobs["jobs"] == [], jobs
    time.sleep(1.0)
    assert not (tmp_path / "leak.mp4").exists()


@pytest.mark.parametrize("fps", ["nan", "inf", "1e9", "0.001", "-2"])
def test_a_frame_rate_out_of_range_is_refused_before_the_upload(server, tmp_path, fps):
    s = server()
    make_video(tmp_path / "in.mp4", clip(3))
    status, body = s.upload(tmp_path / "in.mp4", fps=fps)
    assert status == 400 and "--fps" in body["error"], body
    assert not list((s.workdir / "jobs").iterdir())


# --- messages ---------------------------------------------------------------------------------------

def _zip_of_frames(path: Path, n: int = 3, *, encrypted: bool = False) -> None:
    import cv2

    with zipfile.ZipFile(path, "w") as z:
        for i, f in enumerate(clip(n)):
            z.writestr(f"f{i}.png", cv2.imencode(".png", f)[1].tobytes())
    if encrypted:  # the flag a password-protected archive's members carry (zipfile cannot write one)
        data = bytearray(path.read_bytes())
        for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):  # local and central headers
            i = data.find(signature)
            while i >= 0:
                data[i + at] |= 0x1
                i = data.find(signature, i + 4)
        path.write_bytes(bytes(data))


def test_zip_errors_name_the_users_file(tmp_path, monkeypatch):
    import vsrdb.serve.jobs as jobs

    archive = tmp_path / "input.zip"  # stored under the fixed name; the user called it holiday.zip
    _zip_of_frames(archive, encrypted=True)
    with pytest.raises(InputError, match=r"^holiday\.zip: the zip is encrypted \(password-protected\)"):
        extract_frames_zip(archive, tmp_path / "frames", max_bytes=1 << 30, name="holiday.zip")
    _zip_of_frames(archive)
    real = shutil.disk_usage
    monkeypatch.setattr(jobs.shutil, "disk_usage", lambda p: real(p)._replace(free=1 << 20))
    with pytest.raises(InputError, match=r"^holiday\.zip: the frames unpack to .*, and the work folder's disk has "
                                         r"1\.0 MB free"):
        extract_frames_zip(archive, tmp_path / "frames", max_bytes=1 << 30, name="holiday.zip")
    assert not (tmp_path / "frames").exists()


def test_a_restore_killed_by_a_signal_says_so(tmp_path):
    from vsrdb.serve.jobs import JobRecord, _error_line

    log = tmp_path / "log.txt"
    log.write_text("--- 2026-12-06: vsrdb restore input.mp4 -o output.mp4\n")
    job = JobRecord(id="0123456789abcdef", name="holiday.mp4", input="input.mp4", output="output.mp4", options={})
    line = _error_line(log, job, -signal.SIGKILL)
    assert "killed by SIGKILL" in line and "resume" in line and "without a message" not in line


def test_the_page_options_become_restore_flags(tmp_path):
    # What check_options accepts is what the job's vsrdb restore child is given.
    from vsrdb.serve.app import ServeConfig, check_options
    from vsrdb.serve.jobs import JobRecord, JobStore, Runner

    config = ServeConfig(workdir=tmp_path, token="t", models={"tiny": {"scale": 4, "native": [4]}})
    options = check_options(config, {"model": "tiny", "outscale": "2", "deflicker": "0.5", "precision": "fp32"})
    assert options["deflicker"] == 0.5
    job = JobRecord(id="0123456789abcdef", name="a.mp4", input="input.mp4", output="output.mp4", options=options)
    cmd = Runner(JobStore(tmp_path), lambda model: f"/weights/{model}").command(job)
    assert cmd[cmd.index("--deflicker") + 1] == "0.5" and cmd[cmd.index("--outscale") + 1] == "2"
    assert "--deflicker" not in Runner(JobStore(tmp_path), str).command(
        JobRecord(id="0123456789abcdef", name="a.mp4", input="input.mp4", output="output.mp4",
                  options={**options, "deflicker": None}))
