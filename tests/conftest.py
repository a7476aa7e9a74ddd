"""Shared fixtures: the real Hydra config, made tiny and CPU-only, writing into tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.data import sources as sources_module

os.environ.setdefault("WANDB_MODE", "disabled")

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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the whole session: the built-in data is drawn once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path: Path, cache_dir: Path) -> Iterator:
    """Factory: ``make_cfg(*overrides)`` -> tiny CPU config writing into ``tmp_path``."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        return compose_config(tmp_path, cache_dir, (TINY if tiny else []) + list(overrides))

    yield make
    GlobalHydra.instance().clear()


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """Eight small non-square PNGs in ``tmp_path/images``."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(8):
        Image.new("RGB", (40, 30), (30 * i, 100, 200)).save(folder / f"{i}.png")
    return folder


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The kinds of the shapes that ``ShapesSource`` drew since the list was last cleared."""
    kinds: list[str] = []
    outline = sources_module._outline
    record = lambda kind, aspect: kinds.append(kind) or outline(kind, aspect)  # noqa: E731
    monkeypatch.setattr(sources_module, "_outline", record)
    return kinds
