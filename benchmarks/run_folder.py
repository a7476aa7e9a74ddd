"""What the studies read from a training run's folder: its config, its images and its
checkpoints (the folder as ``progan-train`` leaves it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from progan_lightning.data.datamodule import build_datamodule


def run_config(run: str | Path) -> DictConfig:
    """The config the run trained with (``.hydra/config.yaml``)."""
    return OmegaConf.load(Path(run) / ".hydra" / "config.yaml")


def run_images(cfg: DictConfig, count: int | None = None) -> np.ndarray:
    """The run's images at its final resolution (uint8 [N, C, R, R]); ``count`` replaces
    ``data.source.num_images`` (e.g. the whole source a run's subset came from)."""
    data = cfg.data.copy()
    if count is not None:
        with open_dict(data):
            data.source.num_images = count
    datamodule = build_datamodule(data)
    datamodule.prepare_data()
    return np.array(datamodule.images(int(data.resolution)))


def checkpoints(run: str | Path) -> list[Path]:
    """The run's checkpoints in the order they were written."""
    return sorted((Path(run) / "checkpoints").glob("*.ckpt"), key=lambda p: p.stat().st_mtime)
