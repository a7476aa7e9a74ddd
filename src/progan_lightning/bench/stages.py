"""The ``stages`` part: the training step and G inference per stage resolution.

Per stage: train img/s (median, IQR, min-max over the repeats), the step's FLOPs counted at
the dispatch level (:mod:`progan_lightning.bench.flops`), GFLOP/s and utilization against the
dense matmul peak timed before and after the stages, G_ema inference img/s and peak memory.
"""

from __future__ import annotations

import logging
import statistics
from datetime import date
from typing import Any

import hydra
import torch
from omegaconf import DictConfig

from progan_lightning.bench.flops import count_flops
from progan_lightning.bench.memory import PeakMemory
from progan_lightning.bench.step import fake_reals, make_train_step, set_stage
from progan_lightning.bench.timing import (
    DEFAULT_MATMUL_SIZE,
    device_name,
    format_rate,
    measure_peaks,
    peak_reference,
    summarize,
    sync,
    time_calls,
)
from progan_lightning.module import ProGAN
from progan_lightning.precision import resolve_precision

log = logging.getLogger(__name__)

FADE_ALPHA = 0.5
"""Fade weight of the fading step: any alpha below 1 runs both paths and the real fade."""

# Columns of the markdown table: (header, row key, format).
TABLE_COLUMNS = [
    ("res", "resolution", "{}"),
    ("batch", "batch", "{}"),
    ("train img/s", "train_img_s", "{:.1f}"),
    ("IQR", "train_img_s_iqr", "{:.1f}"),
    ("min-max", None, "{train_img_s_min:.1f}-{train_img_s_max:.1f}"),
    ("step ms", "train_step_ms", "{:.1f}"),
    ("GFLOP/img", "gflop_per_img", "{:.3f}"),
    ("GFLOP/s", "train_gflop_s", "{:.1f}"),
    ("util", "utilization", "{:.1%}"),
    ("G infer img/s", "g_infer_img_s", "{:.0f}"),
    ("peak MB", "peak_mem_mb", "{:.0f}"),
]


def bench_stage(
    module: ProGAN,
    resolution: int,
    batch: int,
    bench: DictConfig,
    device: torch.device,
    memory: PeakMemory,
    alpha: float,
) -> dict[str, Any]:
    """Measure the training step and G inference at one resolution and fade weight.

    Returns:
        A row of results (speeds, FLOPs, peak memory) without the device-wide fields.
    """
    set_stage(module, resolution, alpha)
    step = make_train_step(module, fake_reals(module, resolution, batch, device))

    # Count the FLOPs once (this also creates the optimizer state), then time.
    flops = count_flops(step)
    sync(device)
    memory.reset()
    step_s, calls = time_calls(step, device, bench.warmup, bench.repeats, bench.min_repeat_s)
    peak_mb = memory.peak_mb()

    z = torch.randn(batch, module.G.z_dim, device=device)
    with torch.inference_mode(), module.autocast():
        infer_s, _ = time_calls(
            lambda: module(z), device, bench.warmup, bench.repeats, bench.min_repeat_s
        )

    train = summarize([batch / s for s in step_s])
    infer = summarize([batch / s for s in infer_s])
    median_step = statistics.median(step_s)
    log.info(
        "%dx%d batch %d alpha %g: %.1f img/s train (%.1f GFLOP/s), %.0f img/s G inference",
        resolution,
        resolution,
        batch,
        alpha,
        train["median"],
        flops / median_step / 1e9,
        infer["median"],
    )
    return {
        "resolution": resolution,
        "stage": module.stage,
        "alpha": module.alpha,
        "batch": batch,
        "train_img_s": train["median"],
        "train_img_s_iqr": train["iqr"],
        "train_img_s_min": train["min"],
        "train_img_s_max": train["max"],
        "train_step_ms": median_step * 1e3,
        "steps_per_repeat": calls,
        "g_infer_img_s": infer["median"],
        "g_infer_img_s_iqr": infer["iqr"],
        "g_infer_img_s_min": infer["min"],
        "g_infer_img_s_max": infer["max"],
        "gflop_per_img": flops / batch / 1e9,
        "train_gflop_s": flops / median_step / 1e9,
        "peak_mem_mb": peak_mb,
        "precision": module.active_precision,
        "channels_last": module.channels_last,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


def measure_stages(cfg: DictConfig, device: torch.device, batches: dict[int, int]) -> list[dict]:
    """Every stage between two matmul-peak measurements: the rows of the ``stages`` part.

    The peak is timed before and after the stages and the higher of the two is used, so that
    a burst of load from other processes lowers the utilization rather than inflating it.
    """
    bench = cfg.bench
    size = bench.matmul_size or DEFAULT_MATMUL_SIZE.get(device.type, 4096)
    precision = resolve_precision(cfg.model.get("precision", "fp32"), device.type)
    reference = peak_reference(device, precision)
    before = measure_peaks(device, size, bench, reference)
    module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
    memory = PeakMemory(device)
    stages = [
        bench_stage(module, resolution, batch, bench, device, memory, bench.alpha)
        for resolution, batch in batches.items()
    ]
    after = measure_peaks(device, size, bench, reference)
    peaks = {k: max(before[k], after[k]) for k in before}
    common = {
        "device_kind": device.type,
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul_size": size,
        "matmul_tflop_s": {k: v / 1e12 for k, v in peaks.items()},
        "matmul_tflop_s_before": {k: v / 1e12 for k, v in before.items()},
        "matmul_tflop_s_after": {k: v / 1e12 for k, v in after.items()},
        "matmul_peak_dtype": reference,
        "peak_mem_kind": memory.kind,
        "warmup": bench.warmup,
        "repeats": bench.repeats,
    }
    return [
        {**common, **stage, "utilization": stage["train_gflop_s"] * 1e9 / peaks[reference]}
        for stage in stages
    ]


def measure_fading(
    cfg: DictConfig, device: torch.device, batches: dict[int, int]
) -> list[dict[str, Any]]:
    """The step of a fade-in phase (:data:`FADE_ALPHA`) at each resolution of ``batches``, on a
    fresh model: rows like :func:`bench_stage`'s, without the device-wide fields."""
    module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
    memory = PeakMemory(device)
    return [
        bench_stage(module, resolution, batch, cfg.bench, device, memory, FADE_ALPHA)
        for resolution, batch in batches.items()
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| " + " | ".join(h for h, _, _ in TABLE_COLUMNS) + " |",
        "|" + "|".join("---:" for _ in TABLE_COLUMNS) + "|",
    ]
    for row in rows:
        cells = [
            fmt.format(row[key]) if key else fmt.format(**row) for _, key, fmt in TABLE_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_section(rows: list[dict[str, Any]], command: str) -> str:
    """The notes section for one device kind: header, command, peak, table."""
    first = rows[0]
    peaks = ", ".join(
        f"{dtype} {format_rate(tflop_s * 1e12)}"
        for dtype, tflop_s in first["matmul_tflop_s"].items()
    )
    return "\n".join(
        [
            f"### {first['device_kind'].upper()}: {first['device']}",
            "",
            f"{date.today().isoformat()}, torch {first['torch']}, {first['threads']} threads, "
            f"alpha {first['alpha']:g}.",
            "",
            "```",
            command,
            "```",
            "",
            f"Dense matmul peak ({first['matmul_size']}x{first['matmul_size']}, median of the "
            f"repeats, higher of before and after the stages): {peaks}."
            f" Utilization is against {first['matmul_peak_dtype']}."
            f" Memory: {first['peak_mem_kind']}.",
            "",
            format_table(rows),
        ]
    )
