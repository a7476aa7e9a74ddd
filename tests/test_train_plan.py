"""train.build: the run's facts resolved once into a frozen Plan, before anything launches."""

from __future__ import annotations

import dataclasses

import pytest

from progan_lightning import train as train_mod
from progan_lightning.train import build, fit

QUIET = ["logger=none", "metrics=none", "callbacks.samples.num_images=4"]


def test_a_build_resolves_the_plan_and_writes_nothing(make_cfg, tmp_path):
    run = build(make_cfg(*QUIET))
    plan = run.plan
    assert (plan.world_size, plan.device, plan.precision) == (1, "cpu", "fp32")
    assert plan.strategy == "auto" and plan.ckpt_path is None and plan.pending
    assert plan.schedule is run.growth.schedule
    assert plan.mbstd_group_size == run.model.D.init_kwargs["mbstd_group_size"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.world_size = 2  # type: ignore[misc]
    assert not (tmp_path / "checkpoints").exists()


def test_a_preset_run_with_auto_precision_lays_out_its_schedule_once(
    make_cfg, monkeypatch, tmp_path
):
    """``model.precision=auto`` resolving to bf16 (a CPU with AMX): the preset is laid out
    once, with the fp16/bf16 batch caps, and training keeps that layout (it used to be laid
    out again at fit start with the fp32 caps)."""
    monkeypatch.setattr("progan_lightning.precision.cpu_capabilities", lambda: {"amx_bf16": 1})
    layouts = []
    resolve = train_mod.resolve_growth

    def spy(settings, preset, world_size, precision="fp32", mbstd_group_size=0):
        plan = resolve(settings, preset, world_size, precision, mbstd_group_size)
        layouts.append((plan.world_size, plan.caps, plan.mbstd_group_size))
        return plan

    monkeypatch.setattr(train_mod, "resolve_growth", spy)
    cfg = make_cfg(
        *QUIET,
        "model.precision=auto",
        "growth.preset=v2-1gpu",
        "growth.total_kimg=0.032",  # null would be the preset's 12000
    )
    run = build(cfg)
    assert run.plan.precision == "bf16"
    schedule = run.plan.schedule
    fit(run)
    group = run.plan.mbstd_group_size
    assert layouts == [(1, "fp16", group)]
    assert run.growth.schedule is schedule
    assert run.model.cur_nimg == 32


def test_the_run_dir_is_checked_once(make_cfg, monkeypatch, tmp_path):
    """A run dir this process holds was checked when it was taken (the command's
    ``RunDirCheck``): ``build`` checks only one it does not hold (a run from Python)."""
    from progan_lightning.run_lock import acquire_run_dir, release_run_dir

    checks = []
    check = train_mod.check_fresh_run_dir
    monkeypatch.setattr(
        train_mod, "check_fresh_run_dir", lambda *args: checks.append(args) or check(*args)
    )
    cfg = make_cfg(*QUIET)
    acquire_run_dir(cfg.paths.output_dir)
    try:
        build(cfg)
    finally:
        release_run_dir(cfg.paths.output_dir)
    assert checks == []
    build(cfg)
    assert len(checks) == 1


def test_the_commands_check_reads_the_configured_checkpoints_folder(tmp_path):
    from omegaconf import OmegaConf

    from progan_lightning.cli.run_dir import configured_checkpoints

    config = OmegaConf.create(
        {
            "hydra": {"run": {"dir": str(tmp_path / "run")}},
            "paths": {"output_dir": "${hydra:runtime.output_dir}"},
            "callbacks": {"model_checkpoint": {"dirpath": "${paths.output_dir}/ckpts"}},
        }
    )
    assert configured_checkpoints(config) == tmp_path / "run" / "ckpts"
    config.callbacks.model_checkpoint.dirpath = None
    assert configured_checkpoints(config) == tmp_path / "run" / "checkpoints"
