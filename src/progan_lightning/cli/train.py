"""``progan-train`` / ``python train.py``: train a progressive GAN.

progan-train [experiment=NAME] [group=option ...] [key=value ...]
progan-train ckpt_path=last hydra.run.dir=RUN [key=value ...]   (or resume=RUN [key=value ...])
"""

from __future__ import annotations

import logging
import math
import sys

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from progan_lightning.cli.command import command
from progan_lightning.cli.config import import_when_run
from progan_lightning.cli.errors import exit_with, user_errors
from progan_lightning.cli.resume import complete_argv
from progan_lightning.cli.run_dir import launched_rank
from progan_lightning.faults import Diverged, TrainingStopped
from progan_lightning.run_paths import export_path

log = logging.getLogger(__name__)


def main(cfg: DictConfig | None = None) -> float | None:
    """The command: the command line completed for a resume by folder (the run's recorded
    overrides first, :mod:`progan_lightning.cli.resume`), then Hydra's run of :func:`task`.

    Args:
        cfg: A composed config to run as it is (from Python), as Hydra's main takes one.
    """
    if cfg is not None:
        return task(cfg)
    try:
        sys.argv[1:] = complete_argv(sys.argv[1:])
    except ValueError as error:
        exit_with(str(error))
    return task()


@command("train")
@user_errors
def task(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers.

    A run that diverged or was pre-empted logs one line and exits with the status of
    :mod:`progan_lightning.faults`; in a multirun a diverged job returns NaN instead, so the
    sweep goes on and ranks it as failed. A run that stopped before the final resolution
    (a ``trainer.max_time`` budget) returns inf: its metric is not comparable.
    """
    train = import_when_run("progan_lightning.train", "train")

    name = cfg.get("optimized_metric")
    first = launched_rank() == 0  # the other ranks of a multi-process run say nothing here
    if first:
        log.info(f"Run folder: {cfg.paths.output_dir}")
    try:
        metrics, _ = train(cfg)
    except TrainingStopped as err:
        log.error(str(err))
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if isinstance(err, Diverged) and multirun:
            return math.nan if name else None
        sys.exit(err.exit_code)
    export = export_path(cfg)
    if first and export and export.is_file():
        log.info(f"Generator: {export}")
    return objective(metrics, name, cfg.data.resolution)


def objective(metrics: dict[str, float], name: str | None, final_resolution: int) -> float | None:
    """The value a sweeper gets: ``metrics[name]``, or inf for a run that stopped before
    ``final_resolution`` (e.g. at ``trainer.max_time``, the time budget of a sweep's
    trials): its metric was measured at a lower resolution and ranks below every run that
    got there."""
    if not name:
        return None
    reached = metrics.get("progress/resolution", final_resolution)
    if reached < final_resolution:
        log.warning(
            f"the run stopped at {reached:g}x{reached:g}, before data.resolution="
            f"{final_resolution}: {name} of this run counts as inf"
        )
        return math.inf
    return metrics.get(name)


if __name__ == "__main__":
    main()
