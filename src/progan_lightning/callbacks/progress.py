"""Progress a person can read: a bar on a terminal, one line per tick anywhere else.

Both show kimg, resolution, phase and alpha, the losses and an ETA to ``total_kimg`` from the
measured speed of each stage (:func:`remaining_seconds`). Without a terminal
(SLURM, nohup, CI, a pipe) the line per tick also has img/s, sec/kimg, the elapsed time and
the peak device memory, as the official code and stylegan2-ada print, and a line comes at
least every ``tick_seconds`` between ticks. Both say at the start what the run is in for
(the device, the networks' sizes, the schedule's length) and, a few seconds in, a first
estimate of its time, with a warning where a CPU is in for days (:class:`Forecast`).
"""

from __future__ import annotations

import logging
import math
import resource
import sys
import time
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, Timer, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info

from progan_lightning.console import format_duration, is_terminal
from progan_lightning.progress import TrainingProgress
from progan_lightning.schedule import GrowthSchedule

log = logging.getLogger(__name__)


def remaining_seconds(
    schedule: GrowthSchedule, nimg: int, sec_per_img: Mapping[int, float]
) -> float | None:
    """Estimated seconds from ``nimg`` images to the schedule's ``total_nimg``.

    Args:
        schedule: The run's growth schedule.
        nimg: Images seen.
        sec_per_img: Measured seconds per image, by resolution. A resolution not yet
            measured is extrapolated from the highest measured one by the growth per
            doubling of the two highest measured resolutions (clamped to 1-4x), or 2x
            while only one is measured. Not by pixel count: per-image cost grows far
            slower than the pixels (channels shrink as resolution grows; small
            networks are bound by per-step overhead), so 4x per doubling would put hours on
            a 10-minute run. The estimate tightens as each stage is reached.

    Returns:
        Seconds, or None without any measurement.
    """
    if not sec_per_img:
        return None
    top = max(sec_per_img)
    below = sec_per_img.get(top // 2)
    growth = 2.0 if below is None else min(max(sec_per_img[top] / below, 1.0), 4.0)
    seconds = 0.0
    for phase in schedule.phases:
        images = phase.images(schedule.total_nimg, since=nimg)
        if images > 0:
            res = phase.resolution
            doublings = math.log2(res / top)
            seconds += images * sec_per_img.get(res, sec_per_img[top] * growth**doublings)
    return seconds


class StageSpeed:
    """Seconds per image of each resolution, measured over whole ticks (evaluation and
    checkpoint time excluded), and the ETA they give."""

    def __init__(self) -> None:
        self.sec_per_img: dict[int, float] = {}
        self.started = time.perf_counter()
        self._tick: tuple[float, int] | None = None
        self._totals: dict[int, tuple[float, int]] = {}  # seconds and images per resolution
        self.last: tuple[float, int] = (0.0, 0)  # seconds and images of the last tick

    def tick_start(self, nimg: int) -> None:
        self._tick = (time.perf_counter(), nimg)

    def tick_end(self, nimg: int, resolution: int) -> None:
        """Close a tick. The rate of a resolution is over all its ticks so far: the short
        tick that ends a phase (a few batches, plus the phase-end work) does not set it."""
        if self._tick is None:
            return
        seconds, images = time.perf_counter() - self._tick[0], nimg - self._tick[1]
        if images > 0 and seconds > 0:
            total_s, total_i = self._totals.get(resolution, (0.0, 0))
            self._totals[resolution] = (total_s + seconds, total_i + images)
            self.sec_per_img[resolution] = (total_s + seconds) / (total_i + images)
            self.last = (seconds, images)
        self._tick = None

    def running(self, nimg: int, resolution: int) -> dict[int, float]:
        """:attr:`sec_per_img` with the tick under way counted in at ``resolution``: an
        estimate before the first tick of a stage ends."""
        if self._tick is None:
            return dict(self.sec_per_img)
        seconds, images = time.perf_counter() - self._tick[0], nimg - self._tick[1]
        if images <= 0 or seconds <= 0:
            return dict(self.sec_per_img)
        total_s, total_i = self._totals.get(resolution, (0.0, 0))
        return {**self.sec_per_img, resolution: (total_s + seconds) / (total_i + images)}

    def eta(
        self, trainer: L.Trainer, progress: TrainingProgress, resolution: int | None = None
    ) -> float | None:
        """Seconds to ``total_kimg``, or to ``trainer.max_time`` where that comes first; with
        ``resolution`` (the current one), the tick under way counts too."""
        schedule, nimg = progress.schedule, progress.cur_nimg
        rates = self.sec_per_img if resolution is None else self.running(nimg, resolution)
        eta = None if schedule is None else remaining_seconds(schedule, nimg, rates)
        timer = next((c for c in trainer.callbacks if isinstance(c, Timer)), None)
        left = None if timer is None else timer.time_remaining("train")
        if eta is not None and left is not None:
            eta = min(eta, left)
        return eta


def peak_memory(device: torch.device) -> str:
    """Peak memory of the device (CUDA) or of this process (CPU: max resident set)."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GB GPU"
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss_bytes = rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB
    return f"{rss_bytes / 2**30:.2f} GB RAM"


def count(n: int) -> str:
    """``12.9 K``, ``23.1 M`` (parameters)."""
    return f"{n / 1e6:.1f} M" if n >= 1e6 else f"{n / 1e3:.1f} K"


class Forecast:
    """What a run is in for, said early: at the start the device, the networks' sizes and the
    schedule's length; ``first_estimate_seconds`` into training (or at the first tick, if
    sooner) a first estimate of the time to the end, and a warning where that is more than
    ``cpu_warning_hours`` on a CPU (a schedule sized for GPUs, e.g. an official preset).

    Args:
        speed: The bar's measured speeds.
        first_estimate_seconds: Training seconds before the first estimate.
        cpu_warning_hours: Estimated hours on a CPU above which the run warns; null: never.
    """

    def __init__(
        self,
        speed: StageSpeed,
        first_estimate_seconds: float = 10.0,
        cpu_warning_hours: float | None = 12.0,
    ) -> None:
        self.speed = speed
        self.first_estimate_seconds = first_estimate_seconds
        self.cpu_warning_hours = cpu_warning_hours
        self.started: float | None = None
        self.estimated = False

    def start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the device, the networks' sizes and the schedule (at ``on_train_start``)."""
        self.started = time.perf_counter()
        self.estimated = False
        if not trainer.is_global_zero:
            return
        device, threads = pl_module.device, torch.get_num_threads()
        where = (
            torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else f"{device.type} ({threads} thread{'s' if threads > 1 else ''})"
        )
        processes = trainer.world_size
        sizes = ", ".join(
            f"{name} {count(sum(p.numel() for p in getattr(pl_module, name).parameters()))}"
            for name in ("G", "D")
            if isinstance(getattr(pl_module, name, None), torch.nn.Module)
        )
        log.info(
            f"training on {where}"
            + (f" x {processes} processes" if processes > 1 else "")
            + f", precision {trainer.precision}"
            + (f"; parameters: {sizes}" if sizes else "")
        )
        schedule = pl_module.progress.schedule
        if schedule is not None:
            first, last = schedule.phases[0].resolution, schedule.phases[-1].resolution
            log.info(
                f"schedule: {schedule.total_nimg / 1000:g} kimg in {len(schedule.phases)} "
                f"phases, {first}x{first} to {last}x{last}; a first estimate of its time "
                f"follows within {format_duration(self.first_estimate_seconds)}"
            )

    def check(
        self, trainer: L.Trainer, pl_module: L.LightningModule, tick_ended: bool = False
    ) -> None:
        """Log the first estimate once it is due (``first_estimate_seconds`` in, or at the
        first tick's end), with the CPU warning where it applies."""
        if self.estimated or self.started is None or not trainer.is_global_zero:
            return
        elapsed = time.perf_counter() - self.started
        if not tick_ended and elapsed < self.first_estimate_seconds:
            return
        progress = pl_module.progress
        resolution = pl_module.resolution
        rates = self.speed.running(progress.cur_nimg, resolution)
        eta = self.speed.eta(trainer, progress, resolution)
        if eta is None or resolution not in rates:
            return
        self.estimated = True
        schedule = progress.schedule
        total = "" if schedule is None else f" to {schedule.total_nimg / 1000:g} kimg"
        log.info(
            f"first estimate: {1 / rates[resolution]:.1f} img/s at {resolution}x{resolution}, "
            f"ETA {format_duration(eta)}{total} (it tightens as each stage is measured)"
        )
        hours = self.cpu_warning_hours
        if pl_module.device.type == "cpu" and hours is not None and eta > hours * 3600:
            log.warning(
                f"this schedule is sized for GPUs: on the CPU its first estimate is "
                f"{format_duration(eta)}{total}. Stop sooner with growth.total_kimg=N or "
                "trainer.max_time=DD:HH:MM:SS, train on a GPU (trainer=gpu), or run the CPU "
                "quickstart (experiment=quickstart)"
            )


class GrowthProgressBar(TQDMProgressBar):
    """TQDM bar with short metric names (``kimg``, ``resolution``, ``alpha``, ``D``, ``G``),
    the ETA to ``total_kimg`` and the tick number in place of Lightning's epoch."""

    def __init__(self, refresh_rate: int = 1, **forecast: Any) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.speed = StageSpeed()
        self.forecast = Forecast(self.speed, **forecast)

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items = {key.rsplit("/", 1)[-1]: value for key, value in items.items()}
        eta = self.speed.eta(trainer, pl_module.progress, pl_module.resolution)
        items["ETA"] = format_duration(eta)
        return items

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self.forecast.start(trainer, pl_module)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        self.forecast.check(trainer, pl_module)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer)
        self.speed.tick_start(pl_module.cur_nimg)
        self.train_progress_bar.set_description(f"tick {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.forecast.check(trainer, pl_module, tick_ended=True)
        self.speed.tick_end(pl_module.cur_nimg, pl_module.resolution)
        super().on_train_epoch_end(trainer, pl_module)


class TickLog(ProgressBar):
    """One plain line per tick, for logs that are not a terminal::

        tick 12  kimg 1200.0  res 64  fade64 alpha 0.400  D -1.234  G 4.567  img/s 230.1
        sec/kimg 4.35  elapsed 1h02m  ETA 3d04h  peak 3.21 GB GPU

    (one line in the log), and between ticks a shorter one at least every ``tick_seconds``::

        kimg 1203.5  res 64  fade64 alpha 0.412  img/s 228.4  elapsed 1h03m  ETA 3d04h
        (tick 13 under way)

    Being a ``ProgressBar``, it replaces Lightning's own bar.

    Args:
        tick_seconds: Most seconds between two lines (null: lines at ticks only).
        forecast: :class:`Forecast`'s settings.
    """

    def __init__(self, tick_seconds: float | None = 60.0, **forecast: Any) -> None:
        super().__init__()
        self.speed = StageSpeed()
        self.forecast = Forecast(self.speed, **forecast)
        self.tick_seconds = tick_seconds
        self._last_line = time.perf_counter()
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.forecast.start(trainer, pl_module)
        self._last_line = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.speed.tick_start(pl_module.cur_nimg)

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        self.forecast.check(trainer, pl_module)
        now = time.perf_counter()
        if self.tick_seconds is None or now - self._last_line < self.tick_seconds:
            return
        self._last_line = now
        eta = self.speed.eta(trainer, pl_module.progress, pl_module.resolution)
        rates = self.speed.running(pl_module.cur_nimg, pl_module.resolution)
        rate = rates.get(pl_module.resolution)
        log.info(
            f"kimg {pl_module.cur_nimg / 1000:.1f}  res {pl_module.resolution}  "
            f"{pl_module.phase_name} alpha {pl_module.alpha:.3f}"
            + (f"  img/s {1 / rate:.1f}" if rate else "")
            + f"  elapsed {format_duration(now - self.speed.started)}"
            f"  ETA {format_duration(eta)}  (tick {trainer.current_epoch} under way)"
        )

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        nimg = pl_module.cur_nimg
        if self._enabled:
            self.forecast.check(trainer, pl_module, tick_ended=True)
        self.speed.tick_end(nimg, pl_module.resolution)
        if not self._enabled or not trainer.is_global_zero:
            return
        self._last_line = time.perf_counter()
        metrics = trainer.callback_metrics
        losses = "".join(
            f"  {name} {float(metrics[key]):.3f}"
            for name, key in (("D", "loss/D"), ("G", "loss/G"), ("p", "augment/p"))
            if key in metrics
        )
        seconds, images = self.speed.last
        rate = (
            f"  img/s {images / seconds:.1f}  sec/kimg {seconds / images * 1000:.2f}"
            if images
            else ""
        )
        rank_zero_info(
            f"tick {trainer.current_epoch}  kimg {nimg / 1000:.1f}  res {pl_module.resolution}"
            f"  {pl_module.phase_name} alpha {pl_module.alpha:.3f}{losses}{rate}"
            f"  elapsed {format_duration(time.perf_counter() - self.speed.started)}"
            f"  ETA {format_duration(self.speed.eta(trainer, pl_module.progress))}"
            f"  peak {peak_memory(pl_module.device)}"
        )


def progress_bar(
    refresh_rate: int = 10,
    tick_seconds: float | None = 60.0,
    first_estimate_seconds: float = 10.0,
    cpu_warning_hours: float | None = 12.0,
) -> ProgressBar:
    """:class:`GrowthProgressBar` when stdout is a terminal, else :class:`TickLog`; both
    with a :class:`Forecast` of ``first_estimate_seconds`` and ``cpu_warning_hours``."""
    forecast = {
        "first_estimate_seconds": first_estimate_seconds,
        "cpu_warning_hours": cpu_warning_hours,
    }
    if is_terminal():
        return GrowthProgressBar(refresh_rate, **forecast)
    return TickLog(tick_seconds, **forecast)
