"""A Hydra callback that checks the run dir of ``progan-train`` before Hydra writes into it.

Hydra writes ``<run dir>/.hydra/config.yaml`` before the task function runs, so a check in
``train()`` comes too late to leave a finished run (or a live one) untouched. This callback
runs at ``on_run_start``, before that write, and refuses (one message, exit status 2) a
fresh run in a folder that holds a run, and a run dir that another process trains in; at
``on_multirun_start`` (before any job writes its ``.hydra/``) it refuses a fresh sweep in a
sweep dir whose job dirs hold runs, or one that another process trains in.
``train()`` checks the same again for runs started from Python or in a multirun.
"""

from __future__ import annotations

import os
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from progan_lightning.cli.errors import exit_with
from progan_lightning.faults import UserError
from progan_lightning.run_lock import check_fresh_run_dir, check_fresh_sweep_dir, check_not_in_use


def launched_rank() -> int:
    """This process's rank in a multi-process launch, read as Lightning reads it (``RANK``,
    ``LOCAL_RANK``, ``SLURM_PROCID``, ``JSM_NAMESPACE_RANK``; 0 when none is set), without
    loading Lightning: a refused run dir answers in a second."""
    for key in ("RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"):
        if key in os.environ:
            return int(os.environ[key])
    return 0


class RunDirCheck(Callback):
    """Refuse a run dir before anything is written to it (``hydra.callbacks.run_dir``).

    Args:
        enabled: Off for the commands that compose ``train.yaml`` without training
            (``progan-evaluate``, ``progan-prepare``).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Other ranks of a multi-process run re-enter the command while rank 0 trains.
        if not self.enabled or launched_rank() != 0:
            return
        # The run dir reads ``hydra:`` values (the default one through ``paths.log_dir``), which
        # resolve once HydraConfig is set; Hydra's job sets the same config again next.
        HydraConfig.instance().set_config(config)
        run_dir = str(config.hydra.run.dir)
        try:
            check_not_in_use(run_dir)
            check_fresh_run_dir(run_dir, config.get("ckpt_path"))
        except UserError as error:  # Hydra turns a callback's exception into a warning.
            exit_with(str(error))

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        if not self.enabled or launched_rank() != 0:
            return
        HydraConfig.instance().set_config(config)  # as in on_run_start
        try:
            check_fresh_sweep_dir(str(config.hydra.sweep.dir), config.get("ckpt_path"))
        except UserError as error:
            exit_with(str(error))
