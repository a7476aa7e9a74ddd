"""The run dir's lock: taken once per process, atomic between processes, released at exit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from progan_lightning.faults import UserError
from progan_lightning.run_lock import (
    OWNER_NAME,
    acquire_run_dir,
    check_not_a_training_run,
    holds_run_dir,
    release_run_dir,
    run_dir_lock,
)

TRY_LOCK = (
    "import sys\n"
    "from progan_lightning.faults import UserError\n"
    "from progan_lightning.run_lock import acquire_run_dir\n"
    "try:\n"
    "    acquire_run_dir(sys.argv[1])\n"
    "except UserError as error:\n"
    "    sys.exit(str(error))\n"
)


def try_lock(run: Path) -> subprocess.CompletedProcess[str]:
    """Another process that tries to take ``run``."""
    return subprocess.run(
        [sys.executable, "-c", TRY_LOCK, str(run)], capture_output=True, text=True, timeout=60
    )


def test_the_commands_hold_goes_on_through_training_and_refuses_others(tmp_path: Path):
    run = tmp_path / "run"
    acquire_run_dir(run)
    try:
        assert f"pid {__import__('os').getpid()}" in (run / OWNER_NAME).read_text()
        with run_dir_lock(run):  # training finds it held: no second lock, no deadlock
            assert holds_run_dir(run)
        assert holds_run_dir(run)  # still held after training, until the process ends
        other = try_lock(run)
        assert other.returncode == 1 and f"the run dir {run} is in use by pid" in other.stderr
    finally:
        release_run_dir(run)
    assert not holds_run_dir(run) and not (run / OWNER_NAME).exists()
    assert try_lock(run).returncode == 0  # free again; released at that process's exit
    assert not (run / OWNER_NAME).exists()


def test_a_lock_from_python_is_released_after_the_body(tmp_path: Path):
    with run_dir_lock(tmp_path):
        assert holds_run_dir(tmp_path)
    assert not holds_run_dir(tmp_path) and not (tmp_path / OWNER_NAME).exists()


def test_a_command_that_does_not_train_refuses_a_training_runs_folder(tmp_path: Path):
    check_not_a_training_run(tmp_path, "evaluate")  # an empty folder will do
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "run.yaml").write_text("started: now\n")
    with pytest.raises(UserError, match=r"holds a training run .*progan-evaluate never writes"):
        check_not_a_training_run(tmp_path, "evaluate")
