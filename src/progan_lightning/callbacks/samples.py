"""Sample grids from G_ema with fixed latents, written as PNG and sent to every logger."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from progan_lightning.imaging import make_grid, save_png


def log_image(loggers: list[Logger], key: str, image: np.ndarray, step: int) -> None:
    """Send an [H, W, C] uint8 image to each logger that can show images."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step, dataformats="HWC")


class SampleGrid(L.Callback):
    """At the end of every tick (and so every phase), renders G_ema on fixed latents.

    Files: ``<dirpath>/fakes_kimg<kimg>_res<res>.png``, plus ``reals_res<res>.png`` for the
    first real batch of each resolution (what G is asked to imitate).

    Args:
        dirpath: Folder for the PNG files (``${paths.output_dir}/samples``).
        num_images: Images per grid.
        tile: Display size of each image in the grid (images are upscaled to it).
        seed: Seed of the fixed latents.
    """

    def __init__(self, dirpath: str | Path, num_images: int = 64, tile: int = 64, seed: int = 0):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.num_images = num_images
        self.tile = tile
        self.seed = seed
        self._reals_written: set[int] = set()

    def latents(self, z_dim: int, device: torch.device) -> torch.Tensor:
        """The fixed latents [N, z_dim], identical on every call and every run."""
        gen = torch.Generator().manual_seed(self.seed)
        return torch.randn(self.num_images, z_dim, generator=gen).to(device)

    @rank_zero_only
    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        res = batch.shape[-1]
        if res in self._reals_written:
            return
        self._reals_written.add(res)
        grid = make_grid(batch[: self.num_images], tile=self.tile)
        save_png(self.dirpath / f"reals_res{res}.png", grid)
        log_image(trainer.loggers, "samples/reals", grid, trainer.global_step)

    @rank_zero_only
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        kimg = pl_module.cur_nimg / 1000
        with torch.no_grad():
            fakes = pl_module(self.latents(pl_module.G_ema.z_dim, pl_module.device))
        grid = make_grid(fakes, tile=self.tile)
        res = fakes.shape[-1]
        save_png(self.dirpath / f"fakes_kimg{kimg:09.3f}_res{res}.png", grid)
        log_image(trainer.loggers, "samples/fakes", grid, trainer.global_step)
