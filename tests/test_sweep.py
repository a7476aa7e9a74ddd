"""The Optuna sweep (hparams_search=swd_optuna) runs trials and minimizes the final SWD."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import yaml

from progan_lightning.cli.config import CONFIG_DIR

ROOT = Path(CONFIG_DIR).parent


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
