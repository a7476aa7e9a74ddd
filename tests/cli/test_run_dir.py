"""The run dir as Hydra hands it over: no command writes Hydra's own record, and the commands
that do not train leave a training run's folder alone."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from helpers import run_command
from progan_lightning.cli.config import CONFIG_DIR


@pytest.mark.parametrize("command", ["train", "generate", "evaluate", "prepare", "bench"])
def test_hydra_writes_no_record_of_its_own_for_any_command(command: str):
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(command, return_hydra_config=True)
    GlobalHydra.instance().clear()
    assert cfg.hydra.output_subdir is None
    check = cfg.hydra.callbacks.run_dir
    assert check._target_ == "progan_lightning.cli.run_dir.RunDirCheck"
    assert check.get("trains", True) is (command == "train")


@pytest.mark.parametrize("command", ["generate", "evaluate", "prepare"])
def test_a_command_that_does_not_train_leaves_a_training_runs_folder_alone(
    command: str, tmp_path: Path
):
    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / "checkpoints").mkdir()
    (run / ".hydra" / "run.yaml").write_text("started: 2026-01-01T10:00:00+0000\n")
    (run / ".hydra" / "config.yaml").write_text("seed: 0\n")
    (run / "checkpoints" / "last.ckpt").write_bytes(b"a checkpoint")
    before = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}
    source = ["source=x.safetensors"] if command != "prepare" else []
    result = run_command(command, *source, f"hydra.run.dir={run}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert f"hydra.run.dir={run} holds a training run" in result.stderr
    assert f"progan-{command} never writes into one" in result.stderr
    after = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in run.rglob("*") if p.is_file()}
    assert after == before
