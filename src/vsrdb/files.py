"""Writing results without ever leaving half a file: write under a temporary name, then move.

Every output vsrdb writes (checkpoints, training state, reports, JSON, videos) goes through
``replace_atomically``, so a crash or kill leaves either the old result or the new one.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

__all__ = ["replace_atomically", "temporary_name", "write_atomically", "save_torch_atomically", "user_cache_dir",
           "format_bytes", "OUTPUT_MARKER", "mark_output_folder", "not_replaceable", "hold_folder", "release_folder",
           "not_private"]

# A file in every folder vsrdb writes as an output (PNG frames, reports, the demo): --overwrite
# replaces such a folder, never one that merely has the same name.
OUTPUT_MARKER = ".vsrdb-output"


def temporary_name(final: str | os.PathLike, tag: str = "partial") -> Path:
    """A hidden sibling of ``final`` to write into before ``replace_atomically``."""
    final = Path(final)
    return final.with_name(f".{final.name}.{tag}-{os.getpid()}")


def replace_atomically(tmp: str | os.PathLike, final: str | os.PathLike) -> None:
    """Move ``tmp`` (a file or folder) onto ``final``; an existing final (file or folder) is only
    removed once tmp is in place, so a crash leaves either the old or the new result."""
    tmp, final = Path(tmp), Path(final)
    if (final.exists() or final.is_symlink()) and (final.is_dir() or tmp.is_dir()):
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        final.rename(old)
        tmp.rename(final)
        if old.is_dir() and not old.is_symlink():
            shutil.rmtree(old, ignore_errors=True)
        else:
            old.unlink(missing_ok=True)
    else:
        os.replace(tmp, final)


def write_atomically(path: str | os.PathLike, data: str | bytes, *, durable: bool = False) -> Path:
    """Write text or bytes to ``path`` through a temporary file; ``durable`` also flushes it to
    disk first (markers that say finished work is on disk)."""
    path = Path(path)
    tmp = temporary_name(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        replace_atomically(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def save_torch_atomically(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` through a temporary file (training state, the authors' checkpoint format)."""
    import torch

    path = Path(path)
    tmp = temporary_name(path)
    try:
        torch.save(obj, tmp)
        replace_atomically(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def user_cache_dir() -> Path:
    """vsrdb's folder in the user's cache (``$XDG_CACHE_HOME/vsrdb``, else ``~/.cache/vsrdb``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vsrdb"


def format_bytes(n: float) -> str:
    """A size for a message: GB, MB or kB (decimal), as people read disk and upload sizes."""
    if n >= 1e9:
        return f"{n / 1e9:.2f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.0f} kB"


def mark_output_folder(folder: str | os.PathLike, what: str) -> None:
    """Say in ``folder`` that vsrdb wrote it (``what``: the command), so ``--overwrite`` may replace it."""
    import json

    write_atomically(Path(folder) / OUTPUT_MARKER, json.dumps({"written_by": what}) + "\n")


def not_replaceable(path: str | os.PathLike) -> str | None:
    """Why ``--overwrite`` must not replace ``path``, or None: a file, a link (replaced, never
    followed), an empty folder or a folder vsrdb wrote may go; a folder holding anything else
    (a user's own folder that happens to have the output's name) may not."""
    path = Path(path)
    if path.is_symlink() or not path.is_dir() or (path / OUTPUT_MARKER).is_file():
        return None
    entries = sorted(e.name for e in path.iterdir())
    if not entries:
        return None
    return (f"a folder that vsrdb did not write (it holds {len(entries)} entries, e.g. {entries[0]!r}); "
            "--overwrite replaces only files and folders vsrdb wrote: choose another name")


_HELD: dict[str, int] = {}  # real path of a folder -> the descriptor of the lock file this process holds
LOCK_FILE = ".vsrdb-lock"


def hold_folder(folder: str | os.PathLike, *, busy: str) -> None:
    """Lock ``folder`` for this process (until ``release_folder`` or exit, a kill included);
    ``InputError(busy)`` if another process holds it. Holding it twice is a no-op.

    A POSIX record lock on ``folder/.vsrdb-lock``: unlike ``flock``, it belongs to this process
    alone, so a forked child (a DataLoader worker) that outlives a killed parent for a moment
    does not keep the folder locked against the run that resumes it.
    """
    import fcntl

    from .errors import InputError

    key = os.path.realpath(folder)
    if key in _HELD:
        return
    try:
        fd = os.open(os.path.join(key, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as e:
        raise InputError(f"{folder}: cannot lock the folder ({e.strerror})") from None
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise InputError(busy) from None
    _HELD[key] = fd


def release_folder(folder: str | os.PathLike) -> None:
    fd = _HELD.pop(os.path.realpath(folder), None)
    if fd is not None:
        os.close(fd)


def not_private(folder: str | os.PathLike) -> str | None:
    """Why another local user could change ``folder`` or anything in it (an entry owned by
    someone else, or writable by group or others), or None when it is this user's alone.

    Links are judged as themselves (``lstat``), never followed: one that another user planted
    belongs to them.
    """
    import stat

    uid = os.getuid()

    def problem(path: str) -> str | None:
        st = os.lstat(path)
        if st.st_uid != uid:
            return f"{path} belongs to another user (uid {st.st_uid})"
        if not stat.S_ISLNK(st.st_mode) and st.st_mode & 0o022:
            who = " and ".join(w for w, bit in (("group", 0o020), ("others", 0o002)) if st.st_mode & bit)
            return f"{path} is writable by {who} (mode {stat.S_IMODE(st.st_mode):o})"
        return None

    first = problem(os.fspath(folder))
    if first:
        return first
    for root, dirs, files in os.walk(os.fspath(folder)):
        for name in dirs + files:
            found = problem(os.path.join(root, name))
            if found:
                return found
    return None
