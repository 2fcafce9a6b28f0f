"""Where to run: the ``auto`` device choice and the memory a device has free."""

from __future__ import annotations

import torch

from .errors import InputError

__all__ = ["pick_device", "available_memory"]


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
