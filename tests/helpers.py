"""What the tests share: the tiny config, a tiny module, commands run as a user runs them, and
a stand-in Trainer. Test files import from here, never from each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict
from torch import nn

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.growth_plan import resolve_growth
from progan_lightning.losses import WGANGP
from progan_lightning.metrics.swd import SlicedWassersteinDistance
from progan_lightning.module import ProGAN
from progan_lightning.networks import Discriminator, Generator

REPO = Path(__file__).resolve().parents[1]
# Files written by the official code (each folder's README says how).
FIXTURES = Path(__file__).resolve().parent / "fixtures"

# Small enough to grow 4 -> 16 in seconds on 2 cores, big enough to be the real thing.
TINY = [
    "data.resolution=16",
    "data.source.num_images=256",
    "model.G.z_dim=16",
    "model.G.fmap_base=64",
    "model.G.fmap_max=16",
    "growth.stable_kimg=0.064",
    "growth.fade_kimg=0.064",
    "growth.batch_size=16",
    "model.d_lr_ratio=1",  # the official equal rates (the quickstart's critic is faster)
    "model/precision=fp32",  # on every CPU, whatever an experiment picks
    "growth.tick_kimg=0.032",
    "growth.total_kimg=null",
    "trainer.accelerator=cpu",
    "trainer.enable_model_summary=false",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_images=16",
    "callbacks.samples.tile=16",
    "callbacks.model_checkpoint.every_n_epochs=2",
]


def lay_out(growth, world_size: int = 1, precision: str = "fp32", mbstd_group_size: int = 0):
    """The growth callback ``growth`` handed its schedule for ``world_size`` devices, as
    ``train.build`` hands it (returns ``growth``)."""
    growth.use(
        resolve_growth(growth.settings, growth.preset, world_size, precision, mbstd_group_size)
    )
    return growth


def compose_config(out: Path, cache: Path, overrides: list[str] | None = None) -> DictConfig:
    """Compose conf/train.yaml with ``overrides``; outputs and cache go under tmp folders."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=overrides or [], return_hydra_config=True)
    with open_dict(cfg):
        cfg.paths.root_dir = str(out)
        cfg.paths.output_dir = str(out)
        cfg.paths.log_dir = str(out)
        cfg.paths.cache_dir = str(cache)
        cfg.hydra.runtime.output_dir = str(out)
        cfg.hydra.job.num = 0
    HydraConfig().set_config(cfg)
    return cfg


# The DDP runs' tiny networks on a command line (``debug=ddp`` brings its own schedule).
DDP_CLI = [
    "data.resolution=16",
    "data.source.num_images=256",
    "model.G.z_dim=16",
    "model.G.fmap_base=64",
    "model.G.fmap_max=16",
    "callbacks.samples.num_images=16",
    "callbacks.samples.tile=16",
]

# The tiny config on a command line (train.py, progan-train): no loggers, no metrics.
TINY_CLI = [*TINY, "logger=none", "metrics=none"]


def tiny_module(
    resolution: int = 8,
    *,
    z_dim: int = 16,
    fmap_base: int = 32,
    fmap_max: int = 16,
    num_classes: int = 0,
    pixel_norm_eps: float = 1e-8,
    seed: int | None = 0,
    **kwargs,
) -> ProGAN:
    """A ProGAN module of tiny G and D (WGAN-GP, Adam at the official betas), seeded;
    ``kwargs`` go to :class:`ProGAN` (precision, channels_last, compile_G, ...)."""
    if seed is not None:
        torch.manual_seed(seed)
    G = Generator(
        resolution,
        z_dim=z_dim,
        fmap_base=fmap_base,
        fmap_max=fmap_max,
        num_classes=num_classes,
        pixel_norm_eps=pixel_norm_eps,
    )
    D = Discriminator(resolution, fmap_base=fmap_base, fmap_max=fmap_max, num_classes=num_classes)
    opt = lambda params: torch.optim.Adam(params, lr=1e-3, betas=(0.0, 0.99))  # noqa: E731
    return ProGAN(G, D, WGANGP(), opt, **kwargs)


def run_python(
    args: list[str],
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in a fresh process, as a user runs it (W&B disabled); output as text."""
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "WANDB_MODE": "disabled", **(env or {})},
        timeout=timeout,
    )


def run_command(
    name: str, *args: str, cwd: Path | None = None, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``progan-<name> ARGS`` (as ``python -m progan_lightning.cli.<name>``)."""
    return run_python(["-m", f"progan_lightning.cli.{name}", *args], cwd=cwd, env=env)


def run_train(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``python train.py ARGS`` in a fresh process, caches and outputs under tmp_path; it must
    succeed."""
    result = run_python(
        [str(REPO / "train.py"), *args, f"paths.cache_dir={tmp_path}/cache"], cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def stub_trainer(datamodule, rank: int = 0, world_size: int = 1) -> SimpleNamespace:
    """What the metrics and sample callbacks read of a Trainer (one process of
    ``world_size``)."""
    return SimpleNamespace(
        datamodule=datamodule,
        global_rank=rank,
        world_size=world_size,
        global_step=0,
        loggers=[],
        callback_metrics={},
        strategy=SimpleNamespace(reduce_boolean_decision=lambda decision, all=True: decision),
    )


def smooth_images(n: int, res: int, seed: int) -> torch.Tensor:
    """Blurry colour blobs: low-frequency content. uint8 [NCHW]"""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, res // 4, res // 4, generator=gen)
    return (F.interpolate(low, size=(res, res), mode="bilinear") * 255).to(torch.uint8)


def noise_images(n: int, res: int, seed: int) -> torch.Tensor:
    """White noise: high-frequency content. uint8 [NCHW]"""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, res, res), generator=gen, dtype=torch.uint8)


SMALL = {"nhoods_per_image": 16, "dir_repeats": 2, "dirs_per_repeat": 32}


def swd(reals: torch.Tensor, fakes: torch.Tensor, **kwargs) -> dict[str, float]:
    metric = SlicedWassersteinDistance(reals.shape[-1], **{**SMALL, **kwargs})
    metric.update(reals, real=True)
    metric.update(fakes, real=False)
    return {k: float(v) for k, v in metric.compute().items()}


class TinyLogits(nn.Module):
    """Stand-in for Inception's logits (no download): 3 classes from the mean colour."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3)) / 255.0 * 8.0


class TinyFeatures(nn.Module):
    """Stand-in for Inception (no download): mean colour and a 2x2 average per channel."""

    num_features = 15

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        return torch.cat([x.mean((2, 3)), F.adaptive_avg_pool2d(x, 2).flatten(1)], dim=1)
