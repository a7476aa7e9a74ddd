"""Fixtures of the studies' tests (from the checkout: ``python -m pytest benchmarks/tests``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the whole session: the built-in data is drawn once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> Path:
    """A run folder as ``progan-train`` leaves it: 4 -> 8 px on the first 64 built-in digits,
    a checkpoint every epoch (the fade-in's last among them)."""
    run = tmp_path_factory.mktemp("tiny") / "run"
    overrides = [
        "data.resolution=8",
        "data.source.num_images=64",
        "model.G.z_dim=8",
        "growth.batch_size=8",
        "model.G.fmap_base=32",
        "model.G.fmap_max=8",
        "model.D.fmap_base=32",
        "model.D.fmap_max=8",
        "growth.fade_kimg=0.064",
        "growth.stable_kimg={4: 0.064, 8: 0.128}",
        "metrics=none",
        "logger=none",
        "callbacks.model_checkpoint.every_n_epochs=1",
        f"paths.cache_dir={cache_dir}",
        f"hydra.run.dir={run}",
    ]
    train = Path(__file__).resolve().parents[2] / "train.py"
    subprocess.run([sys.executable, str(train), *overrides], check=True, capture_output=True)
    return run
