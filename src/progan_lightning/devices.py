"""The device a ``device`` setting names: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``,
resolved and checked in one place for every command (generate, evaluate, the benchmark)."""

from __future__ import annotations

import torch


def auto_device_type() -> str:
    """``cuda`` when a CUDA GPU is there, else ``cpu``: what ``auto`` means."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(value: str, setting: str = "device") -> torch.device:
    """The device that ``device=value`` names: ``auto`` is CUDA when a GPU is there, else
    the CPU.

    Raises:
        ValueError: not a device name, or a GPU that this machine does not have; the message
            names the value and what to use instead.
    """
    if value == "auto":
        return torch.device(auto_device_type())
    try:
        device = torch.device(value)
    except (RuntimeError, TypeError):
        raise ValueError(
            f"{setting}={value} is not a device; use auto, cpu, cuda or cuda:N (N: a GPU's index)"
        ) from None
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(
                f"{setting}={value}, but there is no CUDA GPU here (torch {torch.__version__}, "
                f"CUDA {torch.version.cuda or 'not built in'}); use {setting}=cpu or "
                f"{setting}=auto"
            )
        if device.index is not None and device.index >= count:
            raise ValueError(
                f"{setting}={value}, but there are {count} GPUs (cuda:0..cuda:{count - 1}); "
                f"use one of them or {setting}=auto"
            )
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"{setting}={value}, but MPS is not available here; use {setting}=cpu")
    return device
