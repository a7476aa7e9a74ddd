"""Training: ``build(cfg)`` makes everything from the Hydra config and resolves the run's
:class:`Plan` once; ``fit(run)`` trains it; ``train(cfg) = fit(build(cfg))`` (the command is
:mod:`progan_lightning.cli.train`)."""

from __future__ import annotations

import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_only, rank_zero_warn
from omegaconf import DictConfig, open_dict

from progan_lightning.callbacks.checkpoint import SafeCheckpoint
from progan_lightning.callbacks.growth import ProgressiveGrowth
from progan_lightning.checkpoint import check_resume, find_last_checkpoint
from progan_lightning.data.datamodule import ProGANDataModule, build_datamodule
from progan_lightning.faults import (
    CheckpointMismatch,
    Diverged,
    Preempted,
    TrainingStopped,
    WriteFailed,
    resume_overrides,
)
from progan_lightning.fs import expand_path
from progan_lightning.growth_plan import GrowthPlan, resolve_growth
from progan_lightning.instantiate import instantiate, instantiate_dict
from progan_lightning.loggers import (
    finish_wandb,
    instantiate_loggers,
    log_hyperparameters,
    resume_histories,
    save_wandb_id,
    setup_wandb,
    upload_generator,
)
from progan_lightning.module import ProGAN
from progan_lightning.networks import num_features
from progan_lightning.official.finetune import init_from_official
from progan_lightning.precision import float32_matmul_precision, resolve_precision
from progan_lightning.run_lock import check_fresh_run_dir, holds_run_dir, run_dir_lock
from progan_lightning.run_paths import checkpoint_dir, last_checkpoint
from progan_lightning.run_record import (
    recorded_overrides,
    run_of,
    task_overrides,
    write_record,
)
from progan_lightning.schedule import GrowthSchedule, check_resolution, resolution_stage

log = logging.getLogger(__name__)


def resolve_ckpt_path(cfg: DictConfig) -> str | None:
    """``cfg.ckpt_path``, with ``last`` meaning the newest checkpoint in
    ``callbacks.model_checkpoint.dirpath`` (the run dir's ``checkpoints/``)."""
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path != "last":
        return None if ckpt_path is None else str(expand_path(ckpt_path, "ckpt_path"))
    path = str(find_last_checkpoint(checkpoint_dir(cfg)))
    log.info(f"Resuming from {path}")
    return path


def check_precision(cfg: DictConfig) -> None:
    """Mixed precision is ``model/precision``; reject trainer precisions that would clash."""
    trainer_precision = str(cfg.trainer.get("precision", "32-true"))
    if trainer_precision in ("16-mixed", "16"):
        raise ValueError(
            f"trainer.precision={trainer_precision} does not scale the gradient penalty's "
            "autograd.grad; use model/precision=fp16 (autocast + loss scaling in the module)"
        )
    if cfg.model.get("precision", "fp32") != "fp32" and trainer_precision not in ("32-true", "32"):
        raise ValueError(
            f"model.precision={cfg.model.precision} with trainer.precision={trainer_precision}: "
            "pick one; set trainer.precision=32-true"
        )


def check_max_resolution(cfg: DictConfig) -> None:
    """Refuse a ``data.resolution`` above the experiment's ``max_resolution`` (the
    quickstart's 32: tiny widths, a 32x32 schedule), naming the networks' width at that
    resolution and ``experiment=folder``."""
    limit = cfg.get("max_resolution")
    resolution = check_resolution(cfg.data.resolution, "data.resolution")  # a bad value first
    if limit is None or resolution <= limit:
        return
    g = cfg.model.G
    # The official width index of a block is its stage + 1 (networks.num_features).
    width = num_features(resolution_stage(resolution) + 1, g.fmap_base, g.fmap_decay, g.fmap_max)
    raise ValueError(
        f"data.resolution={resolution} is above max_resolution={limit}, the largest this "
        f"experiment is made for (the quickstart, by default): its networks would be {width} "
        f"channels wide at {resolution}x{resolution} and its schedule is for {limit}x{limit}. "
        "Train your own images with experiment=folder (the official widths and schedule): "
        f"python train.py experiment=folder data.path=DIR data.resolution={resolution}; or set "
        "max_resolution=null to keep these settings"
    )


def device_type(trainer: L.Trainer) -> str:
    """``cuda`` or ``cpu``: the kind of device the trainer's accelerator trains on."""
    return "cuda" if isinstance(trainer.accelerator, CUDAAccelerator) else "cpu"


def apply_backend(cfg: DictConfig, trainer: L.Trainer) -> None:
    """Set the global torch switches of ``cfg.backend`` for the trainer's device (cuDNN
    autotuning is ``trainer.benchmark``, applied by Lightning)."""
    setting = (cfg.get("backend") or {}).get("float32_matmul_precision")
    torch.set_float32_matmul_precision(float32_matmul_precision(setting, device_type(trainer)))


def with_classes(cfg: DictConfig, num_classes: int) -> DictConfig:
    """``cfg.model`` with ``G.num_classes`` and ``D.num_classes`` set from the data (a
    labelled dataset makes both networks conditional; no width is set by hand).

    Raises:
        ValueError: the config sets a different ``model.G/D.num_classes`` by hand.
    """
    model = cfg.model.copy()
    for net in ("G", "D"):
        given = model[net].get("num_classes")
        if given is not None and given != num_classes:
            raise ValueError(
                f"model.{net}.num_classes={given}, but the data has {num_classes} classes "
                f"(data.labels={cfg.data.get('labels', 'none')}); leave model.{net}.num_classes "
                "unset: it comes from the data"
            )
        if num_classes:
            with open_dict(model):
                model[net].num_classes = num_classes
    return model


@dataclass(frozen=True)
class Plan:
    """What a run is, resolved once from the config and the machine before anything launches;
    every check before launch runs against it.

    Attributes:
        world_size: Processes sharing each global batch (devices x nodes).
        device: ``cuda`` or ``cpu``: the kind of device the trainer trains on.
        precision: The precision the step runs in (``model.precision`` with ``auto``
            resolved for ``device``); a preset's batch caps follow it.
        strategy: The Lightning strategy (``trainer.strategy``: see ``cli/config.py``).
        mbstd_group_size: D's minibatch-stddev group.
        schedule: The growth schedule, laid out once for the above.
        ckpt_path: The checkpoint to resume from (``ckpt_path=last`` resolved), or None.
        resume_nimg: The images that checkpoint has trained on (0 without one).
    """

    world_size: int
    device: str
    precision: str
    strategy: str
    mbstd_group_size: int
    schedule: GrowthSchedule
    ckpt_path: str | None
    resume_nimg: int

    @property
    def pending(self) -> bool:
        """Whether anything is left to train (False: the checkpoint has seen
        ``growth.total_kimg`` already)."""
        return self.resume_nimg < self.schedule.total_nimg


@dataclass
class Run:
    """Everything :func:`build` made from a config, ready for :func:`fit`."""

    cfg: DictConfig
    plan: Plan
    datamodule: ProGANDataModule
    model: ProGAN
    growth: ProgressiveGrowth
    callbacks: list[L.Callback]
    loggers: list[Logger]
    trainer: L.Trainer

    @property
    def objects(self) -> dict[str, Any]:
        """The built objects by name (what :func:`train` returns beside the metrics)."""
        return {
            "cfg": self.cfg,
            "datamodule": self.datamodule,
            "model": self.model,
            "callbacks": self.callbacks,
            "loggers": self.loggers,
            "trainer": self.trainer,
        }


def plan_precision(precision: str, device: str) -> str:
    """``model.precision`` with ``auto`` resolved for ``device`` (logged when it resolves)."""
    resolved = resolve_precision(precision, device)
    if resolved != precision:
        log.info(
            f"model.precision={precision}: {resolved} on {device} "
            "(auto takes bf16 on CPUs with bf16 units, AVX512-BF16 or AMX, else fp32)"
        )
    return resolved


def plan_growth(
    growth: ProgressiveGrowth, world_size: int, precision: str, group: int
) -> GrowthPlan:
    """Resolve ``growth``'s schedule once for the run (:func:`resolve_growth`: checked, its
    notes and warnings logged) and hand it to the callback.

    Raises:
        ValueError: A setting does not fit, a batch does not divide over ``world_size``, or
            leaves a minibatch-stddev group of one.
    """
    plan = resolve_growth(growth.settings, growth.preset, world_size, precision, group)
    for line in plan.notes:
        rank_zero_info(line)
    for line in plan.warnings:
        rank_zero_warn(line)
    growth.use(plan)
    return plan


def build(cfg: DictConfig) -> Run:
    """Check the config, seed, build data, model, callbacks, loggers and trainer, and resolve
    the run's :class:`Plan` once; nothing is trained and no process is launched.

    Raises:
        ValueError: A config value, the checkpoint or the schedule does not fit (one message
            naming the value and the fix), before anything is written.
    """
    # Before anything is written: a run dir the command took was checked when it took it
    # (``cli/run_dir.py``); a run started from Python is checked here.
    if rank_zero_only.rank == 0 and not holds_run_dir(cfg.paths.output_dir):
        check_fresh_run_dir(cfg.paths.output_dir, cfg.get("ckpt_path"), checkpoint_dir(cfg))
    check_precision(cfg)
    check_max_resolution(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info(f"Data <{cfg.data._target_}>")
    datamodule = build_datamodule(cfg.data)
    log.info(f"Model <{cfg.model._target_}>")
    model = instantiate(
        with_classes(cfg, datamodule.num_classes), class_names=datamodule.class_names
    )
    # Fine-tuning an official pickle: its networks, growing on from its resolution.
    growth = instantiate(cfg.growth, **init_from_official(model, cfg.get("init_from")))
    callbacks = [growth, *instantiate_dict(cfg.get("callbacks"))]
    loggers = instantiate_loggers(cfg)
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers)

    # The plan, before any process is launched: one clear error instead of one per rank.
    group = model.D.init_kwargs["mbstd_group_size"]
    device = device_type(trainer)
    precision = plan_precision(model.precision, device)
    schedule = plan_growth(growth, trainer.world_size, precision, group).schedule
    apply_backend(cfg, trainer)
    ckpt_path = resolve_ckpt_path(cfg)
    plan = Plan(
        world_size=trainer.world_size,
        device=device,
        precision=precision,
        strategy=str(cfg.trainer.get("strategy", "auto")),
        mbstd_group_size=group,
        schedule=schedule,
        ckpt_path=ckpt_path,
        resume_nimg=check_fit(cfg, ckpt_path, model, growth),
    )
    return Run(cfg, plan, datamodule, model, growth, callbacks, loggers, trainer)


def check_fit(cfg: DictConfig, ckpt_path: str | None, model: ProGAN, growth: Any) -> int:
    """:func:`check_resume`, whose refusal of a checkpoint that the config does not fit names
    the resume that takes the settings of the run that wrote it, when that run's folder is
    not this run's and holds its record (``ckpt_path=FILE`` alone composes the config on the
    command line).

    Returns:
        The images the checkpoint has trained on (0 without one).
    """
    try:
        return check_resume(ckpt_path, model, growth)
    except CheckpointMismatch as error:
        checkpoint = Path(str(ckpt_path)).expanduser()
        owner = run_of(checkpoint)
        if owner is None or owner.resolve() == Path(cfg.paths.output_dir).expanduser().resolve():
            raise
        raise CheckpointMismatch(
            f"{error}; to continue that run with the settings it was started with, resume "
            f"with {resume_overrides(checkpoint, owner)}"
        ) from None


def fit(run: Run) -> dict[str, Any]:
    """Train a built run (nothing, if its checkpoint has finished), holding the run dir's
    lock; the W&B run is finished whatever happens.

    Returns:
        The trainer's final callback metrics.

    Raises:
        Diverged: The run diverged (``checkpoint``: the newest checkpoint left).
        Preempted: A signal stopped it (``last.ckpt`` written).
        WriteFailed: A checkpoint could not be written.
        Each with ``run_dir`` set once the run's record is in its folder.
    """
    if not run.plan.pending:
        return {}
    cfg, trainer, model = run.cfg, run.trainer, run.model
    saver = next((c for c in run.callbacks if isinstance(c, SafeCheckpoint)), None)
    lock = run_dir_lock(cfg.paths.output_dir) if trainer.is_global_zero else nullcontext()
    try:
        with lock:
            if trainer.is_global_zero:
                record(run)
                if run.plan.ckpt_path is not None:
                    resume_histories(run.loggers, run.plan.resume_nimg)
            log_hyperparameters(cfg, run.loggers)
            setup_wandb(run.loggers)
            trainer.fit(model=model, datamodule=run.datamodule, ckpt_path=run.plan.ckpt_path)
            if saver is not None and saver.signal_received is not None:
                raise Preempted(saver.signal_received, last_checkpoint(saver.dirpath))
            upload_generator(cfg, model, run.loggers)
    except TrainingStopped as err:
        if isinstance(err, Diverged):
            err.checkpoint = newest_checkpoint(checkpoint_dir(cfg))
        if recorded_overrides(cfg.paths.output_dir) is not None:
            err.run_dir = Path(cfg.paths.output_dir)  # its message resumes by the folder
        raise
    finally:
        finish_wandb()
    return {k: v.item() if hasattr(v, "item") else v for k, v in trainer.callback_metrics.items()}


def record(run: Run) -> None:
    """Write the run's record (and its W&B run id) into the run dir: once the run is accepted
    and its lock held (see ``run_record.py``).

    Raises:
        WriteFailed: The record could not be written (nothing half-written is left).
    """
    cfg, folder = run.cfg, run.cfg.paths.output_dir
    try:
        write_record(folder, cfg, task_overrides(cfg), resume=run.plan.ckpt_path is not None)
        save_wandb_id(cfg, run.loggers)
    except OSError as error:
        path = error.filename or Path(folder) / ".hydra"
        latest = newest_checkpoint(checkpoint_dir(cfg))
        raise WriteFailed(path, error.strerror or str(error), latest) from error


def train(cfg: DictConfig) -> tuple[dict[str, Any], dict[str, Any]]:
    """``fit(build(cfg))``.

    Returns:
        The trainer's final callback metrics and the built objects (:attr:`Run.objects`).
    """
    run = build(cfg)
    return fit(run), run.objects


def newest_checkpoint(dirpath: Path) -> Path | None:
    """The newest readable checkpoint of ``dirpath``, or None."""
    try:
        return find_last_checkpoint(dirpath)
    except FileNotFoundError:
        return None
