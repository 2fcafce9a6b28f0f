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
           "format_bytes"]


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
