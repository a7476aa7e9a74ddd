"""Why a run stopped before its end, as exceptions that carry the process exit status.

``train()`` raises them; the training command turns them into one log line and the exit
status below, so that a scheduler or a sweep can tell the cases apart:

| status | meaning |
|---|---|
| 0 | finished (or already finished: a resume of a finished run does nothing) |
| 1 | an error (bad config, bad data, a crash) |
| 3 | :class:`Diverged`: a loss or gradient became non-finite; nothing of it was written |
| 128 + N | :class:`Preempted` by signal N (143: SIGTERM, 130: SIGINT); ``last.ckpt`` written |
"""

from __future__ import annotations

import signal
from pathlib import Path

DIVERGED_EXIT_CODE = 3


class TrainingStopped(Exception):
    """Training ended early for a reason the user can act on; ``exit_code`` is the status."""

    exit_code = 1


class Diverged(TrainingStopped):
    """A non-finite loss or gradient: the step was not applied (weights, G_ema and every
    checkpoint stay finite) and the run stops.

    Args:
        what: What became non-finite (``loss/D``, ``gradient of G``, ``G_ema weights``, ...).
        nimg: Images seen when it happened.
        phase: The phase's name (``fade16``).
        checkpoint: The newest checkpoint (all checkpoints are finite), once known.
    """

    exit_code = DIVERGED_EXIT_CODE

    def __init__(self, what: str, nimg: int, phase: str, checkpoint: Path | None = None):
        self.what, self.nimg, self.phase, self.checkpoint = what, nimg, phase, checkpoint
        super().__init__(what, nimg, phase, checkpoint)

    def __str__(self) -> str:
        where = (
            f"the newest good checkpoint is {self.checkpoint} (resume from it with "
            f"ckpt_path={self.checkpoint} and a lower growth.lr or model.optimizer.lr)"
            if self.checkpoint
            else "no checkpoint was written yet; lower growth.lr or model.optimizer.lr"
        )
        return (
            f"training diverged at kimg {self.nimg / 1000:.3f} ({self.phase}): {self.what} is "
            f"not finite; the step was not applied and nothing non-finite was saved; {where}"
        )


class Preempted(TrainingStopped):
    """Stopped by SIGTERM/SIGINT after writing ``last.ckpt``; no final export.

    Args:
        signum: The signal received.
        checkpoint: The checkpoint written at the stop.
    """

    def __init__(self, signum: int, checkpoint: Path | None = None):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        super().__init__(signum, checkpoint)

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return (
            f"stopped by {name}: {self.checkpoint} written, no final export; resume with "
            f"ckpt_path={self.checkpoint} (exit status {self.exit_code})"
        )
