"""vsrdb's own CPU kernels (``ops/csrc``), compiled on first use and cached, or None.

Eager PyTorch leaves some inference work as several passes over a frame where one would do:
the multi-flow-mask warp is a ``grid_sample`` per channel group, a multiply by the mask and a
copy into place (7 warps of 3 frames per restored frame of FMA-Net); FGDF upsampling on a kernel
grid coarser than the frames (x2, x1) is hundreds of multiply-adds over small strided planes.
``multi_flow_warp`` and ``fgdf_taps`` below are that work in one pass each. Their callers keep the
PyTorch form and use it whenever the kernels are not there: no C++ compiler or ninja,
``VSRDB_KERNELS=0``, a build that failed.

The build (about half a minute, once per source, torch, Python and vector level) goes to
``~/.cache/vsrdb/kernels/NAME`` (under ``$XDG_CACHE_HOME`` if set, or ``$VSRDB_KERNELS_DIR``),
a folder that must be this user's alone: a library loaded from a folder another user can
write would run their code.

    python -m vsrdb.ops.kernels        # build now (and say where, and how long it took)
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import torch
from torch import Tensor

__all__ = ["multi_flow_warp", "fgdf_taps", "available", "why_not", "prepare", "build", "kernels_folder", "describe"]

_CSRC = Path(__file__).resolve().parent / "csrc"
_SOURCES = [_CSRC / name for name in ("module.cpp", "multi_flow_warp.cpp", "fgdf_taps.cpp")]
_HEADERS = [_CSRC / "common.h"]
# -ffp-contract=off: no fused multiply-adds the code does not ask for, so the warp's sums round as
# grid_sample's do.
_FLAGS = ["-O3", "-ffp-contract=off"]
# The vector instructions to compile for: those of torch's own CPU dispatch on this machine (a
# cache shared by machines with other CPUs gets one build per level, by the build's name).
_ISA_FLAGS = {"AVX512": ["-mavx2", "-mfma", "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq"],
              "AVX2": ["-mavx2", "-mfma"]}


_lock = threading.Lock()
_state: dict[str, object] = {}  # "module": the loaded extension, or "error": why there is none


def _flags() -> list[str]:
    return _FLAGS + _ISA_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])


def _turned_off() -> bool:
    return os.environ.get("VSRDB_KERNELS", "1") == "0"


def kernels_folder() -> Path:
    """Where builds are cached: ``$VSRDB_KERNELS_DIR``, else ``$XDG_CACHE_HOME/vsrdb/kernels`` or
    ``~/.cache/vsrdb/kernels``."""
    if os.environ.get("VSRDB_KERNELS_DIR"):
        return Path(os.environ["VSRDB_KERNELS_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "vsrdb" / "kernels"


def _name() -> str:
    """The build's name: a digest of everything that changes the binary, so a stale or foreign
    build is never loaded under a new source, torch or Python."""
    key = hashlib.sha256()
    sources = [path.read_bytes() for path in _SOURCES + _HEADERS]
    for part in (*sources, torch.__version__.encode(), sys.version.encode(), " ".join(_flags()).encode()):
        key.update(part)
    return f"vsrdb_kernels_{key.hexdigest()[:16]}"


def _built_library() -> Path:
    """Where this build's library is (or will be) in the cache."""
    name = _name()
    return kernels_folder() / name / f"{name}.so"


def _private_folder(folder: Path) -> None:
    """Create ``folder`` (mode 700) or check that it is this user's alone; ``OSError`` if not."""
    from ..files import not_private

    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    problem = not_private(folder)
    if problem:
        raise OSError(f"not loading vsrdb's kernels from {folder}: {problem}")


def build(verbose: bool = False) -> ModuleType:
    """Compile (or load the cached build of) the kernels; raises on any failure."""
    from torch.utils.cpp_extension import load

    name = _name()
    folder = kernels_folder() / name
    _private_folder(kernels_folder())  # the builds' parent too: whoever can write it can swap a build
    _private_folder(folder)
    return load(name=name, sources=[str(path) for path in _SOURCES], extra_cflags=_flags(), build_directory=str(folder),
                verbose=verbose)


def _module() -> ModuleType | None:
    if "module" in _state or "error" in _state:
        return _state.get("module")  # type: ignore[return-value]
    with _lock:
        if "module" in _state or "error" in _state:
            return _state.get("module")  # type: ignore[return-value]
        if _turned_off():
            _state["error"] = "VSRDB_KERNELS=0"
            return None
        try:
            _state["module"] = build()
        except Exception as e:  # no compiler, no ninja, a failed build: the PyTorch forms run
            _state["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    return _state.get("module")  # type: ignore[return-value]


def prepare(note: Callable[[str], None] | None = None) -> bool:
    """Build or load the kernels now, before any frame (so that a first build is not hidden in the
    first frame's time); ``note`` hears one line before a build. Returns ``available()``."""
    if note is not None and not _state and not _turned_off() and not _built_library().is_file():
        note(f"compiling vsrdb's CPU kernels into {kernels_folder()} (once; about half a minute)")
    return available()


def describe() -> str:
    """One line on the kernels' state, without building them (``vsrdb info``)."""
    if _turned_off():
        return "off (VSRDB_KERNELS=0): PyTorch's forms run"
    if "error" in _state:
        return f"not in use ({_state['error']}): PyTorch's forms run"
    built = _built_library()
    if built.is_file():
        return f"built, {built}"
    import shutil

    missing = [tool for tool in ("c++", "ninja") if shutil.which(tool) is None]
    if missing:
        return f"cannot be built here (no {' or '.join(missing)} on PATH): PyTorch's forms run"
    return f"not built yet: the first vsrdb restore on a CPU compiles them into {kernels_folder()} (about half a minute)"


def available() -> bool:
    """Whether the kernels are built and loaded (building them now if needed)."""
    return _module() is not None


def why_not() -> str | None:
    """Why the kernels are not in use, or None when they are."""
    _module()
    return _state.get("error")  # type: ignore[return-value]


def multi_flow_warp() -> Callable[[Tensor, Tensor, int], Tensor] | None:
    """The one-pass warp ``(frames [N, C, H, W] channels-last fp32/bf16, flow_mask [N, 3n, H, W]
    fp32 in any layout, n) -> [N, C, H, W]`` channels-last, or None where the kernels are not there."""
    module = _module()
    return None if module is None else module.multi_flow_warp


def fgdf_taps() -> Callable[[Tensor, Tensor, Tensor, Tensor, Tensor, int, int, bool, int], None] | None:
    """ops/csrc/fgdf_taps.cpp, or None where the kernels are not there: ``(frame [B, C, u*h, u*w]
    fp32/bf16, logits [B, (u*s)^2 k^2, h, w] fp32/bf16 channels-last, acc [B, C, u*s*h, u*s*w],
    ksum [B, u*s*h, u*s*w], psum [B, C, u*s*h, u*s*w], u, s, first, n)`` writes (first) or adds one
    frame's FGDF upsampling sums to acc, ksum and psum (fp32, contiguous); with n > 0 (the last
    frame; T*k^2) it writes the normalised output into acc instead."""
    module = _module()
    return None if module is None else module.fgdf_taps_accumulate


if __name__ == "__main__":
    start = time.perf_counter()
    try:
        built = build(verbose="-v" in sys.argv)
    except Exception as e:
        sys.exit(f"vsrdb kernels: not built: {e}")
    print(f"vsrdb kernels: {built.__file__} ({time.perf_counter() - start:.1f} s)")
