"""The Optuna sweep (hparams_search=swd_optuna) runs trials and minimizes the final SWD."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.cli.train import objective
from progan_lightning.train import train

ROOT = Path(CONFIG_DIR).parent


@pytest.mark.slow
def test_optuna_sweep_runs_two_tiny_trials_and_reports_the_best_swd(tmp_path: Path):
    cmd = [
        sys.executable,
        str(ROOT / "train.py"),
        "-m",
        "hparams_search=swd_optuna",
        "hydra.sweeper.n_trials=2",
        "data.resolution=8",
        "data.source.num_images=128",
        "model.G.z_dim=16",
        "model.G.fmap_base=64",
        "model.G.fmap_max=16",
        "growth.stable_kimg=0.032",
        "growth.fade_kimg=0.032",
        "growth.batch_size=16",
        "growth.tick_kimg=0.032",
        "trainer.accelerator=cpu",
        "trainer.enable_model_summary=false",
        "metrics.num_images=32",
        "logger=csv",
        f"paths.log_dir={tmp_path / 'logs'}",
        f"paths.cache_dir={tmp_path / 'cache'}",
    ]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    (results,) = (tmp_path / "logs").rglob("optimization_results.yaml")
    best = yaml.safe_load(results.read_text())
    assert set(best["best_params"]) == {
        "model.optimizer.lr",
        "model.ema_kimg",
        "model.loss.gp_lambda",
    }
    # The best value is the smallest final metrics/swd_avg among the trials.
    finals = [
        json.loads(p.read_text().splitlines()[-1])["metrics/swd_avg"]
        for p in results.parent.glob("*/metrics.jsonl")
    ]
    assert len(finals) == 2 and all(math.isfinite(v) for v in finals)
    assert best["best_value"] == min(finals)


def test_a_time_budget_stops_the_run_and_scores_it_where_it_stopped(make_cfg, tmp_path: Path):
    """trainer.max_time (the study's budget per trial): the run stops mid-phase, and the
    metrics are evaluated at the stop, so a sweeper gets the generator it ended with."""
    cfg = make_cfg(
        "trainer.max_time=00:00:00:04", "growth.total_kimg=1000", "logger=none", "metrics=default"
    )
    metrics, objects = train(cfg)
    model = objects["model"]
    assert 0 < model.cur_nimg < 1_000_000  # stopped by the clock, not the schedule
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["kimg"] == model.cur_nimg / 1000
    assert metrics["metrics/swd_avg"] == pytest.approx(last["metrics/swd_avg"])


def test_a_run_short_of_the_final_resolution_ranks_last():
    assert (
        objective({"metrics/swd_avg": 5.0, "progress/resolution": 32.0}, "metrics/swd_avg", 32)
        == 5.0
    )
    assert (
        objective({"metrics/swd_avg": 5.0, "progress/resolution": 16.0}, "metrics/swd_avg", 32)
        == math.inf
    )
    assert objective({"metrics/swd_avg": 5.0}, None, 32) is None
