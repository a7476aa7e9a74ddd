"""resolve_growth: the growth schedule of (settings, preset, world size, precision, group),
against the official rule written out here independently of ``presets.py``."""

from __future__ import annotations

import pytest

from progan_lightning.growth_plan import resolve_growth
from progan_lightning.layers import mbstd_group

RES = [4, 8, 16, 32, 64, 128, 256, 512, 1024]

# config.py presets: (num_gpus, minibatch_base, minibatch_dict, lrate_dict, lod kimg, total).
TABLES = {
    "v1": (1, 16, {256: 14, 512: 6, 1024: 3}, {}, 800, 19000),
    "v2-1gpu": (
        1,
        4,
        {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4},
        {1024: 0.0015},
        600,
        12000,
    ),
    "v2-2gpus": (
        2,
        8,
        {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8},
        {512: 0.0015, 1024: 0.002},
        600,
        12000,
    ),
    "v2-4gpus": (
        4,
        16,
        {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16},
        {256: 0.0015, 512: 0.002, 1024: 0.003},
        600,
        12000,
    ),
    "v2-8gpus": (
        8,
        32,
        {4: 512, 8: 256, 16: 128, 32: 64, 64: 32},
        {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
        600,
        12000,
    ),
}
CAPS = {"fp32": {256: 16, 512: 8, 1024: 4}, "fp16": {512: 16, 1024: 8}}
SETTINGS = {
    "start_resolution": 4,
    "final_resolution": 1024,
    "stable_kimg": None,
    "fade_kimg": None,
    "batch_size": None,
    "lr": None,
    "total_kimg": None,
    "lr_rampdown_kimg": 0.0,
}


def expected_layout(preset: str, gpus: int, precision: str, group: int) -> dict | None:
    """The official rule, by hand: ``minibatch_dict.get(res, base)``, ``-= % gpus``, the
    precision's per-GPU cap, then whole minibatch-stddev groups; None where a batch is 0, does
    not divide, or leaves a group of one."""
    if preset == "auto":
        preset = "v2-1gpu" if gpus == 1 else f"v2-{max(n for n in (1, 2, 4, 8) if n <= gpus)}gpus"
    _, base, table, lrs, kimg, total = TABLES[preset]
    cap = CAPS["fp16" if precision in ("fp16", "bf16") else "fp32"]
    batch = {}
    for res in RES:
        size = table.get(res, base)
        size -= size % gpus
        size = min(size, cap.get(res, 10**9) * gpus)
        if group >= 2 and size // gpus > group:
            size -= size % (gpus * group)
        if size < 1 or (group and mbstd_group(group, size // gpus) == 1):
            return None
        batch[res] = size
    return {
        "batch": batch,
        "lr": {res: lrs.get(res, 0.001) for res in RES},
        "phase_nimg": kimg * 1000,
        "total_nimg": total * 1000,
    }


@pytest.mark.parametrize("preset", ["auto", *TABLES])
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16"])
def test_every_preset_world_size_and_precision_follows_the_official_rule(preset, precision):
    for gpus in (1, 2, 3, 4, 6, 8, 16):
        for group in (0, 4, 16):
            expected = expected_layout(preset, gpus, precision, group)
            if expected is None:
                with pytest.raises(ValueError):
                    resolve_growth(SETTINGS, preset, gpus, precision, group)
                continue
            plan = resolve_growth(SETTINGS, preset, gpus, precision, group)
            phases = plan.schedule.phases
            assert {p.resolution: p.batch_size for p in phases} == expected["batch"]
            assert {p.resolution: p.lr for p in phases} == expected["lr"]
            assert {p.end_nimg - p.start_nimg for p in phases[:-1]} == {expected["phase_nimg"]}
            assert plan.schedule.total_nimg == expected["total_nimg"]
            assert (plan.world_size, plan.mbstd_group_size) == (gpus, group)
            assert plan.caps == ("fp32" if precision == "fp32" else "fp16")


def test_set_values_win_over_the_preset_and_a_changed_batch_is_noted():
    settings = {**SETTINGS, "final_resolution": 16, "stable_kimg": 10, "total_kimg": 50}
    plan = resolve_growth(settings, "v2-2gpus", 3, "fp32", 4)
    assert plan.schedule.phases[0].end_nimg == 10_000 and plan.schedule.total_nimg == 50_000
    assert plan.preset["name"] == "preset-v2-2gpus"
    # 256 -> 255 (a multiple of 3) -> 252 (whole groups of 4 on 3 devices), 128 -> 126 -> 120.
    assert plan.notes == (
        "[growth] preset-v2-2gpus on 3 devices (fp32 caps), global batch changed: "
        "4x4 256 -> 252, 8x8 256 -> 252, 16x16 128 -> 120",
    )
    assert resolve_growth({**settings, "batch_size": 24}, "v2-2gpus", 3, "fp32", 4).notes == ()


def test_without_a_preset_the_settings_alone_are_the_schedule():
    settings = {**SETTINGS, "final_resolution": 8, "stable_kimg": 1, "fade_kimg": 1}
    plan = resolve_growth({**settings, "batch_size": 16}, None, 2, "fp16", 4)
    assert [(p.name, p.batch_size) for p in plan.schedule.phases] == [
        ("stable4", 16),
        ("fade8", 16),
        ("stable8", 16),
    ]
    assert plan.preset is None and plan.notes == () and plan.warnings == ()


def test_a_group_that_differs_from_the_preset_or_shrinks_is_a_warning():
    settings = {**SETTINGS, "final_resolution": 16}
    plan = resolve_growth(settings, "v1", 1, "fp32", 4)
    assert any("uses model.D.mbstd_group_size=16, this run 4" in w for w in plan.warnings)
    own = {**settings, "stable_kimg": 1, "fade_kimg": 1, "batch_size": {4: 16, 8: 12}}
    plan = resolve_growth(own, None, 4, "fp32", 4)
    assert plan.warnings == (
        "model.D.mbstd_group_size=4 shrinks at 8x8 (batch 3 per device: group 3), 16x16 "
        "(batch 3 per device: group 3); the group is the largest divisor of the per-device "
        "batch up to the size",
    )
