"""What a benchmark run measures, read from the config: its parts, the batch per stage, and
the growth schedules to project (one per device count); every bad setting fails here, first."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from progan_lightning.devices import auto_device_type
from progan_lightning.growth_plan import resolve_growth
from progan_lightning.instantiate import instantiate
from progan_lightning.schedule import GrowthSchedule, check_resolution
from progan_lightning.train import plan_growth, plan_precision

PARTS = ("stages", "memory", "data", "projection")
"""What ``bench.parts`` may list."""


def check_bench(bench: DictConfig) -> list[str]:
    """Fail early on bench settings that cannot work; return the parts to run."""
    if bench.repeats < 1 or bench.warmup < 0:
        raise ValueError(
            f"bench.repeats={bench.repeats} / bench.warmup={bench.warmup}; "
            "use repeats >= 1 and warmup >= 0"
        )
    parts = [bench.parts] if isinstance(bench.parts, str) else list(bench.parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        study = " (the eqlr study runs from a checkout: python -m benchmarks.eqlr)"
        raise ValueError(
            f"bench.parts={parts}; use a non-empty list of {', '.join(PARTS)}"
            + (study if "eqlr" in unknown else "")
        )
    if "memory" in parts and not (0 <= bench.memory_reserve < 1 and bench.memory_budgets_gb):
        raise ValueError(
            f"bench.memory_budgets_gb={bench.memory_budgets_gb} / bench.memory_reserve="
            f"{bench.memory_reserve}; give budgets in GB (e.g. [16, 24, 40, 80]) and a "
            "reserve in [0, 1)"
        )
    if "projection" in parts and ("stages" not in parts or bench.alpha != 1):
        raise ValueError(
            f"bench.parts={parts} / bench.alpha={bench.alpha}: the projection takes its stable "
            "rates from the stages part at alpha 1; use bench.parts=[stages,projection] and "
            "bench.alpha=1"
        )
    return parts


def stage_batches(cfg: DictConfig) -> dict[int, int]:
    """Resolution -> batch size to benchmark, from ``bench`` keys or the growth schedule."""
    growth = hydra.utils.instantiate(cfg.growth)
    schedule = resolve_growth(growth.settings, growth.preset, world_size=1).schedule
    batches = {p.resolution: p.batch_size for p in schedule.phases}
    resolutions = cfg.bench.resolutions
    if resolutions is None:
        resolutions = schedule.resolutions
    elif isinstance(resolutions, int):
        resolutions = [resolutions]
    for res in resolutions:
        check_resolution(res, "bench.resolutions[]")
        if res not in batches:
            raise ValueError(
                f"bench.resolutions has {res}, which the model config does not train "
                f"(resolutions: {schedule.resolutions}); pick from those or set data.resolution"
            )
    size = cfg.bench.batch_size
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"bench.batch_size={size!r}; use a positive integer or null")
    return {res: batches[res] if size is None else size for res in resolutions}


def device_schedules(cfg: DictConfig) -> dict[int, tuple[str, GrowthSchedule]]:
    """Device count of ``bench.devices`` -> the name and schedule training would lay out.

    ``cfg.growth`` is built as training builds it and its schedule resolved for each count
    by ``train.plan_growth`` (a preset such as ``experiment=celebahq``'s ``auto`` picks its
    table per count), checked as training checks it before launching.

    Raises:
        ValueError: ``bench.devices`` is not a list of positive integers, or a count cannot
            run the schedule (a batch does not divide, a minibatch-stddev group of one).
    """
    counts = cfg.bench.devices
    counts = [counts] if isinstance(counts, int) else list(counts or [])
    if not counts or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in counts):
        raise ValueError(f"bench.devices={counts}; use a list of device counts, e.g. [1, 8]")
    precision = cfg.model.get("precision", "fp32")
    group = cfg.model.D.get("mbstd_group_size", 0) or 0
    device = auto_device_type()
    schedules = {}
    for n in dict.fromkeys(counts):
        growth = instantiate(cfg.growth)
        try:
            plan = plan_growth(growth, n, plan_precision(precision, device), group)
        except ValueError as error:
            raise ValueError(f"bench.devices has {n}, which cannot run it: {error}") from None
        name = (plan.preset or {}).get("name") or "growth config"
        schedules[n] = (name, plan.schedule)
    return schedules
