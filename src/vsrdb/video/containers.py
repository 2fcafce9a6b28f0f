"""What vsrdb reads and writes, by file name, and the checks an output path passes before any work.

Inputs are any file FFmpeg decodes, or a folder of images; outputs are the containers in
``OUTPUT_CONTAINERS`` or, without an extension, a folder of PNG frames.
"""

from __future__ import annotations

import errno
import os
import re
import tempfile
from fractions import Fraction
from pathlib import Path

from ..errors import InputError
from ..files import not_replaceable

__all__ = ["VIDEO_EXTENSIONS", "IMAGE_EXTENSIONS", "OUTPUT_CONTAINERS", "DEFAULT_FPS", "MIN_FPS", "MAX_FPS",
           "natural_key", "list_frames", "not_a_file", "check_output_path", "check_writable_folder"]

# Inputs: what is looked for in folders of videos (any file FFmpeg decodes can be named directly).
VIDEO_EXTENSIONS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".ts",
                    ".y4m", ".gif", ".mts", ".m2ts", ".3gp"}
# Outputs: the containers written (each tested); FFmpeg's muxer name for each.
OUTPUT_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm",
                     ".ts": "mpegts"}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
DEFAULT_FPS = Fraction(30)
# Frame rates a user may give (--fps, the page's fps): above MAX_FPS containers' millisecond
# clocks give frames equal timestamps; below MIN_FPS (a frame every 10 s) the rate rounds to 0
# on its way into an encoder's time base.
MIN_FPS, MAX_FPS = Fraction(1, 10), Fraction(1000)


def natural_key(name: str) -> list:
    """Sort key where 'frame10' follows 'frame9'."""
    return [int(tok) if tok.isdigit() else tok.lower() for tok in re.split(r"(\d+)", name)]


def list_frames(folder: Path) -> list[Path]:
    """The image files of a folder, sorted naturally ('frame10' after 'frame9').

    Every entry named like a frame is one: a link to nothing, a link loop, a folder or a
    device so named is an error naming it, never a frame silently left out.
    """
    frames = []
    for p in Path(folder).iterdir():
        if p.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        problem = not_a_file(p)
        if problem:
            raise InputError(f"{p}: {problem}; a frame folder holds only frames")
        frames.append(p)
    return sorted(frames, key=lambda p: natural_key(p.name))


def not_a_file(path: Path) -> str | None:
    """Why ``path`` cannot be read as a file ('a link to a missing file', 'a FIFO', ...), or None."""
    import stat

    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a link to a missing file" if path.is_symlink() else "does not exist"
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "a link that loops"
        return f"cannot be read ({e.strerror or e})"
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISDIR(mode):
        return "a folder, not a file"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file"
    return "a device, not a file"


def check_output_path(path: str | os.PathLike, *, overwrite: bool) -> tuple[Path, str]:
    """Validate an output path before any work; returns (path, kind) with kind 'video' or 'frames'."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix and suffix not in OUTPUT_CONTAINERS:
        raise InputError(f"{path}: unknown output extension {suffix!r} (use one of "
                         f"{', '.join(sorted(OUTPUT_CONTAINERS))}, or a name without extension for a PNG folder)")
    kind = "video" if suffix else "frames"
    if not path.parent.exists() or not path.parent.is_dir():
        raise InputError(f"{path}: output folder {path.parent} does not exist")
    check_writable_folder(path.parent, for_name=path.name)
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise InputError(f"{path}: exists; pass --overwrite to replace it")
        if kind == "video" and path.is_dir() and not path.is_symlink():
            raise InputError(f"{path}: is a folder; will not replace it with a video file")
        problem = not_replaceable(path)
        if problem:
            raise InputError(f"{path}: {problem}")
    return path, kind


# Names vsrdb makes beside an output are at most this much longer than it (work folders
# "NAME.vsrdb-work", temporary ".NAME.partial-PID").
_NAME_EXTRA = 24


def check_writable_folder(folder: Path, *, for_name: str | None = None) -> None:
    """InputError naming ``folder`` unless a file can be created in it (read-only file systems,
    permissions, a full disk) and, with ``for_name``, unless that name and vsrdb's work names
    beside it fit the file system's limit on name length."""
    folder = Path(folder)
    if for_name is not None:
        try:
            limit = os.pathconf(folder, "PC_NAME_MAX")
        except (OSError, ValueError, AttributeError):
            limit = 255
        length = len(for_name.encode())
        if length + _NAME_EXTRA > limit:
            raise InputError(f"{folder / for_name}: the name is {length} bytes; with the {_NAME_EXTRA} more that vsrdb's "
                             f"work files beside it need, that passes this file system's limit of {limit}: shorten it")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vsrdb-write-test-"):
            pass
    except OSError as e:
        raise InputError(f"{folder}: cannot write there ({e.strerror or e})") from None
