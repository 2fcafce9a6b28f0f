"""Where to run: the ``auto`` device choice, the memory a device has free, and the CPU allocator tuning."""

from __future__ import annotations

import os
import sys

import torch

from .errors import InputError

__all__ = ["pick_device", "available_memory", "use_heap_allocator", "release_free_memory"]


def pick_device(name: str = "auto", *, local_rank: int | None = None) -> torch.device:
    """``auto``: CUDA, else Apple MPS, else CPU. ``local_rank``: under torchrun, that GPU.

    Raises InputError for a name torch does not know or a device this build or machine lacks."""
    if name != "auto":
        try:
            device = torch.device(name)
        except (RuntimeError, ValueError):
            raise InputError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)") from None
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise InputError(f"device {name!r}: this PyTorch build or machine has no CUDA GPU "
                                 f"(torch {torch.__version__}); use --device cpu")
            if device.index is None and local_rank is not None:
                device = torch.device("cuda", local_rank)
            if (device.index or 0) >= torch.cuda.device_count():
                raise InputError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
        elif device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"device {name!r}: MPS is not available here")
        elif device.type not in ("cpu", "cuda", "mps"):
            raise InputError(f"unknown device {name!r} (use auto, cpu, cuda, cuda:N or mps)")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank or 0)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def available_memory(device: torch.device) -> int:
    """Bytes this process may still use on ``device`` (free GPU memory, or MemAvailable)."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 8 << 30


# ---------------------------------------------------------------- the CPU allocator

_LIBC = None


def release_free_memory() -> None:
    """Return freed heap pages to the OS between tiles (see ``use_heap_allocator``); the Restorer calls it.

    With the heap allocator, memory freed by one tile stays resident; trimming between
    tiles keeps peak RSS near the live set of one tile, for the price of faulting those
    pages in again (a few hundred ms against seconds of compute per tile).
    """
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


def use_heap_allocator() -> None:
    """Keep freed tensor memory for reuse instead of returning it to the OS.

    glibc serves blocks over 32 MB with fresh mmap()s whose pages the kernel zeroes on first
    touch; a forward pass allocates and frees hundreds of such activations, and the page
    faults cost about a third of CPU inference time. Serving them from the heap removes that.
    """
    if sys.platform != "linux" or os.environ.get("VSRDB_KEEP_MALLOC"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4
        libc.mallopt(m_mmap_max, 0)
        libc.mallopt(m_trim_threshold, 1 << 30)
    except (OSError, AttributeError):
        return
    global _LIBC
    _LIBC = libc
