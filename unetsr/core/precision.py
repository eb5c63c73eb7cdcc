"""Number formats for training and inference: bfloat16 where the processor has native support
(AVX512-BF16 or AMX on x86 CPUs, most CUDA GPUs), float16 on older GPUs, float32 otherwise."""

from __future__ import annotations

import functools
import warnings
from contextlib import nullcontext
from typing import TYPE_CHECKING, ContextManager

if TYPE_CHECKING:  # torch is imported where it is used, so the names below cost nothing to import (--help)
    import torch

PRECISIONS = ("auto", "bf16", "fp16", "fp32")
"""Every number format a run can ask for; `auto` picks one for the device (`resolve_precision`)."""


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when this CPU computes bfloat16 natively (AVX512-BF16 or AMX-BF16), as torch or /proc/cpuinfo says."""
    import torch

    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return bool(found.get("avx512_bf16") or found.get("amx_bf16"))
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("avx512_bf16", "amx_bf16"))


def resolve_precision(name: str, device: torch.device, half: bool = False) -> str:
    """'auto' -> the fastest safe format for `device` ('bf16', 'fp16' or 'fp32'); others checked and kept.
    The one rule for training and inference alike. `half` (the old --half) asks for fp16 on a GPU and is
    ignored, with a warning, on the CPU."""
    import torch

    if half and device.type == "cpu":
        warnings.warn("half (float16) is for GPUs and is ignored on the CPU", stacklevel=3)
    elif half:
        return "fp16"
    if name not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {name!r}")
    if name != "auto":
        if name == "fp16" and device.type == "cpu":
            raise ValueError("fp16 is for GPUs; on a CPU use bf16 or fp32")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device.type == "cpu":  # bf16 convolutions are oneDNN's: without it bf16 would be slower than fp32
        return "bf16" if cpu_has_bf16() and torch.backends.mkldnn.is_available() else "fp32"
    return "fp32"


def autocast(device: torch.device, precision: str) -> ContextManager:
    """Mixed precision for `precision` on `device` (weights stay float32); a no-op for fp32."""
    import torch

    if precision == "fp32":
        return nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def memory_format(device: torch.device) -> torch.memory_format:
    """channels_last on CPUs (oneDNN's convolutions are faster in it), contiguous elsewhere."""
    import torch

    return torch.channels_last if device.type == "cpu" else torch.contiguous_format
