"""Sample grids from G_ema with fixed latents, written as PNG and sent to every logger."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only

from progan_lightning.callbacks.ticks import phase_or_run_ended
from progan_lightning.data.stream import split_batch
from progan_lightning.imaging import (
    label_rows,
    make_grid,
    save_gif,
    save_png,
    to_float,
)
from progan_lightning.loggers import log_animation, log_image, log_step
from progan_lightning.networks import seeded_latents, slerp


def row_per_class(rows: int, cols: int, num_classes: int) -> torch.Tensor:
    """Labels of a ``rows x cols`` grid in the official ``row_per_class`` layout: every image
    of row ``y`` is of class ``y % num_classes`` (``setup_snapshot_image_grid`` in the
    official train.py). [rows * cols] int64, row-major"""
    return (torch.arange(rows * cols) // cols) % num_classes


def images_of_classes(labels: np.ndarray, wanted: np.ndarray, seed: int) -> np.ndarray:
    """Indices of images whose labels are ``wanted``: for each class a seeded random order of
    its images, taken in turn (cycling when a class has fewer images than it is wanted).

    Args:
        labels: Class of every image. int [N]
        wanted: Class wanted in each slot; each must have at least one image. int [M]
        seed: Seed of the orders.

    Returns:
        Image indices. int64 [M]
    """
    rng = np.random.default_rng(seed)
    out = np.empty(len(wanted), dtype=np.int64)
    for c in np.unique(wanted):
        pool = rng.permutation(np.flatnonzero(labels == c))
        slots = np.flatnonzero(wanted == c)
        out[slots] = pool[np.arange(len(slots)) % len(pool)]
    return out


def level_images(trainer: L.Trainer, res: int, index: np.ndarray) -> torch.Tensor:
    """Images ``index`` of the datamodule's prepared level ``res``: float [NCHW] in [-1, 1]."""
    return to_float(np.asarray(trainer.datamodule.images(res)[index]))


class SampleGrid(L.Callback):
    """At the end of every tick (and so every phase), renders G_ema on fixed latents.

    Files: ``<dirpath>/fakes_kimg<kimg>_res<res>.png``, plus ``reals_res<res>.png`` for the
    first real batch of each resolution (what G is asked to imitate), and at every phase end
    ``interp_kimg<kimg>_res<res>.gif``: a looping spherical interpolation through
    ``interp_keyframes`` latents for ``interp_images`` images side by side.

    For a class-conditional module (``pl_module.num_classes`` C > 0) the grids take the
    official ``row_per_class`` layout: as many columns as the unconditional grid, at least C
    rows, every image of row ``y`` of class ``y % C``, and the class name of each row in a
    left margin. The reals grid shows seeded picks of each row's class from the dataset
    (``trainer.datamodule.labels``), at the resolution of the batch. In the animation,
    column ``j`` keeps class ``j % C``.

    Args:
        dirpath: Folder for the PNG files (``${paths.output_dir}/samples``).
        num_images: Images per grid.
        tile: Display size of each image in the grid (images are upscaled to it).
        seed: Seed of the fixed latents.
        interp_images: Images per animation frame (0 = no animation).
        interp_keyframes: Latents the animation passes through (it loops back to the first).
        interp_steps: Frames between two keyframes.
    """

    def __init__(
        self,
        dirpath: str | Path,
        num_images: int = 64,
        tile: int = 64,
        seed: int = 0,
        interp_images: int = 8,
        interp_keyframes: int = 4,
        interp_steps: int = 12,
    ):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.num_images = num_images
        self.tile = tile
        self.seed = seed
        self.interp_images = interp_images
        self.interp_keyframes = interp_keyframes
        self.interp_steps = interp_steps
        self._reals_written: set[int] = set()

    def latents(self, z_dim: int, device: torch.device, count: int | None = None) -> torch.Tensor:
        """The fixed latents [count, z_dim] (default ``num_images``), identical on every call
        and every run."""
        return seeded_latents((count or self.num_images, z_dim), self.seed).to(device)

    def class_layout(self, num_classes: int) -> tuple[int, int]:
        """Rows and columns of a conditional grid: the columns of the unconditional grid of
        ``num_images``, and at least ``num_classes`` rows."""
        cols = math.ceil(math.sqrt(self.num_images))
        return max(math.ceil(self.num_images / cols), num_classes), cols

    def class_grid(self, images: torch.Tensor, pl_module: L.LightningModule) -> np.ndarray:
        """A ``row_per_class`` grid of ``images`` [NCHW] with each row's class name."""
        rows, cols = self.class_layout(pl_module.num_classes)
        names = [pl_module.class_names[y % pl_module.num_classes] for y in range(rows)]
        return label_rows(make_grid(images, tile=self.tile, cols=cols), names)

    @rank_zero_only
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        images, _ = split_batch(batch)
        res = images.shape[-1]
        if res in self._reals_written:
            return
        self._reals_written.add(res)
        if getattr(pl_module, "num_classes", 0):
            rows, cols = self.class_layout(pl_module.num_classes)
            wanted = row_per_class(rows, cols, pl_module.num_classes).numpy()
            index = images_of_classes(np.asarray(trainer.datamodule.labels), wanted, self.seed)
            grid = self.class_grid(level_images(trainer, res, index), pl_module)
        else:
            grid = make_grid(self.real_images(trainer, res, images), tile=self.tile)
        save_png(self.dirpath / f"reals_res{res}.png", grid)
        log_image(trainer.loggers, "samples/reals", grid, log_step(pl_module))

    def real_images(self, trainer: L.Trainer, res: int, batch: torch.Tensor) -> torch.Tensor:
        """``num_images`` reals for the grid, as many as the fakes grid shows: a seeded draw
        from the whole level, or the first batch's where the datamodule holds no levels.

        Returns:
            float [NCHW] in [-1, 1].
        """
        if not hasattr(trainer.datamodule, "images"):
            return batch[: self.num_images]
        count = len(trainer.datamodule.images(res))
        rng = np.random.default_rng(self.seed)
        index = np.sort(rng.choice(count, size=min(self.num_images, count), replace=False))
        return level_images(trainer, res, index)

    @torch.no_grad()
    def fakes_grid(self, pl_module: L.LightningModule) -> tuple[np.ndarray, int]:
        """G_ema's grid on the fixed latents (and labels), and its resolution."""
        z_dim, device = pl_module.G_ema.z_dim, pl_module.device
        if not getattr(pl_module, "num_classes", 0):
            fakes = pl_module(self.latents(z_dim, device))
            return make_grid(fakes, tile=self.tile), fakes.shape[-1]
        rows, cols = self.class_layout(pl_module.num_classes)
        labels = row_per_class(rows, cols, pl_module.num_classes).to(device)
        fakes = pl_module(self.latents(z_dim, device, rows * cols), labels=labels)
        return self.class_grid(fakes, pl_module), fakes.shape[-1]

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        kimg = pl_module.cur_nimg / 1000
        grid, res = self.fakes_grid(pl_module)
        save_png(self.dirpath / f"fakes_kimg{kimg:09.3f}_res{res}.png", grid)
        log_image(trainer.loggers, "samples/fakes", grid, log_step(pl_module))
        if self.interp_images > 0 and phase_or_run_ended(trainer, pl_module):
            path = self.dirpath / f"interp_kimg{kimg:09.3f}_res{res}.gif"
            save_gif(path, self.interpolation_frames(pl_module))
            log_animation(trainer.loggers, "samples/interpolation", path)

    @torch.no_grad()
    def interpolation_frames(self, pl_module: L.LightningModule) -> list[np.ndarray]:
        """Frames ([H, W, C] uint8) of the looping latent interpolation, at alpha 1 (for a
        conditional module, column ``j`` keeps class ``j % C``)."""
        z_dim = pl_module.G_ema.z_dim
        keys = seeded_latents((self.interp_keyframes, self.interp_images, z_dim), self.seed + 1)
        num_classes = getattr(pl_module, "num_classes", 0)
        columns = torch.arange(self.interp_images, device=pl_module.device)
        extra = {"labels": columns % num_classes} if num_classes else {}
        frames = []
        for k in range(self.interp_keyframes):
            a, b = keys[k], keys[(k + 1) % self.interp_keyframes]
            for step in range(self.interp_steps):
                z = slerp(a, b, step / self.interp_steps).to(pl_module.device)
                images = pl_module(z, alpha=1.0, **extra)
                frames.append(make_grid(images, tile=self.tile, cols=self.interp_images))
        return frames
