"""When per-tick work (grids, interpolations, metrics) runs: at the end of a growth phase,
of the run, or of its time budget, as the module's ``progress`` (``progress.py``) says."""

from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import Timer


def phase_or_run_ended(trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
    """Whether the epoch that just ended closed a growth phase, the run, or the run's time
    (``trainer.max_time``, e.g. the budget of a sweep's trials)."""
    progress = pl_module.progress
    if progress.schedule is None:  # no growth callback
        return trainer.should_stop
    return progress.phase_ended or progress.done or time_is_up(trainer)


def time_is_up(trainer: L.Trainer) -> bool:
    """Whether the trainer's time limit (``trainer.max_time``, Lightning's ``Timer``) ran out."""
    timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
    remaining = None if timer is None else timer.time_remaining()
    return remaining is not None and remaining <= 0
