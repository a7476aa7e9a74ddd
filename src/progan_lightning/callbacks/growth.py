"""The ProgressiveGrowth callback: applies the growth schedule to the module and the data."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from progan_lightning import presets
from progan_lightning.layers import mbstd_group
from progan_lightning.schedule import GrowthSchedule, PerResolution, Phase, per_resolution

PRESET_KEYS = ("batch_size", "lr", "stable_kimg", "fade_kimg", "total_kimg")
"""Growth settings an official preset supplies where the config leaves them null."""


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
    the official rule for other counts. The schedule is then laid out by :meth:`configure`,
    which needs the world size (``train.build`` calls it before launching; ``on_fit_start`` too).

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
        self.preset_values: dict[str, Any] | None = None
        self._schedule: GrowthSchedule | None = None
        self._configured_for: tuple[int, str, int] | None = None
        if preset is None:
            self._schedule = GrowthSchedule(**self.settings)
        ticks = presets.SCHEDULE_DEFAULTS["tick_kimg_dict"] if tick_kimg is None else tick_kimg
        top = max(10, int(final_resolution).bit_length() - 1)  # the official table: 4..1024
        resolutions = [2**i for i in range(2, top + 1)]
        self.tick_nimg: dict[int, int] = {}
        for res, kimg in per_resolution(ticks, resolutions, "growth.tick_kimg").items():
            if not isinstance(kimg, int | float) or kimg <= 0:
                raise ValueError(f"growth.tick_kimg at {res}x{res} is {kimg!r}; use a number > 0")
            self.tick_nimg[res] = max(1, round(kimg * 1000))
        self._saved_schedule: dict | None = None

    def configure(
        self, world_size: int, precision: str = "fp32", mbstd_group_size: int = 0
    ) -> None:
        """Lay out the schedule of ``preset`` for ``world_size`` devices (no-op without one).

        ``precision`` picks the official per-GPU batch caps (``fp16``/``bf16``: the fp16
        preset's; ``fp32``: the fp32 one's). Where the official rule leaves a per-device
        batch above ``mbstd_group_size`` but not a multiple of it (3 devices: 255 at 4x4), the
        global batch is rounded further down to a multiple of ``world_size *
        mbstd_group_size`` (252): the official minibatch-stddev reshape needs whole groups
        and would fail there. Logs one line naming every batch size that changed from the
        preset's table.

        Raises:
            ValueError: A batch size would become 0 on this many devices.
        """
        caps = "fp16" if precision in ("fp16", "bf16") else "fp32"
        key = (world_size, caps, mbstd_group_size)
        if self.preset is None or self._configured_for == key:
            return
        if self.preset == "auto":
            values = presets.for_world_size(world_size, caps)
        else:
            values = presets.preset(self.preset, caps, num_gpus=world_size)
        batch = dict(values["batch_size"])
        changes = {res: (before, after) for res, before, after in values["changes"]}
        for res, size in batch.items():
            per_device = size // world_size
            if mbstd_group_size >= 2 and per_device > mbstd_group_size:
                whole = size - size % (world_size * mbstd_group_size)
                if whole != size:
                    changes[res] = (changes.get(res, (size,))[0], whole)
                    batch[res] = whole
        values = {**values, "batch_size": batch}
        values["changes"] = [(res, *changes[res]) for res in sorted(changes)]
        settings = dict(self.settings)
        for name in PRESET_KEYS:
            if settings[name] is None:
                settings[name] = values[name]
        self._schedule = GrowthSchedule(**settings)
        self.preset_values = values
        self._configured_for = key
        changed = [
            f"{res}x{res} {before} -> {after}"
            for res, before, after in values["changes"]
            if res <= self.settings["final_resolution"]
        ]
        if changed and self.settings["batch_size"] is None:
            rank_zero_info(
                f"[growth] {values['name']} on {world_size} devices ({caps} caps), global "
                f"batch changed: {', '.join(changed)}"
            )

    @property
    def schedule(self) -> GrowthSchedule:
        """The laid-out schedule (a preset not yet configured is laid out for one device)."""
        if self._schedule is None:
            self.configure(1)
        assert self._schedule is not None
        return self._schedule

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

    def check_world_size(self, world_size: int, mbstd_group_size: int = 0) -> None:
        """Fail if a global batch does not split evenly over ``world_size`` devices, or if a
        per-device batch leaves the minibatch-stddev layer a group of one (a constant).

        Warns once, naming the resolutions, where the per-device batch shrinks the group
        below ``mbstd_group_size`` (it drops to the largest divisor of the batch).
        """
        shrunk: dict[str, str] = {}
        for phase in self.schedule.phases:
            res = f"{phase.resolution}x{phase.resolution}"
            if phase.batch_size % world_size:
                raise ValueError(
                    f"growth.batch_size={phase.batch_size} at {res} does not divide over "
                    f"{world_size} devices; use a multiple of {world_size} (batch sizes are "
                    "global)"
                )
            per_device = phase.batch_size // world_size
            group = mbstd_group(mbstd_group_size, per_device)
            if mbstd_group_size and group == 1:
                raise ValueError(
                    f"growth.batch_size={phase.batch_size} at {res} is {per_device} per device "
                    f"over {world_size} devices: the minibatch-stddev group "
                    f"(model.D.mbstd_group_size={mbstd_group_size}) drops to 1 and the layer "
                    "outputs a constant; use a per-device batch with a divisor >= 2 (e.g. "
                    f"{2 * world_size * max(1, per_device // 2)} in all) or set "
                    "model.D.mbstd_group_size=0"
                )
            if mbstd_group_size and group < mbstd_group_size:
                shrunk[res] = f"{res} (batch {per_device} per device: group {group})"
        if shrunk:
            rank_zero_warn(
                f"model.D.mbstd_group_size={mbstd_group_size} shrinks at "
                + ", ".join(shrunk.values())
                + "; the group is the largest divisor of the per-device batch up to the size"
            )

    def check_resume(self, saved: Mapping[str, Any] | None, nimg: int, source: str) -> None:
        """Fail when this schedule contradicts the one saved in a checkpoint at ``nimg``.

        Args:
            saved: The checkpoint's schedule (this callback's state), or None (older files).
            nimg: Images seen in the checkpoint.
            source: The checkpoint's path, for the message.
        """
        conflicts = self.schedule.resume_conflicts(saved["schedule"], nimg) if saved else []
        if conflicts:
            raise ValueError(
                f"ckpt_path={source} was trained with another growth schedule: "
                + "; ".join(conflicts)
                + ". Resume with its growth.* settings (its run's .hydra/config.yaml); only "
                "phases not begun, the current stable phase and growth.total_kimg may change"
            )

    def state_dict(self) -> dict[str, Any]:
        return {"schedule": self.schedule.state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._saved_schedule = dict(state_dict)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # ``train.build`` laid the schedule out already (a no-op then); a Trainer built by
        # hand gets it here, for the precision the module trains in (``auto`` resolved).
        group = getattr(pl_module, "D", None) and pl_module.D.init_kwargs["mbstd_group_size"]
        precision = getattr(pl_module, "active_precision", "fp32")
        self.configure(trainer.world_size, precision, group or 0)
        self.check_world_size(trainer.world_size)  # the group check ran before the launch
        if self._saved_schedule is not None:
            self.check_resume(self._saved_schedule, pl_module.cur_nimg, str(trainer.ckpt_path))
        if trainer.datamodule is None or not hasattr(trainer.datamodule, "set_plan"):
            raise TypeError("ProgressiveGrowth needs a ProGANDataModule passed to trainer.fit")
        rank_zero_info("[growth] schedule:\n" + self.schedule.describe())
        pl_module.progress.schedule = self.schedule
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
