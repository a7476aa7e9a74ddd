"""The ProgressiveGrowth callback: applies the growth schedule to the module and the data."""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info

from progan_lightning import presets
from progan_lightning.growth_plan import GrowthPlan
from progan_lightning.schedule import GrowthSchedule, PerResolution, Phase, per_resolution


class ProgressiveGrowth(L.Callback):
    """Drives stage, fade alpha, learning rate (and its optional ramp-down at the end) and
    data resolution from images seen.

    An epoch here is one *tick*: it ends at the next multiple of the resolution's tick length
    or at the next phase boundary, whichever comes first, so per-tick callbacks (sample grids,
    checkpoints) also fire at every phase end and the dataloader is rebuilt exactly when the
    resolution or batch size changes.

    With ``preset`` set, an official preset (``progan_lightning.presets``) supplies each of
    ``batch_size``, ``lr``, ``stable_kimg``, ``fade_kimg`` and ``total_kimg`` that is None
    here; ``auto`` picks the v2 preset of the run's world size (devices x nodes) and applies
    the official rule for other counts. The callback only applies a schedule: it is laid out
    from these settings by :func:`~progan_lightning.growth_plan.resolve_growth` and handed
    over with :meth:`use` (``train.build`` does both before launching); without one, training
    stops at its start with an error.

    Args:
        final_resolution: Last resolution (``data.resolution``).
        start_resolution: First resolution (official 4).
        stable_kimg: Thousands of images per stable phase (None: from the preset).
        fade_kimg: Thousands of images per fade-in phase (0 = no fade; None: preset).
        batch_size: Global minibatch size, one int or ``{resolution: size}`` (None: preset).
        lr: Optional learning rate, one float or ``{resolution: lr}`` (None: the preset's, or
            without a preset ``model.optimizer.lr``).
        total_kimg: Stop here; None: the preset's, or the end of the last stable phase.
        tick_kimg: Length of a tick (an epoch) in thousands of images, one number or
            ``{resolution: kimg}``; None: the official ``tick_kimg_dict``.
        preset: None, ``auto``, or an official preset name (``v1``, ``v2-1gpu``, ``v2-2gpus``,
            ``v2-4gpus``, ``v2-8gpus``).
        lr_rampdown_kimg: Thousands of images at the end of the run over which the learning
            rates fall linearly to 0 (not in the paper or the official code; 0: none).
    """

    def __init__(
        self,
        final_resolution: int,
        start_resolution: int = 4,
        stable_kimg: PerResolution = 600,
        fade_kimg: PerResolution = 600,
        batch_size: PerResolution = 16,
        lr: PerResolution = None,
        total_kimg: float | None = None,
        tick_kimg: PerResolution = None,
        preset: str | None = None,
        lr_rampdown_kimg: float = 0.0,
    ) -> None:
        super().__init__()
        self.settings: dict[str, Any] = {
            "start_resolution": start_resolution,
            "final_resolution": final_resolution,
            "stable_kimg": stable_kimg,
            "fade_kimg": fade_kimg,
            "batch_size": batch_size,
            "lr": lr,
            "total_kimg": total_kimg,
            "lr_rampdown_kimg": lr_rampdown_kimg,
        }
        self.preset = preset
        if preset not in (None, "auto"):
            presets.preset(preset)  # an unknown name fails now, before anything runs
        self.plan: GrowthPlan | None = None
        ticks = presets.SCHEDULE_DEFAULTS["tick_kimg_dict"] if tick_kimg is None else tick_kimg
        top = max(10, int(final_resolution).bit_length() - 1)  # the official table: 4..1024
        resolutions = [2**i for i in range(2, top + 1)]
        self.tick_nimg: dict[int, int] = {}
        for res, kimg in per_resolution(ticks, resolutions, "growth.tick_kimg").items():
            if not isinstance(kimg, int | float) or kimg <= 0:
                raise ValueError(f"growth.tick_kimg at {res}x{res} is {kimg!r}; use a number > 0")
            self.tick_nimg[res] = max(1, round(kimg * 1000))

    def use(self, plan: GrowthPlan) -> None:
        """Apply ``plan`` (:func:`~progan_lightning.growth_plan.resolve_growth` of this
        callback's :attr:`settings` and :attr:`preset`; ``train.build`` hands it over)."""
        self.plan = plan

    @property
    def schedule(self) -> GrowthSchedule:
        """The schedule handed over by :meth:`use`.

        Raises:
            ValueError: None was handed over.
        """
        if self.plan is None:
            raise ValueError(
                "ProgressiveGrowth has no schedule: lay it out with progan_lightning.growth_plan."
                "resolve_growth(growth.settings, growth.preset, world_size, precision, "
                "mbstd_group_size) and hand it over with growth.use(plan) (train.build does)"
            )
        return self.plan.schedule

    # Planning.

    def _apply(self, module: L.LightningModule) -> Phase:
        nimg = module.progress.cur_nimg
        phase = self.schedule.phase_at(nimg)
        if phase.index != module.progress.phase_index:
            rank_zero_info(
                f"[growth] kimg {nimg / 1000:.1f}: {phase.name} (batch {phase.batch_size})"
            )
        module.enter_phase(phase, self.schedule.lr_scale(nimg))
        return phase

    def _plan_epoch(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        nimg = module.cur_nimg
        phase = self.schedule.phase_at(nimg)
        tick = self.tick_nimg[phase.resolution]
        next_tick = (nimg // tick + 1) * tick
        end = min(next_tick, self.schedule.next_boundary(nimg))
        trainer.datamodule.set_plan(phase.resolution, phase.batch_size, nimg, end - nimg)

    # Hooks.

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.state()}

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The schedule was resolved and checked (and a resume checked against it) before the
        # launch; only that it was resolved for this trainer is left to see.
        schedule = self.schedule  # one line of what to do, without a plan
        if self.plan.world_size != trainer.world_size:
            raise ValueError(
                f"ProgressiveGrowth's schedule was resolved for {self.plan.world_size} "
                f"devices, the trainer has {trainer.world_size}; resolve it for "
                "trainer.world_size"
            )
        if trainer.datamodule is None or not hasattr(trainer.datamodule, "set_plan"):
            raise TypeError("ProgressiveGrowth needs a ProGANDataModule passed to trainer.fit")
        rank_zero_info("[growth] schedule:\n" + schedule.describe())
        pl_module.progress.schedule = schedule
        self._plan_epoch(trainer, pl_module)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Enter the phase only now: Lightning restores the optimizer states of a checkpoint
        # after ``on_fit_start``, so a phase entered there (fresh Adam state, the phase's
        # learning rate) would be overwritten by the previous phase's on resume.
        self._apply(pl_module)

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._apply(pl_module)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if pl_module.progress.done:
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if pl_module.progress.done:
            trainer.should_stop = True
            return
        self._plan_epoch(trainer, pl_module)

    @property
    def total_kimg(self) -> float:
        """Where training stops, in thousands of images."""
        return self.schedule.total_nimg / 1000
