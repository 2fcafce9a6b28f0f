"""Numeric precision of a run: fp32, bf16 or fp16, chosen from what the hardware does natively.

``--precision auto`` (the CLI default) picks bf16 on CPUs where oneDNN runs bf16 natively
(AVX512-BF16 or AMX-BF16: several times fp32's matmul rate), bf16 on GPUs that support it
(else fp16), and fp32 everywhere else. fp32 is the path that matches the authors' release
bit for bit; the low-precision paths keep the weights and feature maps in bf16/fp16 while
flow offsets, warping, kernel normalisation and the image-space sums stay in fp32 (see
``vsrdb.models.blocks.compute_dtype``).
"""

from __future__ import annotations

import platform
from dataclasses import dataclass

import torch

from .errors import InputError

__all__ = ["PRECISIONS", "DTYPES", "Precision", "resolve_precision", "cpu_capabilities", "cpu_name",
           "describe_cpu"]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass(frozen=True)
class Precision:
    """The resolved choice: ``name`` (fp32/bf16/fp16), its dtype and why it was chosen."""

    name: str
    reason: str

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.name]

    def describe(self) -> str:
        return f"precision {self.name} ({self.reason})"


def cpu_name() -> str:
    """The CPU's model name (for benchmark tables), or the platform's processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def cpu_capabilities() -> dict[str, bool | str]:
    """What this CPU does natively, as torch and oneDNN report it."""
    cpu = torch.cpu
    mkldnn = torch.backends.mkldnn.is_available()
    return {
        "isa": torch.backends.cpu.get_cpu_capability(),
        "avx512_bf16": bool(getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()),
        "amx": bool(getattr(cpu, "_is_amx_tile_supported", lambda: False)()),
        # oneDNN's own verdict: what auto goes by.
        "bf16": bool(mkldnn and torch.ops.mkldnn._is_mkldnn_bf16_supported()),
        "fp16": bool(mkldnn and torch.ops.mkldnn._is_mkldnn_fp16_supported()),
    }


def describe_cpu() -> str:
    """One line for benchmark output: the CPU's name and what it runs natively."""
    caps = cpu_capabilities()
    return (f"{cpu_name()}; ISA {caps['isa']}, AVX512-BF16 {caps['avx512_bf16']}, AMX {caps['amx']}, "
            f"oneDNN bf16 {caps['bf16']}")


def _cpu_feature_text(caps: dict) -> str:
    if caps["amx"]:
        return "AMX-BF16"
    if caps["avx512_bf16"]:
        return "AVX512-BF16, no AMX"
    return "native bf16" if caps["bf16"] else "no native bf16"


def resolve_precision(name: str, device: torch.device | str, *, capabilities: dict | None = None) -> Precision:
    """``auto``/``fp32``/``bf16``/``fp16`` on ``device`` -> a Precision.

    ``capabilities`` overrides the CPU query (for tests). Raises InputError for an unknown
    name or fp16 on a CPU (its features overflow there: NaN frames, whatever the CPU).
    """
    name = (name or "auto").lower()
    if name not in PRECISIONS:
        raise InputError(f"unknown precision {name!r} (use one of {', '.join(PRECISIONS)})")
    device = torch.device(device)
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported() if capabilities is None else bool(capabilities.get("bf16"))
        if name == "auto":
            return Precision("bf16", "GPU supports bf16") if bf16 else Precision("fp16", "GPU without bf16")
        if name == "bf16" and not bf16:
            raise InputError(f"precision bf16: {device} does not support bf16; use fp16 or fp32")
        return Precision(name, "chosen")
    if device.type != "cpu":  # MPS and others: bf16 support varies, so auto stays fp32
        return Precision("fp32", f"{device.type}: fp32") if name == "auto" else Precision(name, "chosen")
    caps = cpu_capabilities() if capabilities is None else capabilities
    feature = _cpu_feature_text(caps)
    if name == "auto":
        if caps.get("bf16"):
            return Precision("bf16", f"CPU with {feature}")
        return Precision("fp32", f"CPU with {feature}")
    if name == "fp16":
        # Even with native fp16 the features overflow fp16's range on a CPU (PyTorch's CPU
        # kernels have no fp16 safeguards), and the result is NaN frames: refused up front.
        native = "has native fp16, but" if caps.get("fp16") else "has no native fp16, and"
        raise InputError(f"precision fp16 is for GPUs: this CPU {native} the models' features overflow fp16 "
                         "on CPU; use bf16 (half the memory, same range as fp32) or fp32")
    if name == "bf16" and not caps.get("bf16"):
        return Precision("bf16", f"CPU with {feature}: emulated, slower than fp32")
    return Precision(name, "chosen")
