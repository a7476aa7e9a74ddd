"""Quality metrics of G_ema (SWD, MS-SSIM, FID, IS) during training, plus learning rates and
throughput; results go to every logger and to a JSON-lines file in the run dir."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics import Metric

from progan_lightning.callbacks.ticks import phase_or_run_ended
from progan_lightning.loggers import log_values
from progan_lightning.metrics.registry import METRICS, prepare_metrics
from progan_lightning.networks import seeded_latents

# Keys of the `metrics` config node that are settings, not metric names.
SETTINGS = ("every_kimg", "num_images", "batch_size")


def _as_logged(value: float) -> float:
    """``value`` rounded to float32, exactly as the module's own ``self.log`` reports it."""
    return float(np.float32(value))


class MetricsCallback(L.Callback):
    """Evaluates G_ema at the end of every phase and every ``every_kimg`` thousand images.

    Real-image statistics are computed once per resolution and cached (only the current
    resolution's are kept: training never goes back down). Every process generates its share
    of the images and the metric states are synced, so the numbers are the same on any number
    of devices (the Inception Score's splits excepted, see its class). Logged as
    ``metrics/swd_<res>``, ``metrics/swd_avg``, ``metrics/ms_ssim``, ``metrics/fid``,
    ``metrics/is_mean``, ``metrics/is_std``; each evaluation is appended as one JSON line to
    ``jsonl_path``.

    With mirror augmentation on (``datamodule.mirror``), the real images fed to the metrics
    are mirrored as the official ``evaluate_metrics`` does (each flipped left-right with
    probability 0.5), from a seeded draw per image.

    For a class-conditional module (``pl_module.num_classes`` > 0), fake ``i`` gets the label
    of real image ``i`` of the seeded choice fed to the metrics
    (``trainer.datamodule.labels``), so the fakes have the class mix of the reals.

    A broken generator gets no number: if G_ema produces any non-finite value during an
    evaluation (on any process), every metric of that evaluation is reported as NaN to the
    loggers and as ``null`` in the JSON line (strict JSON has no NaN), with
    ``"fakes_finite": false``.

    Args:
        metrics: The ``metrics`` config: settings ``every_kimg`` (None = phase ends only),
            ``num_images`` (real and generated images per evaluation, at most the dataset
            size) and ``batch_size``
            (generator batch), plus ``{name: options}`` for each metric to compute (see
            ``progan_lightning.metrics.registry.METRICS``).
        jsonl_path: File that receives one JSON object per evaluation.
        seed: Seed of the evaluation latents and of the choice of real images.
    """

    def __init__(self, metrics: Mapping[str, Any], jsonl_path: str | Path, seed: int = 0) -> None:
        super().__init__()
        every_kimg = metrics.get("every_kimg")
        self.every_nimg = None if not every_kimg else max(1, round(every_kimg * 1000))
        self.num_images = int(metrics.get("num_images", 512))
        self.batch_size = int(metrics.get("batch_size", 64))
        if self.num_images < 2 or self.batch_size < 1:
            raise ValueError(
                f"metrics.num_images={self.num_images} must be >= 2 and "
                f"metrics.batch_size={self.batch_size} >= 1"
            )
        self.jsonl_path = Path(jsonl_path)
        self.seed = seed
        # Fail at start-up (missing packages or weights), never mid-run.
        self.options = prepare_metrics({k: v for k, v in metrics.items() if k not in SETTINGS})
        self.metrics: dict[int, dict[str, Metric]] = {}
        self._last_nimg = -1
        self._reals_fed: int | None = None

    # When to evaluate.

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        nimg = pl_module.cur_nimg
        if not self.options or nimg == self._last_nimg or trainer.sanity_checking:
            return
        phase_end = phase_or_run_ended(trainer, pl_module)
        periodic = self.every_nimg is not None and (
            nimg // self.every_nimg > max(self._last_nimg, 0) // self.every_nimg
        )
        if phase_end or periodic:
            self.evaluate(trainer, pl_module, alpha=1.0 if phase_end else pl_module.alpha)

    # Evaluation.

    def _metrics_for(self, resolution: int, device: torch.device) -> dict[str, Metric]:
        if resolution not in self.metrics:
            self.metrics = {  # drop lower resolutions: they never come back
                resolution: {
                    name: METRICS[name].build(resolution, **options).to(device)
                    for name, options in self.options.items()
                }
            }
        return self.metrics[resolution]

    def _shard(self, trainer: L.Trainer, n: int) -> np.ndarray:
        """This process's share of ``range(n)``."""
        return np.arange(trainer.global_rank, n, trainer.world_size)

    def _choose_reals(self, count: int) -> tuple[np.ndarray, np.random.Generator]:
        """The seeded choice of real images among ``count``: their indices in draw order
        (``min(num_images, count)`` of them), and the generator for the draws that follow."""
        rng = np.random.default_rng(self.seed)
        return rng.permutation(count)[: min(self.num_images, count)], rng

    def _feed_reals(
        self, trainer: L.Trainer, metrics: list[Metric], resolution: int, device: torch.device
    ) -> None:
        images = trainer.datamodule.images(resolution)  # uint8 [N, C, res, res]
        order, rng = self._choose_reals(len(images))
        n = len(order)
        # The official evaluate_metrics mirrors the reals fed to every metric when the run
        # trained with mirror augmentation (misc.apply_mirror_augment: each image flipped
        # left-right with probability 0.5). Here the coin of each chosen image is drawn from
        # the seeded generator, so every process agrees and the set is the same on any number
        # of devices.
        flip = np.zeros(len(images), dtype=bool)
        if getattr(trainer.datamodule, "mirror", False):
            flip[order] = rng.random(n) < 0.5
        chosen = np.sort(order[self._shard(trainer, n)])
        for start in range(0, len(chosen), self.batch_size):
            index = chosen[start : start + self.batch_size]
            batch = torch.from_numpy(np.asarray(images[index]))
            mirrored = torch.from_numpy(flip[index]).view(-1, 1, 1, 1)
            batch = torch.where(mirrored, batch.flip(3), batch)  # [NCHW]
            for metric in metrics:
                metric.update(batch.to(device), real=True)

    @torch.no_grad()
    def evaluate(
        self, trainer: L.Trainer, pl_module: L.LightningModule, alpha: float | None = None
    ) -> dict[str, float]:
        """Compute every metric on G_ema now (all processes must call it); log and return."""
        start = time.perf_counter()
        device = pl_module.device
        resolution = pl_module.resolution
        # As many generated as real images (SWD compares sets of equal size).
        order, _ = self._choose_reals(len(trainer.datamodule.images(resolution)))
        num_images = len(order)
        shard = torch.from_numpy(self._shard(trainer, num_images))
        z = seeded_latents((num_images, pl_module.G_ema.z_dim), self.seed)[shard]
        labels = None
        if getattr(pl_module, "num_classes", 0):  # The labels of the chosen reals. [N]
            labels = torch.from_numpy(np.asarray(trainer.datamodule.labels)[order])[shard]
        metrics = self._metrics_for(resolution, device)

        reals = [m for name, m in metrics.items() if METRICS[name].needs_reals]
        if reals and self._reals_fed != resolution:
            self._feed_reals(trainer, reals, resolution, device)
            self._reals_fed = resolution
        nonfinite = torch.zeros((), dtype=torch.bool, device=device)
        for i in range(0, len(z), self.batch_size):
            batch = slice(i, i + self.batch_size)
            extra = {} if labels is None else {"labels": labels[batch].to(device)}
            fakes = pl_module(z[batch].to(device), alpha=alpha, **extra)
            nonfinite |= ~torch.isfinite(fakes).all()
            for metric in metrics.values():
                metric.update(fakes, real=False)
        finite = trainer.strategy.reduce_boolean_decision(not nonfinite.item(), all=True)

        values: dict[str, float] = {}
        for metric in metrics.values():
            values.update({f"metrics/{k}": float(v) for k, v in metric.compute().items()})
            metric.reset()  # keeps the real statistics
        if not finite:  # the numbers of quantized NaNs mean nothing (SWD 776, MS-SSIM 1.0)
            values = dict.fromkeys(values, math.nan)
        self._last_nimg = pl_module.cur_nimg
        for key, value in values.items():
            trainer.callback_metrics[key] = torch.tensor(value)
        seconds = time.perf_counter() - start
        self._record(trainer, pl_module, resolution, num_images, values, finite, seconds)
        return values

    @rank_zero_only
    def _record(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        resolution: int,
        num_images: int,
        values: dict[str, float],
        finite: bool,
        seconds: float,
    ) -> None:
        kimg = pl_module.cur_nimg / 1000
        log_values(trainer, {**values, "progress/kimg": _as_logged(kimg)})
        row = {
            "kimg": kimg,
            "resolution": resolution,
            "phase": pl_module.phase_index,
            "num_images": num_images,
            **{k: (v if math.isfinite(v) else None) for k, v in values.items()},
            "fakes_finite": finite,
            "seconds": round(seconds, 3),
            "timestamp": time.time(),
        }
        self.jsonl_path.parent.mkdir(parents=True, exist_ok=True)
        with self.jsonl_path.open("a") as f:
            f.write(json.dumps(row) + "\n")


class TrainingRates(L.Callback):
    """Logs learning rates (``lr/G``, ``lr/D``) and training throughput
    (``throughput/img_per_sec``, ``throughput/sec_per_kimg``; evaluation time excluded) once
    per tick."""

    def __init__(self) -> None:
        super().__init__()
        self._start: tuple[float, int] | None = None
        self._last_batch_end = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = (time.perf_counter(), pl_module.cur_nimg)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args) -> None:
        self._last_batch_end = time.perf_counter()

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        values = {"progress/kimg": _as_logged(pl_module.cur_nimg / 1000)}
        for name, opt in zip(("G", "D"), trainer.optimizers, strict=False):
            values[f"lr/{name}"] = float(opt.param_groups[0]["lr"])
        if self._start is not None:
            seconds = self._last_batch_end - self._start[0]
            images = pl_module.cur_nimg - self._start[1]
            if seconds > 0 and images > 0:
                values["throughput/img_per_sec"] = images / seconds
                values["throughput/sec_per_kimg"] = seconds / images * 1000
        log_values(trainer, values)
