"""Timing: repeated calls timed into medians and spreads, and the dense matmul peak.

The clock is ``torch.utils.benchmark``'s (:func:`torch.utils.benchmark.timer`: it waits for
the accelerator's queued work, then reads the wall clock). The repeats are laid out here, not
by its ``Timer``: ``Timer.timeit`` runs its own untimed warm-up before every measurement
(at least two more calls: three training steps for each timed one when a step outlasts
``bench.min_repeat_s``), and ``Timer.blocked_autorange`` picks its own number of blocks,
whereas the reported spread is over exactly ``bench.repeats`` repeats of at least
``bench.min_repeat_s`` each, after ``bench.warmup`` untimed calls.

The peak is the reference of the utilization column: step FLOPs / median step time / the
peak of the step's compute dtype, timed in the same run.
"""

from __future__ import annotations

import logging
import math
import platform
import statistics
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from torch.utils.benchmark import timer

log = logging.getLogger(__name__)

# Matmul side used for the peak when ``bench.matmul_size`` is null.
DEFAULT_MATMUL_SIZE = {"cpu": 4096, "cuda": 8192}

# Matmul peak name -> (dtype, TF32 allowed).
PEAK_DTYPES: dict[str, tuple[torch.dtype, bool]] = {
    "fp32": (torch.float32, False),
    "tf32": (torch.float32, True),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
}


def summarize(values: list[float]) -> dict[str, float]:
    """Median, interquartile range, min and max of repeated measurements."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "iqr": q3 - q1,
        "min": ordered[0],
        "max": ordered[-1],
    }


def device_name(device: torch.device) -> str:
    """A human-readable name of the processor behind ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def sync(device: torch.device) -> None:
    """Wait for the device to finish its queued work (a no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int,
    repeats: int,
    min_repeat_s: float,
) -> tuple[list[float], int]:
    """Seconds per call of ``fn``, one value per repeat.

    After ``warmup`` calls, one timed call sets how many calls a repeat makes so that each
    repeat lasts at least ``min_repeat_s`` (short steps are timed in bunches).

    Returns:
        Seconds per call for each repeat, and the calls per repeat.
    """
    with torch.cuda.device(device) if device.type == "cuda" else nullcontext():
        for _ in range(warmup):
            fn()
        start = timer()
        fn()
        once = timer() - start
        calls = max(1, math.ceil(min_repeat_s / max(once, 1e-9)))
        seconds = []
        for _ in range(repeats):
            start = timer()
            for _ in range(calls):
                fn()
            seconds.append((timer() - start) / calls)
    return seconds, calls


def matmul_peak(
    device: torch.device,
    size: int,
    dtype: torch.dtype,
    repeats: int,
    min_repeat_s: float,
    allow_tf32: bool = False,
) -> float:
    """Median FLOP/s of a dense ``size x size`` matmul (``2 * size**3`` FLOPs per call).

    Args:
        device: Where to multiply.
        size: Side of the square matrices.
        dtype: Element type (float32, bfloat16, ...).
        repeats: Timed repeats; the median is returned.
        min_repeat_s: Shortest repeat; fast matmuls are timed in bunches.
        allow_tf32: On CUDA, let float32 matmuls use TF32 tensor cores.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    try:
        seconds, _ = time_calls(lambda: a @ b, device, 1, repeats, min_repeat_s)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * size**3 / statistics.median(seconds)


def format_rate(flop_s: float) -> str:
    """A FLOP rate in GFLOP/s or, from 1000 GFLOP/s on, TFLOP/s."""
    return f"{flop_s / 1e12:.1f} TFLOP/s" if flop_s >= 1e12 else f"{flop_s / 1e9:.1f} GFLOP/s"


def peak_reference(device: torch.device, precision: str) -> str:
    """The matmul peak the step is compared with: its compute dtype (on CUDA TF32 for
    float32 when cuDNN allows it). fp16 on the CPU is compared with fp32: CPU fp16 matmuls
    are not a reference (hundreds of times slower than fp32 where no fp16 units exist)."""
    if device.type == "cuda":
        if precision != "fp32":
            return precision
        return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return "bf16" if precision == "bf16" else "fp32"


def measure_peaks(
    device: torch.device, size: int, bench: DictConfig, reference: str
) -> dict[str, float]:
    """Dense ``size x size`` matmul peaks in FLOP/s: fp32, on CUDA also TF32 and bf16, and
    the ``reference`` one."""
    names = ["fp32", "tf32", "bf16"] if device.type == "cuda" else ["fp32"]
    names += [] if reference in names else [reference]
    timing = (bench.repeats, bench.min_repeat_s)
    peaks = {}
    for name in names:
        dtype, tf32 = PEAK_DTYPES[name]
        peaks[name] = matmul_peak(device, size, dtype, *timing, allow_tf32=tf32)
    log.info(
        "Matmul peak (%dx%d): %s",
        size,
        size,
        ", ".join(f"{k} {format_rate(v)}" for k, v in peaks.items()),
    )
    return peaks
