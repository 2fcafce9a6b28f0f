"""The web application of ``vsrdb serve``: the page and the JSON API under it (docs/serve.md).

Security is in ``Guard``, an ASGI layer every request passes first:
- the Host header must name this machine's loopback (any port, for SSH port forwarding), a
  name given with ``--host``/``--allow-host``, or an IP address: a page on another site whose
  name an attacker points at 127.0.0.1 (DNS rebinding) is refused;
- a request that carries an Origin (every cross-site fetch or form does) must come from this
  server's own origin, and the browser's ``Sec-Fetch-Site: cross-site`` is refused, so no
  other page the browser shows can drive the API;
- every request needs the token printed at start-up (``?token=`` once, then a cookie that is
  HttpOnly and SameSite=Strict; scripts send ``Authorization: Bearer TOKEN``).
Names from the browser never become paths (``jobs.JobStore`` names every file), and the only
checkpoints a job can use are the ones the server was started with.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import math
import secrets
import shutil
import time
import zipfile
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from importlib import resources
from pathlib import Path
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..devices import pick_device
from ..errors import InputError
from ..files import format_bytes
from ..precision import PRECISIONS, resolve_precision
from ..restore.deflicker import parse_share
from ..video import CODECS, MAX_FPS, MIN_FPS, choose_format, list_frames
from ..video.colour import ColourSpec
from .jobs import ACTIVE, JobRecord, JobStore, Runner, safe_display_name

__all__ = ["ServeConfig", "create_app", "Guard"]

CONTAINERS = ("mp4", "mkv", "webm", "mov", "png")
_LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class ServeConfig:
    """What ``vsrdb serve`` was started with."""

    def __init__(self, *, workdir: Path, token: str, models: dict[str, dict], device: str = "auto",
                 threads: int | None = None, max_upload: int = 4 << 30, allowed_hosts: set[str] | None = None,
                 cookie: str = "vsrdb-token") -> None:
        self.workdir = workdir
        self.token = token
        self.models = models  # id -> {"name", "weights", "about"}
        self.device = device
        self.threads = threads
        self.max_upload = max_upload
        self.allowed_hosts = {h.lower() for h in (allowed_hosts or set())} | _LOOPBACK
        self.cookie = cookie


def _allowed_host(host: str, allowed: set[str]) -> bool:
    """A loopback or configured name, or an IP address: DNS rebinding needs a name, so an
    address literal cannot be one (and still needs the token)."""
    name = _host_name(host)
    if name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


def _host_name(host: str) -> str:
    """'name:port', '[v6]:port' or 'name' -> the name, lower case."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """ASGI layer: Host, Origin and token checks before anything else runs (see module doc)."""

    def __init__(self, app, config: ServeConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_hardened(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-content-type-options", b"nosniff"),
                                      (b"referrer-policy", b"no-referrer")]
            await send(message)

        return await self._checked(scope, receive, send_hardened)

    async def _checked(self, scope, receive, send):
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if not host or not _allowed_host(host, self.config.allowed_hosts):
            return await _plain(403, "vsrdb serve: this server answers only to its own host name "
                                     "(start it with --allow-host NAME to add one)")(scope, receive, send)
        origin = headers.get("origin")
        if origin is not None and origin != f"{scope.get('scheme', 'http')}://{host}":
            return await _plain(403, "vsrdb serve: cross-origin requests are refused")(scope, receive, send)
        if headers.get("sec-fetch-site") == "cross-site":
            return await _plain(403, "vsrdb serve: cross-site requests are refused")(scope, receive, send)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given = (query.get("token") or [None])[0]
        auth = headers.get("authorization", "")
        bearer = auth[7:].strip() if auth.lower().startswith("bearer ") else None
        cookie = SimpleCookie()
        try:
            cookie.load(headers.get("cookie", ""))
        except Exception:
            pass
        held = cookie[self.config.cookie].value if self.config.cookie in cookie else None
        token = self.config.token
        if given is not None and secrets.compare_digest(given, token) and scope["path"] == "/":
            # The link printed at start-up: keep the token in a cookie, take it out of the URL.
            response = RedirectResponse("/", status_code=303)
            response.set_cookie(self.config.cookie, token, httponly=True, samesite="strict", path="/")
            return await response(scope, receive, send)
        if not any(t is not None and secrets.compare_digest(t, token) for t in (given, bearer, held)):
            if scope["path"].startswith("/api/"):
                return await JSONResponse({"error": "vsrdb serve: the token is missing or wrong; open the link "
                                                    "vsrdb serve printed"}, status_code=401)(scope, receive, send)
            return await _plain(401, "vsrdb serve: open the link that vsrdb serve printed when it started "
                                     "(it holds the access token)")(scope, receive, send)
        return await self.app(scope, receive, send)


def _plain(status: int, text: str) -> Response:
    return Response(text + "\n", status_code=status, media_type="text/plain; charset=utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def check_options(config: ServeConfig, query) -> dict:
    """A job's options from the query, checked as ``vsrdb restore`` would check them before
    loading the model; InputError with the command line's words."""
    model = query.get("model", "builtin")
    if model not in config.models:
        raise InputError(f"unknown model {model!r} (this server has {', '.join(config.models)})")
    container = query.get("container", "mp4").lower().lstrip(".")
    if container not in CONTAINERS:
        raise InputError(f"unknown output container {container!r} (use one of {', '.join(CONTAINERS)})")
    codec = query.get("codec") or None
    precision = query.get("precision", "auto").lower()
    crf = query.get("crf") or None
    fps = query.get("fps") or None
    outscale = query.get("outscale") or None
    if outscale is not None:
        scale = config.models[model].get("scale", 4)
        if outscale not in {str(n) for n in range(1, scale + 1)}:
            raise InputError(f"--outscale {outscale}: must be a whole number from 1 to {model}'s scale ({scale})")
        outscale = int(outscale)
    native = query.get("scale") or None
    if native is not None:
        offered = config.models[model].get("native", [])
        if native not in {str(n) for n in offered}:
            raise InputError(f"--scale {native}: {model} runs natively at "
                             f"{', '.join(f'x{n}' for n in sorted(offered, reverse=True))}")
        native = int(native)
        if outscale is None or outscale > native:
            outscale = native
    deflicker = query.get("deflicker") or None
    if deflicker is not None:
        try:
            deflicker = parse_share(deflicker)
        except ValueError as e:
            raise InputError(f"--deflicker {deflicker}: {e}") from None
    if codec is not None and codec not in CODECS:
        raise InputError(f"--codec {codec}: unknown (use one of {', '.join(sorted(CODECS))})")
    if precision not in PRECISIONS:
        raise InputError(f"unknown precision {precision!r} (use one of {', '.join(PRECISIONS)})")
    resolve_precision(precision, pick_device(config.device))
    if crf is not None:
        try:
            crf = int(crf)
        except ValueError:
            raise InputError(f"--crf {crf}: not a whole number") from None
    if fps is not None:
        try:
            rate = float(fps)
            if not (math.isfinite(rate) and MIN_FPS <= rate <= MAX_FPS):
                raise ValueError
        except ValueError:
            raise InputError(f"--fps {fps}: must be a frame rate from {float(MIN_FPS):g} to {float(MAX_FPS):g} "
                             "(e.g. 24, 29.97)") from None
    if container == "png":
        if codec:
            raise InputError("output: --codec/--pix-fmt apply to video outputs; this writes PNG frames")
    else:
        # The same check restore makes before the model loads (source depth and colour aside).
        choose_format(Path(f"output.{container}"), source_bits=8, colour=ColourSpec(1, 1, 1, 1), codec=codec,
                      crf=crf)
    return {"model": model, "container": container, "codec": codec, "precision": precision, "crf": crf,
            "fps": fps, "outscale": outscale, "scale": native, "deflicker": deflicker}


def create_app(config: ServeConfig) -> Guard:
    """The page and its API over the jobs in ``config.workdir``, behind the access checks (``Guard``)."""
    store = JobStore(config.workdir)
    runner = Runner(store, lambda model: config.models[model]["weights"], device=config.device,
                    threads=config.threads, max_upload=config.max_upload)
    handlers = Handlers(config, store, runner)

    @asynccontextmanager
    async def lifespan(app):
        runner.start()
        try:
            yield
        finally:
            await asyncio.to_thread(runner.stop)

    app = Starlette(routes=handlers.routes(), lifespan=lifespan, exception_handlers={_NotFound: handlers.not_found})
    app.state.store, app.state.runner = store, runner
    return Guard(app, config)


class Handlers:
    """One method per route of the API (docs/serve.md), over one job store and runner."""

    def __init__(self, config: ServeConfig, store: JobStore, runner: Runner) -> None:
        self.config, self.store, self.runner = config, store, runner

    def routes(self) -> list[Route]:
        return [
            Route("/", self.page),
            Route("/favicon.ico", self.favicon),
            Route("/api/info", self.info),
            Route("/api/jobs", self.list_jobs, methods=["GET"]),
            Route("/api/jobs", self.create_job, methods=["POST"]),
            Route("/api/jobs/{job_id}", self.get_job, methods=["GET"]),
            Route("/api/jobs/{job_id}", self.delete_job, methods=["DELETE"]),
            Route("/api/jobs/{job_id}/cancel", self.cancel_job, methods=["POST"]),
            Route("/api/jobs/{job_id}/resume", self.resume_job, methods=["POST"]),
            Route("/api/jobs/{job_id}/download", self.download),
            Route("/api/jobs/{job_id}/media/{which}", self.job_media),
            Route("/api/events", self.events),
        ]

    def job_or_404(self, request: Request) -> JobRecord:
        try:
            return self.store.get(request.path_params["job_id"])
        except KeyError:
            raise _NotFound() from None

    async def page(self, request: Request) -> Response:
        html = resources.files("vsrdb.serve").joinpath("page.html").read_text()
        return HTMLResponse(html, headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY",
                                           "Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; "
                                           "media-src 'self'; style-src 'self' 'unsafe-inline'; "
                                           "script-src 'self' 'unsafe-inline'; frame-ancestors 'none'"})

    async def favicon(self, request: Request) -> Response:
        return Response(status_code=204)

    async def info(self, request: Request) -> Response:
        config = self.config
        return JSONResponse({
            "models": [{"id": k, "name": v["name"], "about": v["about"], "scale": v.get("scale", 4),
                        "native": v.get("native", [v.get("scale", 4)])} for k, v in config.models.items()],
            "containers": list(CONTAINERS), "codecs": sorted(CODECS), "precisions": list(PRECISIONS),
            "max_upload": config.max_upload, "device": config.device})

    async def list_jobs(self, request: Request) -> Response:
        return JSONResponse({"jobs": [j.public() for j in self.store.all()], "version": self.store.version})

    async def create_job(self, request: Request) -> Response:
        """An upload becomes a queued job: its options and size are checked before the body is read."""
        q = dict(request.query_params)
        name = q.get("name", "")
        if not name:
            return _error(400, "vsrdb serve: the upload needs a file name (?name=clip.mp4)")
        try:
            options = check_options(self.config, q)
        except InputError as e:
            return _error(400, f"vsrdb restore: error: {e}")
        refused = self._refuse_by_length(name, request.headers.get("content-length"))
        if refused is not None:
            return refused
        job = self.store.new(name, options)
        failed = await self._receive(request, job)
        if failed is not None:
            self.store.remove(job)
            return failed
        self.runner.enqueue(job)
        return JSONResponse(job.public(), status_code=201)

    def _too_large(self, name: str) -> Response:
        return _error(413, f"vsrdb serve: {safe_display_name(name)}: larger than this server's upload limit "
                           f"({format_bytes(self.config.max_upload)}; start it with --max-upload GB to change it)")

    def _refuse_by_length(self, name: str, length: str | None) -> Response | None:
        """A declared size over the limit or the free disk: refused before any byte is read."""
        if length is None:
            return None
        if not length.isdigit() or int(length) > self.config.max_upload:
            return self._too_large(name)
        free = shutil.disk_usage(self.config.workdir).free
        return _no_room(name, free) if int(length) > free - _DISK_MARGIN else None

    async def _receive(self, request: Request, job: JobRecord) -> Response | None:
        """The body into the job's input file, watching the limit and the disk; an error response, or None."""
        folder = self.store.folder(job.id)
        received, checked = 0, 0
        try:
            with open(folder / job.input, "wb") as f:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > self.config.max_upload:
                        raise _TooLarge()
                    if received - checked > 64 << 20:  # a stream without a length: watch the disk as it comes
                        checked = received
                        free = shutil.disk_usage(self.config.workdir).free
                        if free < _DISK_MARGIN:
                            raise _NoRoom(free)
                    f.write(chunk)
        except _TooLarge:
            return self._too_large(job.name)
        except _NoRoom as e:
            return _no_room(job.name, e.args[0])
        except (ClientDisconnect, OSError) as e:
            return _error(400, f"vsrdb serve: {job.name}: the upload did not complete ({e})")
        if received == 0:
            return _error(400, f"vsrdb restore: error: {job.name}: empty file")
        if job.input.endswith(".zip") and not zipfile.is_zipfile(folder / job.input):
            return _error(400, f"vsrdb restore: error: {job.name}: not a zip archive")
        self.store.update(job, size=received)
        return None

    async def get_job(self, request: Request) -> Response:
        return JSONResponse(self.job_or_404(request).public())

    async def cancel_job(self, request: Request) -> Response:
        job = self.job_or_404(request)
        try:
            self.runner.cancel(job)
        except InputError as e:
            return _error(409, f"vsrdb serve: {e}")
        return JSONResponse(job.public())

    async def resume_job(self, request: Request) -> Response:
        job = self.job_or_404(request)
        if job.status not in ("stopped", "interrupted", "failed"):
            return _error(409, f"vsrdb serve: {job.name}: is {job.status}; only stopped or failed jobs resume")
        self.runner.enqueue(job)
        return JSONResponse(job.public())

    async def delete_job(self, request: Request) -> Response:
        job = self.job_or_404(request)
        if job.status in ACTIVE:
            return _error(409, f"vsrdb serve: {job.name}: is {job.status}; stop it first")
        self.store.remove(job)
        return JSONResponse({"deleted": job.id})

    async def download(self, request: Request) -> Response:
        job = self.job_or_404(request)
        if job.status != "done":
            return _error(409, f"vsrdb serve: {job.name}: is {job.status}, not done")
        folder = self.store.folder(job.id)
        out = folder / job.output
        if out.is_dir():  # PNG frames: one zip, made once
            archive = folder / "output.zip"
            if not archive.is_file():
                await asyncio.to_thread(_zip_folder, out, archive)
            out = archive
        return FileResponse(out, filename=job.public()["download_name"])

    async def job_media(self, request: Request) -> Response:
        job = self.job_or_404(request)
        which = request.path_params["which"]
        name = job.compare.get({"before.png": "before", "after.png": "after", "input.mp4": "input_video",
                                "output": "output_video"}.get(which, ""), "")
        path = self.store.folder(job.id) / name
        if not name or not path.is_file():
            raise _NotFound()
        return FileResponse(path, headers={"Cache-Control": "no-store"})

    async def events(self, request: Request) -> Response:
        """Server-sent events: the job list whenever it changes (and a comment every 15 s)."""
        store = self.store

        async def stream():
            seen, quiet = -1, 0.0
            while True:
                if await request.is_disconnected():
                    return
                if store.version != seen:
                    seen = store.version
                    quiet = time.monotonic()
                    data = json.dumps({"jobs": [j.public() for j in store.all()], "version": seen})
                    yield f"data: {data}\n\n"
                elif time.monotonic() - quiet > 15:
                    quiet = time.monotonic()
                    yield ": keep-alive\n\n"
                await asyncio.sleep(0.25)

        return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})

    async def not_found(self, request: Request, exc: Exception) -> Response:
        return _error(404, "vsrdb serve: no such job or file")


class _NotFound(Exception):
    pass


class _TooLarge(Exception):
    pass


class _NoRoom(Exception):
    pass


_DISK_MARGIN = 256 << 20  # an upload never leaves less than this free on the work folder's disk


def _no_room(name: str, free: int) -> JSONResponse:
    return _error(507, f"vsrdb serve: {safe_display_name(name)}: does not fit on the work folder's disk "
                       f"({format_bytes(free)} free)")


def _zip_folder(folder: Path, archive: Path) -> None:
    tmp = archive.with_name(archive.name + ".partial")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
        for p in list_frames(folder):  # the frames only (not vsrdb's marker of its own folders)
            z.write(p, p.name)
    tmp.replace(archive)
