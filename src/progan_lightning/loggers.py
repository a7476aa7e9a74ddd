"""Loggers and the W&B run's lifecycle: build, set up, upload the generator, finish.

A resumed run logs on into the same histories: the CSV logger appends to ``metrics.csv``
(:class:`CSVLogger`), after dropping the rows a crashed run logged past its checkpoint
(:func:`resume_histories`), TensorBoard writes a new event file into the same folder (which
drops the steps the earlier files logged past the checkpoint), and W&B
resumes the run whose id the run dir keeps (``wandb/run-id``).
"""

from __future__ import annotations

import csv
import logging
import netrc
import os
import secrets
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import hydra
import lightning as L
import numpy as np
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.loggers import CSVLogger as LightningCSVLogger
from lightning.pytorch.loggers import Logger, TensorBoardLogger, WandbLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from progan_lightning.export import export_generator, export_paths
from progan_lightning.fs import atomic_write
from progan_lightning.instantiate import instantiate
from progan_lightning.run_paths import EXPORT_NAME, export_path
from progan_lightning.run_record import resolved_config

# Where a run dir keeps its W&B run id, so that a resume logs into the same W&B run.
WANDB_ID_NAME = "wandb/run-id"


class AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer that appends to an existing ``metrics.csv`` (a resumed run)
    instead of deleting it; its header is read first, so a key first logged by the resume
    rewrites the file with the wider header and every earlier row."""

    def _check_log_dir_exists(self) -> None:
        if not self._fs.isfile(self.metrics_file_path):
            return
        with self._fs.open(self.metrics_file_path, "r", newline="") as file:
            self.metrics_keys = list(next(csv.reader(file), []))


class CSVLogger(LightningCSVLogger):
    """Lightning's ``CSVLogger`` whose ``metrics.csv`` keeps the rows of earlier runs of the
    same run dir: a resume appends (:class:`AppendingWriter`)."""

    @property
    def experiment(self) -> AppendingWriter:
        if self._experiment is None:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = AppendingWriter(log_dir=self.log_dir)
        return self._experiment


log = logging.getLogger(__name__)


def cut_rows_past(path: str | Path, nimg: int) -> int:
    """Cut a ``metrics.csv`` at its first row past ``nimg`` images (its ``progress/kimg``):
    the rows a run logged after the checkpoint a resume starts from, which the resume logs
    again. The rows are in the order they were logged, so the first row past ``nimg`` and
    everything after it go; the file is replaced atomically, its header kept.

    Returns:
        The number of rows dropped (0: the file is not touched, or there is none).
    """
    path = Path(path)
    if not path.is_file():
        return 0
    with open(path, newline="") as file:
        lines = list(csv.reader(file))
    if not lines or "progress/kimg" not in lines[0]:
        return 0
    column = lines[0].index("progress/kimg")
    # A logged kimg is a float32: half an image of slack keeps the checkpoint's own row.
    past = next(
        (i for i, row in enumerate(lines[1:], 1) if _kimg(row, column) * 1000 > nimg + 0.5),
        len(lines),
    )
    if past == len(lines):
        return 0

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as file:
            csv.writer(file).writerows(lines[:past])  # as Lightning writes it

    atomic_write(path, write)
    return len(lines) - past


def _kimg(row: list[str], column: int) -> float:
    """A row's ``progress/kimg`` (a row that does not log it: -inf)."""
    value = row[column] if column < len(row) else ""
    return float(value) if value else float("-inf")


def resume_histories(loggers: list[Logger], nimg: int) -> None:
    """Before a resume from a checkpoint at ``nimg`` images: drop what a CSV logger's file
    holds past it (:func:`cut_rows_past`), and have TensorBoard drop what its earlier event
    files hold past it, so that each history has each step once.

    TensorBoard keeps the event files; the resume's new file starts with a restart marker at
    step ``nimg + 1`` (``SummaryWriter(purge_step=...)``), and TensorBoard's loaders discard
    the earlier files' events from that step on (the steps are images, :func:`log_step`).
    Call this before a TensorBoard logger writes anything: its writer is made on first use.
    """
    for logger in loggers:
        if isinstance(logger, TensorBoardLogger):
            if logger._experiment is None:  # its SummaryWriter's arguments, not yet used
                logger._kwargs["purge_step"] = nimg + 1
            else:
                log.warning(f"{logger.log_dir}: already written to, its steps are not purged")
        elif isinstance(logger, CSVLogger):
            path = Path(logger.log_dir) / ExperimentWriter.NAME_METRICS_FILE
            dropped = cut_rows_past(path, nimg)
            if dropped:
                log.info(
                    f"{path}: {dropped} rows logged after the checkpoint dropped (the resume "
                    f"trains from {nimg / 1000:g} kimg again)"
                )


def wandb_has_key() -> bool:
    """Whether W&B can log in: ``WANDB_API_KEY`` or a netrc entry for its host."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host or "") is not None
    except (OSError, netrc.NetrcParseError):
        return False


def wandb_run_id(cfg: DictConfig) -> str:
    """The run dir's W&B run id: the one it keeps (a resume), else a new one."""
    path = Path(cfg.paths.output_dir) / WANDB_ID_NAME
    kept = path.read_text().strip() if path.is_file() else ""
    return kept or secrets.token_hex(4)


def wandb_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """Extra ``wandb.init`` arguments: the resolved config, the run dir's run id (resumed if
    W&B has it), offline mode without an API key (unless ``WANDB_MODE`` says otherwise) and,
    in a multirun, one group per sweep."""
    kwargs: dict[str, Any] = {
        "config": resolved_config(cfg),
        "id": wandb_run_id(cfg),
        "resume": "allow",
    }
    if not os.environ.get("WANDB_MODE") and not wandb_has_key():
        log.info("W&B: no API key found, logging offline (sync later with `wandb sync`)")
        kwargs["mode"] = "offline"
    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        hydra_cfg = HydraConfig.get()
        sweep = Path(hydra_cfg.sweep.dir).name
        kwargs["group"] = f"{cfg.task_name}_{sweep}"
        kwargs["name"] = f"{cfg.task_name}_{sweep}_{hydra_cfg.job.num}"
    return kwargs


def instantiate_loggers(cfg: DictConfig) -> list[Logger]:
    """Instantiate ``cfg.logger``; a W&B logger also gets :func:`wandb_kwargs` (its
    ``upload_generator`` key is read by :func:`train`, not passed to W&B)."""
    loggers = []
    for c in (cfg.get("logger") or {}).values():
        if not c or "_target_" not in c:
            continue
        if str(c._target_).endswith("WandbLogger"):
            params = OmegaConf.to_container(c, resolve=True)
            params.pop("upload_generator", None)
            # A partial: `config` would clash with instantiate's own first argument.
            loggers.append(hydra.utils.instantiate(params, _partial_=True)(**wandb_kwargs(cfg)))
        else:
            loggers.append(instantiate(c))
    return loggers


def save_wandb_id(cfg: DictConfig, loggers: list[Logger]) -> None:
    """Keep the W&B run id in the run dir (once) so that a resume logs into the same run."""
    path = Path(cfg.paths.output_dir) / WANDB_ID_NAME
    for logger in loggers:
        if isinstance(logger, WandbLogger) and not path.is_file():
            atomic_write(path, lambda tmp, run_id=logger.version: tmp.write_text(f"{run_id}\n"))


@rank_zero_only
def setup_wandb(loggers: list[Logger]) -> None:
    """Plot everything a W&B logger receives against ``progress/kimg``."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            logger.experiment.define_metric("progress/kimg")
            logger.experiment.define_metric("*", step_metric="progress/kimg", step_sync=True)


@rank_zero_only
def upload_generator(cfg: DictConfig, model: L.LightningModule, loggers: list[Logger]) -> None:
    """Log G_ema's export (weights + architecture JSON, see ``export.py``) as a W&B artifact
    when ``logger.wandb.upload_generator`` is set: the run's own export
    (``callbacks.model_checkpoint.export_path``) when it wrote one, else G_ema exported there
    now (without an export path: ``generator.safetensors`` in the run dir). Weights only, no
    pickle."""
    wandb_cfg = (cfg.get("logger") or {}).get("wandb") or {}
    if not wandb_cfg.get("upload_generator"):
        return
    import wandb

    weights, arch = export_paths(export_path(cfg) or Path(cfg.paths.output_dir) / EXPORT_NAME)
    if not (weights.is_file() and arch.is_file()):
        export_generator(model.G_ema, weights, model.stage, model.alpha)
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            artifact = wandb.Artifact(f"{cfg.task_name}-generator", type="model")
            artifact.add_file(str(weights))
            artifact.add_file(str(arch))
            logger.experiment.log_artifact(artifact)


def finish_wandb() -> None:
    """Close an open W&B run so offline files are complete even after a crash."""

    if "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.finish()


@rank_zero_only
def log_hyperparameters(cfg: DictConfig, loggers: list[Logger]) -> None:
    """Send the resolved config to every logger."""
    resolved = resolved_config(cfg)
    for logger in loggers:
        logger.log_hyperparams(resolved)


def log_step(module: L.LightningModule) -> int:
    """Every logger's step (TensorBoard's x-axis, the CSV's ``step``): the real images trained
    on, global across devices, as in the official code's summaries. The module logs it as
    ``step`` with each batch's values; Lightning's own step would count batches, and the
    trainer's ``global_step`` two optimizer steps per batch, each changing with the batch
    size."""
    return int(module.cur_nimg)


def log_values(trainer: L.Trainer, values: dict[str, float]) -> None:
    """Send scalars to every logger at :func:`log_step` (include ``progress/kimg``, W&B's
    x-axis)."""
    for logger in trainer.loggers:
        logger.log_metrics(values, step=log_step(trainer.lightning_module))


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
