"""A Hydra callback that takes the run dir of ``progan-train`` the moment Hydra hands it over.

At ``on_run_start``, before anything is written, it refuses (one message, exit status 2) a
fresh run in a folder that holds a run, then takes the run dir's lock for the rest of the
process (one atomic step: of two runs racing for one folder, one gets it and the other is
refused naming it). A multirun job takes its job dir at ``on_job_start``, and gives it back at
``on_job_end``; ``on_multirun_start`` (before any job starts) refuses a fresh sweep in a sweep
dir whose job dirs hold runs, or one that another process trains in. ``train()`` checks the
folder only where the process does not hold it yet (a run started from Python) and takes
the same lock.

The commands that do not train (``trains: false``) take no lock; they refuse a run dir that
holds a training run: they never write into one.
"""

from __future__ import annotations

import copy
import logging
import os
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, open_dict

from progan_lightning.cli.errors import exit_with
from progan_lightning.faults import UserError
from progan_lightning.fs import check_folder
from progan_lightning.run_lock import (
    acquire_run_dir,
    check_fresh_run_dir,
    check_fresh_sweep_dir,
    check_not_a_training_run,
    release_run_dir,
)
from progan_lightning.run_paths import checkpoint_dir

log = logging.getLogger(__name__)


def launched_rank() -> int:
    """This process's rank in a multi-process launch, read as Lightning reads it (``RANK``,
    ``LOCAL_RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``; 0 when none is set), without
    loading Lightning: a refused run dir answers in a second."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


class RunDirCheck(Callback):
    """Check and take a run dir before anything is written to it (``hydra.callbacks.run_dir``).

    Args:
        enabled: Off: no check at all.
        trains: Whether the command trains in its run dir (``progan-train``); the others
            (``progan-evaluate``, ``-generate``, ``-prepare``, the benchmark) refuse a
            training run's folder instead.
    """

    def __init__(self, enabled: bool = True, trains: bool = True) -> None:
        self.enabled = enabled
        self.trains = trains

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Other ranks of a multi-process run re-enter the command while rank 0 trains.
        if not self.enabled or launched_rank() != 0:
            return
        # The run dir reads ``hydra:`` values (the default one through ``paths.log_dir``), which
        # resolve once HydraConfig is set; Hydra's job sets the same config again next.
        HydraConfig.instance().set_config(config)
        run_dir = str(config.hydra.run.dir)
        try:
            check_folder(run_dir, "hydra.run.dir")  # before Hydra makes it: no traceback
            if not self.trains:
                check_not_a_training_run(run_dir, config.get("task_name", "the command"))
                return
            check_fresh_run_dir(run_dir, config.get("ckpt_path"), configured_checkpoints(config))
            acquire_run_dir(run_dir)
        except UserError as error:  # Hydra turns a callback's exception into a warning.
            exit_with(str(error))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or not self.trains or launched_rank() != 0:
            return
        HydraConfig.instance().set_config(config)  # as in on_run_start
        try:
            check_folder(str(config.hydra.sweep.dir), "hydra.sweep.dir")
            check_fresh_sweep_dir(str(config.hydra.sweep.dir), config.get("ckpt_path"))
        except UserError as error:
            exit_with(str(error))
        log.info(f"Sweep folder: {config.hydra.sweep.dir}")

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        if self.enabled and self.trains and multirun_job(config) and launched_rank() == 0:
            try:
                acquire_run_dir(config.hydra.runtime.output_dir)
            except UserError as error:
                exit_with(str(error))

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if self.enabled and self.trains and multirun_job(config):
            release_run_dir(config.hydra.runtime.output_dir)


def configured_checkpoints(config: DictConfig) -> Path:
    """The run's checkpoints folder (``callbacks.model_checkpoint.dirpath``), read before
    Hydra's job sets ``paths.output_dir``: the run dir stands in for it."""
    config = copy.deepcopy(config)
    with open_dict(config):
        config.paths.output_dir = str(config.hydra.run.dir)
    return checkpoint_dir(config)


def multirun_job(config: DictConfig) -> bool:
    """Whether ``config`` is a job of a multirun (a single run took its run dir at start)."""
    return config.hydra.mode == RunMode.MULTIRUN
