"""Where training is: one value, owned by the module, saved in its checkpoints.

The growth callback writes it (the phase entered before every batch, the schedule); the
module adds the images it trains on; every other callback only reads it, and whether a batch
ended a phase or the run is derived from it, in one place. So no callback looks the growth
callback up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from progan_lightning.schedule import GrowthSchedule, Phase


@dataclass
class TrainingProgress:
    """Training progress.

    Attributes:
        cur_nimg: Real images trained on, global across devices.
        stage: Depth of the networks (0: 4x4).
        alpha: Fade-in weight of the newest block (1 outside a fade-in).
        phase_index: Index of the schedule's phase (-1 before the first batch).
        lr_scale: The schedule's ramp-down factor of the learning rates (1 outside it).
        schedule: The run's growth schedule (None without a growth callback).
    """

    cur_nimg: int = 0
    stage: int = 0
    alpha: float = 1.0
    phase_index: int = -1
    lr_scale: float = 1.0
    schedule: GrowthSchedule | None = None

    @property
    def phase_ended(self) -> bool:
        """The last batch trained closed its phase: the images seen lie in another phase than
        the one entered (False without a schedule)."""
        if self.schedule is None:
            return False
        return self.schedule.phase_at(self.cur_nimg).index != self.phase_index

    @property
    def done(self) -> bool:
        """The run has seen the schedule's ``total_nimg`` (False without a schedule)."""
        return self.schedule is not None and self.cur_nimg >= self.schedule.total_nimg

    # Written by the growth callback.

    def enter(self, phase: Phase, lr_scale: float) -> None:
        """Train the next batch in ``phase`` at ``cur_nimg``."""
        self.stage, self.phase_index = phase.stage, phase.index
        self.alpha = phase.alpha(self.cur_nimg)
        self.lr_scale = lr_scale

    def hold(self, stage: int, alpha: float = 1.0) -> None:
        """A fixed stage and alpha outside a schedule (benchmarks, tests, a hand-run step)."""
        self.stage, self.alpha = int(stage), float(alpha)

    # Checkpoints (the ``progress`` entry).

    def state_dict(self) -> dict[str, Any]:
        return {
            "cur_nimg": self.cur_nimg,
            "stage": self.stage,
            "alpha": self.alpha,
            "phase_index": self.phase_index,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.cur_nimg = int(state.get("cur_nimg", 0))
        self.stage = int(state.get("stage", 0))
        self.alpha = float(state.get("alpha", 1.0))
        self.phase_index = int(state.get("phase_index", -1))
