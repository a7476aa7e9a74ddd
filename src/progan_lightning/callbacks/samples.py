"""Sample grids from G_ema with fixed latents, written as PNG and sent to every logger."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from progan_lightning.callbacks.growth import find_growth
from progan_lightning.imaging import atomic_write, make_grid, save_png, to_pil
from progan_lightning.networks import seeded_latents


def phase_ended(trainer: L.Trainer, pl_module: L.LightningModule) -> bool:
    """Whether the epoch that just ended closed a growth phase (or the run)."""
    growth = find_growth(trainer)
    if growth is None:
        return trainer.should_stop
    nimg = pl_module.cur_nimg
    return growth.done(pl_module) or growth.schedule.phase_at(nimg).index != pl_module.phase_index


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between latents [N, z_dim] (on the sphere of their norms)."""
    na, nb = a / a.norm(dim=1, keepdim=True), b / b.norm(dim=1, keepdim=True)
    omega = torch.acos((na * nb).sum(1, keepdim=True).clamp(-1.0 + 1e-7, 1.0 - 1e-7))
    so = torch.sin(omega)
    return (torch.sin((1.0 - t) * omega) * a + torch.sin(t * omega) * b) / so


def log_values(trainer: L.Trainer, values: dict[str, float]) -> None:
    """Send scalars to every logger at the trainer's step (include ``progress/kimg`` so that
    dashboards can plot them against images seen)."""
    for logger in trainer.loggers:
        logger.log_metrics(values, step=trainer.global_step)


def log_image(loggers: list[Logger], key: str, image: np.ndarray, step: int) -> None:
    """Send an [H, W, C] uint8 image to each logger that can show images."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.log_image(key=key, images=[image], step=step)
        elif isinstance(logger, TensorBoardLogger):
            logger.experiment.add_image(key, image, global_step=step, dataformats="HWC")


def log_animation(loggers: list[Logger], key: str, path: Path) -> None:
    """Send a GIF file to each logger that can show animations (W&B; plotted at the latest
    ``progress/kimg``)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            logger.experiment.log({key: wandb.Video(str(path), format="gif")})


def save_gif(path: Path, frames: list[np.ndarray], fps: int = 12) -> Path:
    """Write [H, W, C] uint8 frames as a looping GIF."""
    images = [to_pil(f) for f in frames]
    return atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp,
            "GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
        ),
    )


class SampleGrid(L.Callback):
    """At the end of every tick (and so every phase), renders G_ema on fixed latents.

    Files: ``<dirpath>/fakes_kimg<kimg>_res<res>.png``, plus ``reals_res<res>.png`` for the
    first real batch of each resolution (what G is asked to imitate), and at every phase end
    ``interp_kimg<kimg>_res<res>.gif``: a looping spherical interpolation through
    ``interp_keyframes`` latents for ``interp_images`` images side by side.

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

    def latents(self, z_dim: int, device: torch.device) -> torch.Tensor:
        """The fixed latents [N, z_dim], identical on every call and every run."""
        return seeded_latents((self.num_images, z_dim), self.seed).to(device)

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
        if self.interp_images > 0 and phase_ended(trainer, pl_module):
            path = self.dirpath / f"interp_kimg{kimg:09.3f}_res{res}.gif"
            save_gif(path, self.interpolation_frames(pl_module))
            log_animation(trainer.loggers, "samples/interpolation", path)

    @torch.no_grad()
    def interpolation_frames(self, pl_module: L.LightningModule) -> list[np.ndarray]:
        """Frames ([H, W, C] uint8) of the looping latent interpolation, at alpha 1."""
        z_dim = pl_module.G_ema.z_dim
        keys = seeded_latents((self.interp_keyframes, self.interp_images, z_dim), self.seed + 1)
        frames = []
        for k in range(self.interp_keyframes):
            a, b = keys[k], keys[(k + 1) % self.interp_keyframes]
            for step in range(self.interp_steps):
                z = slerp(a, b, step / self.interp_steps).to(pl_module.device)
                images = pl_module(z, alpha=1.0)
                frames.append(make_grid(images, tile=self.tile, cols=self.interp_images))
        return frames
