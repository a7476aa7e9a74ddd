"""``progan-train`` / ``python train.py``: train a progressive GAN.

progan-train [experiment=NAME] [group=option ...] [key=value ...]
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
from progan_lightning.cli.errors import user_errors
from progan_lightning.faults import Diverged, TrainingStopped

log = logging.getLogger(__name__)


@command("train")
@user_errors
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers.

    A run that diverged or was pre-empted logs one line and exits with the status of
    :mod:`progan_lightning.faults`; in a multirun a diverged job returns NaN instead, so the
    sweep goes on and ranks it as failed. A run that stopped before the final resolution
    (a ``trainer.max_time`` budget) returns inf: its metric is not comparable.
    """
    train = import_when_run("progan_lightning.train", "train")

    name = cfg.get("optimized_metric")
    try:
        metrics, _ = train(cfg)
    except TrainingStopped as err:
        log.error(str(err))
        multirun = HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
        if isinstance(err, Diverged) and multirun:
            return math.nan if name else None
        sys.exit(err.exit_code)
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
