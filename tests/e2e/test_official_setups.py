"""The official setups (issue 11): `experiment=celebahq` runs the official preset of the
device count (tkarras/progressive_growing_of_gans config.py), on any number of devices."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import lay_out, run_train
from progan_lightning import presets
from progan_lightning.callbacks.growth import ProgressiveGrowth
from progan_lightning.growth_plan import resolve_growth

# config.py, preset-v2-{1gpu,2gpus,4gpus,8gpus}: minibatch_base, minibatch_dict, G_lrate_dict,
# then the fp32 cap max_minibatch_per_gpu = {256: 16, 512: 8, 1024: 4} times the GPU count.
OFFICIAL_V2 = {
    1: (4, {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4}, {1024: 0.0015}),
    2: (8, {4: 256, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8}, {512: 0.0015, 1024: 0.002}),
    4: (
        16,
        {4: 512, 8: 256, 16: 128, 32: 64, 64: 32, 128: 16},
        {256: 0.0015, 512: 0.002, 1024: 0.003},
    ),
    8: (
        32,
        {4: 512, 8: 256, 16: 128, 32: 64, 64: 32},
        {128: 0.0015, 256: 0.002, 512: 0.003, 1024: 0.003},
    ),
}
CAP = {256: 16, 512: 8, 1024: 4}
RESOLUTIONS = [4, 8, 16, 32, 64, 128, 256, 512, 1024]


def celebahq_growth(make_cfg, folder: Path, *overrides: str) -> ProgressiveGrowth:
    import hydra

    cfg = make_cfg("experiment=celebahq", f"data.path={folder}", *overrides, tiny=False)
    return hydra.utils.instantiate(cfg.growth)


@pytest.mark.parametrize("world_size", [1, 2, 4, 8])
def test_celebahq_is_the_official_v2_preset_of_the_device_count(make_cfg, tmp_path, world_size):
    growth = lay_out(celebahq_growth(make_cfg, tmp_path), world_size)
    base, table, lrs = OFFICIAL_V2[world_size]
    expected = {r: min(table.get(r, base), CAP.get(r, 10**9) * world_size) for r in RESOLUTIONS}
    sched = growth.schedule
    assert {p.resolution: p.batch_size for p in sched.phases} == expected
    assert {p.resolution: p.lr for p in sched.phases} == {
        r: lrs.get(r, 0.001) for r in RESOLUTIONS
    }
    assert sched.total_nimg == 12_000_000
    assert [(p.name, p.end_nimg - p.start_nimg) for p in sched.phases[:3]] == [
        ("stable4", 600_000),
        ("fade8", 600_000),
        ("stable8", 600_000),
    ]
    assert growth.tick_nimg[4] == 160_000 and growth.tick_nimg[1024] == 10_000
    lay_out(growth, world_size, mbstd_group_size=4)  # divides; group >= 2


@pytest.mark.parametrize("world_size", [3, 6])
def test_other_device_counts_follow_the_official_rule(make_cfg, tmp_path, world_size):
    growth = celebahq_growth(make_cfg, tmp_path)
    plan = resolve_growth(growth.settings, growth.preset, world_size)
    growth.use(plan)
    lines = list(plan.notes)
    base_gpus = max(n for n in OFFICIAL_V2 if n <= world_size)
    base, table, _ = OFFICIAL_V2[base_gpus]
    official = {}
    for phase in growth.schedule.phases:
        r = phase.resolution
        size = table.get(r, base)
        size -= size % world_size  # minibatch -= minibatch % num_gpus
        official[r] = min(size, CAP.get(r, 10**9) * world_size)
        assert phase.batch_size == official[r]
        assert phase.batch_size % world_size == 0
        assert phase.batch_size // world_size <= CAP.get(r, 10**9)
    # One line naming every size the rule changed (4x4 256 -> 255 on 3 devices).
    assert len(lines) == 1 and f"on {world_size} devices" in lines[0]
    base_4 = table.get(4, base)
    assert f"4x4 {base_4} -> {base_4 - base_4 % world_size}" in lines[0]
    # With minibatch stddev (group 4), per-device batches above 4 are whole groups.
    lay_out(growth, world_size, mbstd_group_size=4)
    for phase in growth.schedule.phases:
        size, per_device = official[phase.resolution], official[phase.resolution] // world_size
        whole = size - size % (4 * world_size) if per_device > 4 else size
        assert phase.batch_size == whole


def test_named_preset_overrides_the_choice_and_explicit_values_win(make_cfg, tmp_path):
    growth = celebahq_growth(make_cfg, tmp_path, "growth.preset=v2-8gpus")
    lay_out(growth, 2)
    sizes = {p.resolution: p.batch_size for p in growth.schedule.phases}
    assert sizes[4] == 512 and sizes[1024] == 8  # the 8-GPU table, capped for 2 devices
    growth = celebahq_growth(make_cfg, tmp_path, "growth.stable_kimg=10", "growth.batch_size=32")
    lay_out(growth, 4)
    phase = growth.schedule.phases[0]
    assert (phase.end_nimg, phase.batch_size, growth.schedule.phases[-1].lr) == (10_000, 32, 0.003)


def test_a_size_that_would_become_zero_fails_before_launch(make_cfg, tmp_path):
    growth = celebahq_growth(make_cfg, tmp_path, "growth.preset=v1")
    with pytest.raises(ValueError, match=r"1024x1024 minibatch of 3 becomes 0"):
        lay_out(growth, 4)
    assert presets.preset("v1")["batch_size"][1024] == 3


def test_default_growth_follows_the_official_training_defaults():
    import hydra
    from omegaconf import OmegaConf

    from progan_lightning.cli.config import CONFIG_DIR

    cfg = OmegaConf.load(Path(CONFIG_DIR) / "growth" / "default.yaml")
    cfg.final_resolution = 1024
    growth = lay_out(hydra.utils.instantiate(cfg))
    sched = growth.schedule
    assert sched.total_nimg == 12_000_000
    lrs = {p.resolution: p.lr for p in sched.phases}
    assert lrs[1024] == 0.0015 and lrs[512] is None  # None: model.optimizer.lr (0.001)
    ticks = presets.SCHEDULE_DEFAULTS["tick_kimg_dict"]
    assert growth.tick_nimg == {r: k * 1000 for r, k in ticks.items()}


def celebahq_ddp_run(tmp_path: Path, devices: int, folder: Path) -> list[dict]:
    out = tmp_path / f"run{devices}"
    run_train(
        [
            "experiment=celebahq",
            "debug=ddp",
            f"trainer.devices={devices}",
            f"data.path={folder}",
            "data.resolution=8",
            "model.G.z_dim=16",
            "model.G.fmap_base=32",
            "model.G.fmap_max=16",
            "growth.stable_kimg=0.032",
            "growth.fade_kimg=0.032",
            f"growth.batch_size={4 * devices}",
            "growth.total_kimg=0.096",  # null would be the preset's 12000
            "logger=none",
            "metrics=none",
            "callbacks.samples.num_images=8",
            "callbacks.samples.tile=8",
            f"hydra.run.dir={out}",
        ],
        tmp_path,
    )
    traces = [(out / "consistency" / f"rank{r}.jsonl").read_text() for r in range(devices)]
    assert len(set(traces)) == 1  # every rank saw the same progress and weights
    return [json.loads(line) for line in traces[0].splitlines()[:-1]]


@pytest.mark.slow
def test_celebahq_trains_across_a_stage_change_on_four_cpu_processes(tmp_path, image_folder):
    """More than two ranks: images seen summed over four (two would hide a count doubled
    from rank 0's); two ranks run in ``test_distributed.py``."""
    devices = 4
    rows = celebahq_ddp_run(tmp_path, devices, image_folder)
    assert {r["resolution"] for r in rows} == {4, 8}
    assert all(r["local_batches"] == [4] * devices for r in rows)
    assert rows[-1]["nimg"] == 96


def test_train_lays_out_the_preset_for_the_world_size_before_launch(
    make_cfg, tmp_path, image_folder
):
    from progan_lightning.train import train

    cfg = make_cfg(
        "experiment=celebahq",
        "growth.preset=v1",
        f"data.path={image_folder}",
        "trainer=ddp_sim",
        "trainer.devices=3",
        "model.G.z_dim=16",
        "model.G.fmap_base=2048",
        "model.G.fmap_max=16",
        "logger=none",
        tiny=False,
    )
    cfg.paths.cache_dir = str(tmp_path / "fresh-cache")
    # v1 on 3 devices: 3 images at 1024x1024 is one per device, a constant mbstd group.
    with pytest.raises(ValueError, match=r"at 1024x1024 is 1 per device over 3 devices"):
        train(cfg)
    assert not (tmp_path / "fresh-cache").exists()
