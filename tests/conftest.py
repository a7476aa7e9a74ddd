"""Shared fixtures: the real Hydra config, made tiny and CPU-only, writing into tmp_path."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig

from helpers import TINY, compose_config
from progan_lightning.data import sources as sources_module

os.environ.setdefault("WANDB_MODE", "disabled")

# pytest-xdist's workers share the cores: each takes its share of torch threads, and so do the
# commands it starts (OMP_NUM_THREADS), so that two workers on two cores do not oversubscribe.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    _THREADS = max(1, len(os.sched_getaffinity(0)) // _WORKERS)
    os.environ.setdefault("OMP_NUM_THREADS", str(_THREADS))
    torch.set_num_threads(_THREADS)


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data cache for the whole session: the built-in data is drawn once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def make_cfg(tmp_path: Path, cache_dir: Path) -> Iterator:
    """Factory: ``make_cfg(*overrides)`` -> tiny CPU config writing into ``tmp_path``, without
    metrics unless an override selects them (``metrics=swd``, ``metrics.num_images=...``)."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        # A tiny run measures no metric unless the test selects or sets one.
        chosen = any(o.startswith(("metrics=", "metrics.", "+metrics")) for o in overrides)
        quiet = [] if chosen or not tiny else ["metrics=none"]
        base = (TINY + quiet) if tiny else []
        return compose_config(tmp_path, cache_dir, base + list(overrides))

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
