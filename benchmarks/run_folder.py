"""What the studies read from a training run's folder: its config, its images and its
checkpoints (the folder as ``progan-train`` leaves it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from omegaconf import DictConfig, OmegaConf, open_dict

from progan_lightning.checkpoint import generator_from_checkpoint, load_checkpoint
from progan_lightning.data.datamodule import build_datamodule
from progan_lightning.networks import Generator


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


def final_stage_checkpoints(
    run: str | Path, stable_only: bool = False
) -> Iterator[tuple[Path, dict[str, Any], Generator]]:
    """``(path, checkpoint, G_ema)`` of each checkpoint at the final stage, in the order they
    were written: from the final fade-in on, or (``stable_only``) at alpha 1 only."""
    for path in checkpoints(run):
        checkpoint = load_checkpoint(path)
        G = generator_from_checkpoint(checkpoint, source=path)
        if G.trained_stage == G.num_stages - 1 and (G.trained_alpha >= 1 or not stable_only):
            yield path, checkpoint, G
