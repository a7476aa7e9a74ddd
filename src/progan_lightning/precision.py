"""Precision policy: which dtype the training step runs in on which device, and the float32
matmul setting (``model.precision``, ``backend.float32_matmul_precision``)."""

from __future__ import annotations

import functools
from typing import Any

import torch

PRECISIONS: dict[str, torch.dtype | None] = {
    "fp32": None,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
"""``model.precision`` -> autocast dtype of the training step (None: plain float32)."""

AUTO_PRECISION = "auto"
"""``model.precision=auto``: bf16 where the device computes it natively, else fp32 (see
:func:`resolve_precision`)."""

NATIVE_BF16_CPU_FEATURES = ("avx512_bf16", "amx_bf16")
"""``torch.cpu.get_capabilities()`` flags of x86 CPUs with bf16 arithmetic units."""

FP16_PIXEL_NORM_EPS = 1e-4
"""Pixel-norm epsilon of the official fp16 preset (1e-8 underflows in float16)."""

MATMUL_PRECISIONS = ("highest", "high", "medium")


def float32_matmul_precision(setting: str | None, device_type: str) -> str:
    """The ``torch.set_float32_matmul_precision`` value for ``backend.float32_matmul_precision``.

    Args:
        setting: ``highest`` (full float32), ``high`` (TF32 on Ampere+ GPUs), ``medium``, or
            None for the default: ``high`` on CUDA (cuDNN convolutions use TF32 there
            already), ``highest`` elsewhere.
        device_type: ``cuda``, ``cpu``, ...
    """
    if setting is None:
        return "high" if device_type == "cuda" else "highest"
    if setting not in MATMUL_PRECISIONS:
        raise ValueError(
            f"backend.float32_matmul_precision={setting!r}; use one of "
            f"{', '.join(MATMUL_PRECISIONS)} or null"
        )
    return setting


@functools.cache
def cpu_capabilities() -> dict[str, Any]:
    """``torch.cpu.get_capabilities()``; on older torch (before the public call) the bf16
    flags from torch's private checks, False where those are missing too."""
    get = getattr(torch.cpu, "get_capabilities", None)
    if get is not None:
        return dict(get())
    unknown = lambda: False  # noqa: E731
    return {
        "avx512_bf16": getattr(torch.cpu, "_is_avx512_bf16_supported", unknown)(),
        "amx_bf16": getattr(torch.cpu, "_is_amx_tile_supported", unknown)(),
    }


def cpu_has_native_bf16(capabilities: dict[str, Any] | None = None) -> bool:
    """Whether the CPU has bf16 arithmetic units (AVX512-BF16 or AMX-BF16).

    Without them oneDNN emulates bf16 in float32 registers: 3.6x slower than float32 on an
    AVX2 CPU, where with them the quickstart's 32x32 step is 1.45x faster
    (benchmarks/results.md, "Speed switches on the CPU").

    Args:
        capabilities: The CPU's feature flags (:func:`cpu_capabilities` when None).
    """
    caps = cpu_capabilities() if capabilities is None else capabilities
    return any(bool(caps.get(flag)) for flag in NATIVE_BF16_CPU_FEATURES)


def resolve_precision(
    setting: str, device_type: str, capabilities: dict[str, Any] | None = None
) -> str:
    """The precision the training step runs in: ``setting`` itself, or for ``auto`` ``bf16``
    on a CPU with bf16 units (:func:`cpu_has_native_bf16`) and ``fp32`` everywhere else.

    On CUDA ``auto`` stays ``fp32``: convolutions already take the TF32 tensor-core path there
    (``backend.float32_matmul_precision``), and bf16 autocast scored no better than fp32
    (benchmarks/results.md, "bf16 against fp32").

    Args:
        setting: ``model.precision`` (``fp32``, ``bf16``, ``fp16`` or ``auto``).
        device_type: ``cpu``, ``cuda``, ...
        capabilities: The CPU's feature flags (:func:`cpu_capabilities` when None).
    """
    if setting != AUTO_PRECISION:
        return setting
    if device_type == "cpu" and cpu_has_native_bf16(capabilities):
        return "bf16"
    return "fp32"
