"""Progress a person can read: a bar on a terminal, one line per tick anywhere else.

Both show kimg, resolution, phase and alpha, the losses and an ETA to ``total_kimg`` from the
measured speed of each stage (:meth:`GrowthSchedule.remaining_seconds`). Without a terminal
(SLURM, nohup, CI, a pipe) the line per tick also has img/s, sec/kimg, the elapsed time and
the peak device memory, as the official code and stylegan2-ada print.
"""

from __future__ import annotations

import resource
import sys
import time
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar, Timer, TQDMProgressBar
from lightning.pytorch.utilities import rank_zero_info

from progan_lightning.console import format_duration, is_terminal
from progan_lightning.progress import Progress


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

    def eta(self, trainer: L.Trainer, progress: Progress) -> float | None:
        """Seconds to ``total_kimg``, or to ``trainer.max_time`` where that comes first."""
        schedule, nimg = progress.schedule, progress.cur_nimg
        eta = None if schedule is None else schedule.remaining_seconds(nimg, self.sec_per_img)
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


class GrowthProgressBar(TQDMProgressBar):
    """TQDM bar with short metric names (``kimg``, ``resolution``, ``alpha``, ``D``, ``G``),
    the ETA to ``total_kimg`` and the tick number in place of Lightning's epoch."""

    def __init__(self, refresh_rate: int = 1) -> None:
        super().__init__(refresh_rate=refresh_rate)
        self.speed = StageSpeed()

    def get_metrics(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, Any]:
        items = super().get_metrics(trainer, pl_module)
        items.pop("v_num", None)
        items = {key.rsplit("/", 1)[-1]: value for key, value in items.items()}
        items["ETA"] = format_duration(self.speed.eta(trainer, pl_module.progress))
        return items

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_start(trainer)
        self.speed.tick_start(pl_module.cur_nimg)
        self.train_progress_bar.set_description(f"tick {trainer.current_epoch}")

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.speed.tick_end(pl_module.cur_nimg, pl_module.resolution)
        super().on_train_epoch_end(trainer, pl_module)


class TickLog(ProgressBar):
    """One plain line per tick, for logs that are not a terminal::

        tick 12  kimg 1200.0  res 64  fade64 alpha 0.400  D -1.234  G 4.567  img/s 230.1
        sec/kimg 4.35  elapsed 1h02m  ETA 3d04h  peak 3.21 GB GPU

    (one line in the log). Being a ``ProgressBar``, it replaces Lightning's own bar.
    """

    def __init__(self) -> None:
        super().__init__()
        self.speed = StageSpeed()
        self._enabled = True

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.speed.tick_start(pl_module.cur_nimg)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        nimg = pl_module.cur_nimg
        self.speed.tick_end(nimg, pl_module.resolution)
        if not self._enabled or not trainer.is_global_zero:
            return
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


def progress_bar(refresh_rate: int = 10) -> ProgressBar:
    """:class:`GrowthProgressBar` when stdout is a terminal, else :class:`TickLog`."""
    return GrowthProgressBar(refresh_rate) if is_terminal() else TickLog()
