"""``run(cfg)``: the parts of ``bench.parts`` in turn; their JSON files and markdown sections
written only where ``bench.out`` and ``bench.notes`` name a file."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from progan_lightning.bench.data import data_section
from progan_lightning.bench.memory import (
    computed_memory_table,
    format_memory_section,
    measured_memory_table,
)
from progan_lightning.bench.plan import check_bench, device_schedules, stage_batches
from progan_lightning.bench.projection import Rate, format_projection, project
from progan_lightning.bench.report import command_line, update_notes
from progan_lightning.bench.stages import (
    FADE_ALPHA,
    format_section,
    format_table,
    measure_fading,
    measure_stages,
)
from progan_lightning.bench.timing import device_name
from progan_lightning.devices import resolve_device
from progan_lightning.precision import float32_matmul_precision
from progan_lightning.schedule import GrowthSchedule

log = logging.getLogger(__name__)


def projection_part(
    cfg: DictConfig,
    device: torch.device,
    batches: dict[int, int],
    stages: list[dict[str, Any]],
    schedules: dict[int, tuple[str, GrowthSchedule]],
    command: str,
) -> tuple[list[dict[str, Any]], str]:
    """Time the fading step where the schedules fade, then project every schedule.

    Returns:
        One row per (device count, phase) and the markdown section.
    """
    fading = {p.resolution for _, s in schedules.values() for p in s.phases if p.fading}
    fades = measure_fading(cfg, device, {r: b for r, b in batches.items() if r in fading})
    rates = {
        (row["resolution"], row["alpha"] < 1): Rate(row["train_img_s"], row["batch"])
        for row in [*stages, *fades]
    }
    projections = {
        n: project(schedule.phases, schedule.total_nimg, n, rates)
        for n, (_, schedule) in schedules.items()
    }
    rows = [
        {**asdict(t), "converted": t.converted} for times in projections.values() for t in times
    ]
    title = f"{device.type.upper()}: {device_name(device)}"
    names = {n: name for n, (name, _) in schedules.items()}
    section = format_projection(projections, rates, names, title, command, FADE_ALPHA)
    return rows, section


def run(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """Run the parts of ``bench.parts``; write their JSON files and markdown sections only
    where the user asked (``bench.out``, ``bench.notes``: relative paths are taken from the
    working directory), and nothing else.

    Args:
        cfg: The composed ``bench`` config (``train`` plus the ``bench`` keys).

    Returns:
        The rows of each part that ran: ``stages`` (one per resolution), ``memory`` (one per
        resolution), ``data`` (one per resolution), ``projection`` (one per device count and
        phase).
    """
    bench = cfg.bench
    parts = check_bench(bench)
    device = resolve_device(str(bench.device), "bench.device")
    # The training switches, as train() applies them.
    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))
    setting = (cfg.get("backend") or {}).get("float32_matmul_precision")
    torch.set_float32_matmul_precision(float32_matmul_precision(setting, device.type))
    batches = stage_batches(cfg)
    schedules = device_schedules(cfg) if "projection" in parts else {}
    if cfg.get("seed") is not None:
        torch.manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    if bench.threads is not None:
        torch.set_num_threads(int(bench.threads))
    results: dict[str, list[dict[str, Any]]] = {}
    sections: dict[str, str] = {}
    command = command_line()
    try:
        if "stages" in parts:
            results["stages"] = measure_stages(cfg, device, batches)
            log.info("\n%s", format_table(results["stages"]))
            sections[device.type] = format_section(results["stages"], command)
        if "memory" in parts:
            if device.type == "cuda":
                results["memory"] = measured_memory_table(cfg, batches, device)
            else:
                results["memory"] = computed_memory_table(cfg, batches)
            sections[f"memory-{device.type}"] = format_memory_section(
                results["memory"], bench, device.type, command
            )
        if "data" in parts:
            steps = {row["resolution"]: row["train_img_s"] for row in results.get("stages", [])}
            results["data"], section = data_section(cfg, device, batches, steps)
            kind = f"data-{device.type}-{cfg.data.resolution}"
            sections[kind] = f"{section}\n\n```\n{command}\n```"
        if "projection" in parts:
            results["projection"], section = projection_part(
                cfg, device, batches, results["stages"], schedules, command
            )
            log.info("\n%s", section)
            sections[f"projection-{device.type}-{cfg.data.resolution}"] = section
    finally:
        torch.set_num_threads(threads)

    if bench.out:
        out = Path(bench.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for part, rows in results.items():
            path = out if part == "stages" else out.with_suffix(f".{part}.json")
            path.write_text(json.dumps(rows, indent=2) + "\n")
            log.info("Wrote %s", path)
    if bench.notes:
        notes = Path(str(bench.notes)).expanduser()
        for kind, section in sections.items():
            update_notes(notes, kind, section)
        log.info("Updated %s", notes)
    return results
