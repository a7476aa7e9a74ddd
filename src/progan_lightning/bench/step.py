"""A ProGAN training step on synthetic reals: what every part of the benchmark times or traces."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from progan_lightning.module import ProGAN
from progan_lightning.schedule import resolution_stage


def make_train_step(module: ProGAN, reals: Tensor) -> Callable[[], None]:
    """One training step, ``ProGAN.train_step`` itself (with the module's precision and
    memory format), with fresh optimizers (as after a phase change).

    Args:
        module: The LightningModule with ``stage`` and ``alpha`` already set.
        reals: A real batch at the stage resolution. [NCHW]

    Returns:
        A function running D step, G step and EMA update once.
    """
    opt_g, opt_d = module.build_optimizers()
    return lambda: module.train_step(reals, opt_g, opt_d)


def set_stage(module: ProGAN, resolution: int, alpha: float) -> None:
    """Put ``module`` at the stage of ``resolution`` with fade weight ``alpha``."""
    module.progress.hold(resolution_stage(resolution), alpha)


def fake_reals(module: ProGAN, resolution: int, batch: int, device: torch.device) -> Tensor:
    """Uniform noise in [-1, 1] shaped like a real batch. [NCHW]"""
    shape = (batch, module.G.img_channels, resolution, resolution)
    return torch.rand(shape, device=device) * 2 - 1
