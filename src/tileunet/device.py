"""Where and how the network runs: device, autocast dtype and memory layout.

Every decision that depends on the hardware lives here, each in one small function of
a :class:`torch.device`, so that training, prediction, the block-wise path and the napari
plugin make the same choice, and so that tests can exercise both branches of each
decision on any machine (by passing ``torch.device("cuda")``, which needs no GPU to
exist, or by replacing :func:`cpu_has_native_bf16`).

Precision
---------
``"auto"`` runs the network under :func:`torch.autocast` with bfloat16 where the
hardware computes in bf16 natively (CUDA GPUs that support it; CPUs with AVX512-BF16,
AMX or Arm BF16 instructions), and in float32 elsewhere, where bf16 would be emulated
and slower than float32. bf16 keeps 8 significant bits (unit roundoff ``2**-8``), so
results under ``"auto"`` differ between the two kinds of machine; ``"fp32"`` gives the
same numbers on both (up to float32 rounding).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "auto")
#: CPU flags (``/proc/cpuinfo``) of instructions that compute in bf16 natively.
BF16_CPU_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``None`` or ``"auto"``: the first GPU when PyTorch sees one, else the CPU."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def bf16_from_cpu_flags(flags: frozenset[str] | set[str], onednn_bf16: bool) -> bool:
    """Native bf16 when oneDNN says it can use bf16 and the CPU lists a bf16 flag."""
    return onednn_bf16 and bool(set(flags) & BF16_CPU_FLAGS)


@functools.lru_cache(maxsize=1)
def detect_cpu_bf16() -> bool:
    """Read this machine's answer (``/proc/cpuinfo`` and oneDNN), once per process."""
    try:
        onednn = (torch.backends.mkldnn.is_available()
                  and bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()))
    except (AttributeError, RuntimeError):
        onednn = False
    try:
        flags = frozenset(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        flags = frozenset()
    return bf16_from_cpu_flags(flags, onednn)


def cpu_has_native_bf16() -> bool:
    """True on CPUs with bf16 instructions (x86 AVX512-BF16 / AMX, Arm BF16) that
    PyTorch's oneDNN backend uses. Every decision asks here (tests replace it)."""
    return detect_cpu_bf16()


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None: no autocast)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
        if device.type == "cpu":
            return torch.bfloat16 if cpu_has_native_bf16() else None
        return None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"precision='bf16' needs a cpu or cuda device, got {device}")
    if device.type == "cpu" and not cpu_has_native_bf16():
        logger.warning("bf16 on a CPU without native bf16 support can be far slower than "
                       "fp32; precision='auto' would use fp32 here")
    return torch.bfloat16


@contextlib.contextmanager
def strict_fp32(device: torch.device) -> Iterator[None]:
    """Switch TF32 convolutions off on CUDA for the duration, then restore the setting.

    PyTorch lets cuDNN run float32 convolutions in TF32 (10-bit mantissa) by default,
    which makes tiles disagree with each other at the 1e-3 level; ``precision="fp32"``
    means float32.
    """
    if device.type != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # PyTorch >= 2.9
        old = conv.fp32_precision
        conv.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision = old
    else:
        old = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32 = old


def inference_channels_last(device: torch.device, dtype: torch.dtype) -> bool:
    """Channels-last convolutions are faster for inference on CPUs (oneDNN) and GPUs
    (cuDNN), for float32 and the half-precision types."""
    return device.type in ("cpu", "cuda") and dtype in (torch.float32, torch.bfloat16,
                                                          torch.float16)


def training_memory_format(device: torch.device, amp: torch.dtype | None = None
                           ) -> torch.memory_format:
    """Channels-last on CUDA (cuDNN's fastest convolutions) and for bf16 training on a
    CPU (oneDNN's bf16 kernels prefer it); NCHW for float32 training on a CPU, where
    oneDNN's channels-last backward pass is slower (``benchmarks/bench_train.py``)."""
    if device.type == "cuda" or (device.type == "cpu" and amp == torch.bfloat16):
        return torch.channels_last
    return torch.contiguous_format


def available_memory(device: torch.device) -> int:
    """Bytes a computation on ``device`` can still use: the free memory of a GPU; on a
    CPU the kernel's estimate of memory available without swapping (``MemAvailable``),
    or the physical memory where that is not known."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


__all__ = ["BF16_CPU_FLAGS", "PRECISIONS", "autocast_dtype", "available_memory",
           "bf16_from_cpu_flags",
           "cpu_has_native_bf16", "detect_cpu_bf16",
           "inference_channels_last", "resolve_device", "strict_fp32",
           "training_memory_format"]
