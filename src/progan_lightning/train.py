"""Training entry point: ``run(cfg)`` builds everything from the Hydra config and fits."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)

CONFIG_DIR = str(Path(__file__).resolve().parents[2] / "conf")


def auto_strategy(devices: Any) -> str:
    """Lightning strategy for ``trainer.devices``: plain for one device, else DDP that
    tolerates unused parameters (the D step leaves G unused; low stages leave top blocks
    unused), which plain ``ddp`` rejects."""
    single = devices in (1, "1") or (isinstance(devices, list | ListConfig) and len(devices) == 1)
    return "auto" if single else "ddp_find_unused_parameters_true"


OmegaConf.register_new_resolver("auto_strategy", auto_strategy, replace=True)


def instantiate_dict(cfg: DictConfig | None) -> list[Any]:
    """Instantiate every ``_target_`` entry of a name-keyed config group (callbacks, loggers)."""
    if not cfg:
        return []
    return [hydra.utils.instantiate(c) for c in cfg.values() if c and "_target_" in c]


def finish_wandb() -> None:
    """Close an open W&B run so offline files are complete even after a crash."""
    import sys

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


@rank_zero_only
def log_hyperparameters(cfg: DictConfig, loggers: list[Logger]) -> None:
    """Send the resolved config to every logger."""
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    resolved.pop("hydra", None)
    for logger in loggers:
        logger.log_hyperparams(resolved)


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """Seed, build data, model, callbacks, loggers and trainer, then fit.

    Returns:
        The trainer's final callback metrics and the built objects.
    """
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info(f"Data <{cfg.data._target_}>")
    datamodule = hydra.utils.instantiate(cfg.data)
    log.info(f"Model <{cfg.model._target_}>")
    model = hydra.utils.instantiate(cfg.model)
    growth = hydra.utils.instantiate(cfg.growth)
    callbacks = [growth, *instantiate_dict(cfg.get("callbacks"))]
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)
    # Before any process is launched: one clear error instead of one per rank.
    growth.check_world_size(trainer.world_size)
    objects = {
        "cfg": cfg,
        "datamodule": datamodule,
        "model": model,
        "callbacks": callbacks,
        "loggers": loggers,
        "trainer": trainer,
    }
    try:
        log_hyperparameters(cfg, loggers)
        trainer.fit(model=model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    finally:
        finish_wandb()
    metrics = {
        k: v.item() if hasattr(v, "item") else v for k, v in trainer.callback_metrics.items()
    }
    return metrics, objects


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="train")
def main(cfg: DictConfig) -> float | None:
    """Hydra entry point; returns ``cfg.optimized_metric`` for sweepers."""
    metrics, _ = train(cfg)
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None
