"""``vsrdb serve``: a local web page to restore videos without a terminal (docs/serve.md)."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys
from pathlib import Path

from ..errors import InputError
from ..files import hold_folder, not_private, user_cache_dir
from .common import add_device_argument, positive_int

__all__ = ["add_subcommand", "default_workdir"]


def default_workdir() -> Path:
    return user_cache_dir() / "serve"


def add_subcommand(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve", help="a local web page: drop a video, watch it restore, compare, download",
        description="Serve a page (and a JSON API) on this machine that restores uploaded videos with the same "
                    "code as vsrdb restore, one job at a time. Open the printed link: it carries the access "
                    "token. Needs the serve extra: pip install 'vsrdb[serve]'.")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this machine only; from elsewhere use SSH port "
                        "forwarding, see docs/serve.md)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    p.add_argument("--workdir", type=Path, default=None,
                   help=f"folder for jobs, uploads and outputs; kept across restarts (default {default_workdir()})")
    p.add_argument("--weights", action="append", default=[], metavar="FOLDER",
                   help="a checkpoint folder the page may offer besides the built-in model (repeatable); the page "
                        "can use no other")
    add_device_argument(p)
    p.add_argument("--threads", type=positive_int, help="CPU threads for each job (default: all cores)")
    p.add_argument("--max-upload", type=float, default=4.0, metavar="GB",
                   help="largest upload accepted, in GB (default 4)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="a host name the browser may use besides localhost/127.0.0.1 (repeatable)")
    p.add_argument("--new-token", action="store_true", help="replace the access token kept in the work folder")
    p.set_defaults(func=_cmd_serve)


def _token(workdir: Path, renew: bool) -> str:
    """The access token, kept (owner-only) in the work folder so links and cookies survive a restart."""
    path = workdir / "token"
    if path.is_file() and not renew:
        token = path.read_text().strip()
        if len(token) >= 32:
            return token
    token = secrets.token_urlsafe(32)
    fd = os.open(path.with_name("token.partial"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token)
    os.replace(path.with_name("token.partial"), path)
    return token


def _models(weights: list[str]) -> dict[str, dict]:
    from ..checkpoints import BUILTIN_MODELS, builtin_weights, load_checkpoint, native_scales

    models: dict[str, dict] = {}
    # A built-in model at another native scale is offered through its x4 sibling's output-size choice.
    siblings = {n for name in BUILTIN_MODELS for n in native_scales(name).values() if n != name}
    for name, purpose in BUILTIN_MODELS.items():  # the default first: the page preselects it
        if builtin_weights(name) is not None and name not in siblings:
            model = load_checkpoint(name)
            native = sorted(native_scales(name) or {model.scale: name})
            models[name] = {"name": f"{name} ({model.preset})", "weights": name, "scale": model.scale,
                            "native": native, "about": f"x{model.scale}; for {purpose}"
                            + (f"; runs natively at {', '.join(f'x{s}' for s in native)}" if len(native) > 1 else "")}
    for folder in weights:
        model = load_checkpoint(folder)  # a bad folder is refused now, not at the first job
        path = Path(folder).resolve()
        key, n = path.name or "weights", 2
        while key in models:
            key, n = f"{path.name}-{n}", n + 1
        models[key] = {"name": key, "weights": str(path), "scale": model.scale, "native": [model.scale],
                       "about": f"{model.preset} from {path.name} (x{model.scale})"}
    if not models:
        raise InputError("no model to serve: this installation has no built-in model; pass --weights FOLDER")
    return models


def _cmd_serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..serve.app import ServeConfig, create_app
    except ImportError as e:
        raise InputError(f"vsrdb serve needs the serve extra ({e.name} is missing): "
                         "pip install 'vsrdb[serve]'") from None
    from ..devices import pick_device

    pick_device(args.device)
    if args.max_upload <= 0:
        raise InputError(f"--max-upload {args.max_upload}: must be more than 0 GB")
    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port}: must be 0 to 65535")
    workdir = (args.workdir or default_workdir()).expanduser().resolve()
    # Everything the server and its restore children make is the user's alone, whatever umask
    # the shell had (000 would make job folders anyone may write into).
    os.umask(0o077)
    try:
        workdir.mkdir(parents=True, exist_ok=True, mode=0o700)
        probe = workdir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise InputError(f"{workdir}: cannot write the work folder ({e.strerror or e})") from None
    # The token and the job records in it decide who may use the server and what it reads and
    # writes: another user able to change them could plant a known token or a job.
    problem = not_private(workdir)
    if problem:
        raise InputError(f"the work folder must be yours alone: {problem}; fix it (chown, chmod go-w) or choose "
                         "another --workdir")
    hold_folder(workdir, busy=f"{workdir}: another vsrdb serve uses this work folder; stop it first or choose "
                              "another --workdir")
    models = _models(args.weights)
    family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as e:
        raise InputError(f"{args.host}:{args.port}: cannot listen there ({e.strerror or e})") from None
    sock.listen(128)
    port = sock.getsockname()[1]
    allowed = set(args.allow_host)
    if args.host not in ("0.0.0.0", "::", ""):
        allowed.add(args.host)
    else:
        allowed.add(socket.gethostname())
    token = _token(workdir, args.new_token)
    config = ServeConfig(workdir=workdir, token=token, models=models, device=args.device, threads=args.threads,
                         max_upload=int(args.max_upload * 1e9), allowed_hosts=allowed, cookie=f"vsrdb-token-{port}")
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::", "") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    print(f"vsrdb serve: jobs in {workdir}", file=sys.stderr)
    print(f"vsrdb serve: open http://{shown}:{port}/?token={token}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"vsrdb serve: listening on {args.host}, not only this machine: anyone who has the link can use "
              "it; SSH port forwarding is safer (docs/serve.md)", file=sys.stderr)
    server = uvicorn.Server(uvicorn.Config(create_app(config), log_level="warning", timeout_graceful_shutdown=3,
                                           access_log=False, lifespan="on"))
    server.run(sockets=[sock])
    return 0
