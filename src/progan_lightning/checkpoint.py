"""The training checkpoint: what it holds, the one loader, the checks before a resume, and
G_ema exported from it.

A ``.ckpt`` is Lightning's checkpoint (``state_dict`` of G, D and G_ema, optimizer states,
callback states: the growth schedule under ``ProgressiveGrowth``) plus the entries of
:func:`module_entries` and ``rng_states`` (``rng.py``). It is written by
:class:`~progan_lightning.callbacks.checkpoint.SafeCheckpoint` (atomically, at tick ends)
and read only by :func:`load_checkpoint`, with ``torch.load(weights_only=True)``: a file
never runs code when loaded unless the user opts in (``allow_pickle``).

Entries this module defines:

- ``format_version``: :data:`FORMAT_VERSION`, the version of this layout; the loader refuses a
  newer one and reads a file without the entry as the current format;
- ``progress``: :class:`~progan_lightning.progress.TrainingProgress` (``cur_nimg``, ``stage``,
  ``alpha``, ``phase_index``);
- ``architecture``: ``{"G": ..., "D": ...}``, the networks' constructor arguments (export
  rebuilds G_ema from them, a resume checks them);
- ``classes``: ``{"names": [...]}`` of a conditional run;
- ``grad_scalers``: the fp16 loss scalers' states;
- ``rng_states``: torch, numpy, python (and CUDA) RNG states, for an exact resume (rank 0's);
- ``rank_rng_states``: every rank's, in rank order, written by a data-parallel run.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from progan_lightning.export import (
    check_class_names,
    check_finite,
    export_generator,
    mark_trained,
)
from progan_lightning.faults import CheckpointMismatch, DamagedFile
from progan_lightning.networks import Generator, init_kwarg
from progan_lightning.run_paths import CHECKPOINT_DIR, LAST_CHECKPOINT
from progan_lightning.schedule import GrowthSchedule

if TYPE_CHECKING:  # Lightning is not loaded for export and generate (seconds on a small CPU).
    import lightning as L

log = logging.getLogger(__name__)


FORMAT_VERSION = 1
"""The version of the checkpoint layout this code writes and reads (the ``format_version``
entry); a change that older code cannot read raises it."""


def module_entries(module: L.LightningModule) -> dict[str, Any]:
    """The entries the ProGAN module adds to its checkpoint (see the module docstring)."""
    entries: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "progress": module.progress.state_dict(),
        "architecture": {"G": module.G.init_kwargs, "D": module.D.init_kwargs},
    }
    if module.num_classes:
        entries["classes"] = {"names": list(module.class_names)}
    if module.precision == "fp16":
        entries["grad_scalers"] = {k: s.state_dict() for k, s in module.grad_scalers.items()}
    return entries


def check_architecture(checkpoint: dict[str, Any], module: L.LightningModule) -> None:
    """Raise a clear error when the checkpoint's networks differ from the module's.

    Raises:
        ValueError: names every differing ``model.G/D`` argument and the classes.
    """
    saved = checkpoint.get("architecture")
    if saved is None:
        return
    diffs = [
        f"model.{net}.{key}: checkpoint {init_kwarg(saved[net], key)!r}, "
        f"config {init_kwarg(mine, key)!r}"
        for net, mine in (("G", module.G.init_kwargs), ("D", module.D.init_kwargs))
        if net in saved
        for key in dict.fromkeys([*mine, *saved[net]])
        if init_kwarg(saved[net], key) != init_kwarg(mine, key)
    ]
    saved_names = checkpoint.get("classes", {}).get("names", [])
    if module.num_classes and saved_names and saved_names != module.class_names:
        diffs.append(f"classes: checkpoint {saved_names}, data {module.class_names}")
    if diffs:
        raise CheckpointMismatch(
            "the checkpoint does not fit this config (resume with the settings it was "
            "trained with): " + "; ".join(diffs)
        )


PICKLE_OPT_IN = (
    "allow_pickle=true (progan-generate, progan-evaluate), --allow-pickle (progan-export) or "
    "allow_pickle=True (Python)"
)


def load_checkpoint(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    allow_pickle: bool = False,
    mmap: bool = False,
) -> dict[str, Any]:
    """Load a training checkpoint with ``torch.load(weights_only=True)``: the one loader of
    ``.ckpt`` files (resume, export, generate, evaluate).

    Args:
        path: A ``.ckpt`` written by training.
        map_location: Device for the tensors.
        allow_pickle: Fall back to full unpickling (only for files you trust) when the safe
            loader refuses the file.
        mmap: Memory-map the tensors instead of reading them (a cheap look at a large file).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        IsADirectoryError: ``path`` is a folder (the message names its newest checkpoint).
        DamagedFile: a truncated or damaged file; objects the safe loader refuses (without
            ``allow_pickle``); a torch file that is not a progan-lightning training checkpoint.
            The message names the other checkpoints beside it.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        found = _newest_first(path / CHECKPOINT_DIR) or _newest_first(path)
        fix = (
            f"give one of its checkpoints: {found[0]} (the newest)"
            if found
            else f"give a .ckpt file (a run keeps them in its {CHECKPOINT_DIR}/ folder)"
        )
        raise IsADirectoryError(f"{path} is a folder, not a checkpoint; {fix}")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found; give an existing .ckpt file")
    try:
        return _load(path, map_location, allow_pickle, mmap)
    except DamagedFile as error:
        others = [p.name for p in _newest_first(path.parent) if p != path]
        if others:
            beside = f"checkpoints beside it: {', '.join(others)}"
            error.fix = f"{error.fix}; {beside}" if error.fix else beside
        raise


def _load(
    path: Path, map_location: str | torch.device, allow_pickle: bool, mmap: bool
) -> dict[str, Any]:
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise DamagedFile(
                path,
                "holds objects that the safe (weights-only) loader refuses "
                f"({str(err).splitlines()[0]})",
                f"if you created this file yourself, load it fully with {PICKLE_OPT_IN}",
            ) from None
        checkpoint = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as err:  # Not a zip or pickle, truncated: torch names no file.
        raise DamagedFile(
            path, f"damaged: not a readable checkpoint ({str(err).splitlines()[0]})"
        ) from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if (
        not isinstance(state, dict)
        or "pytorch-lightning_version" not in checkpoint
        or not any(str(key).startswith("G_ema.") for key in state)
    ):
        raise DamagedFile(
            path,
            "not a progan-lightning checkpoint (a torch file without the training state of "
            "G, D and G_ema)",
            "give a .ckpt from the checkpoints/ folder of a progan-train run",
        )
    check_format(checkpoint, path)
    return checkpoint


def check_format(checkpoint: dict[str, Any], path: str | Path) -> None:
    """Refuse a checkpoint of a format this code does not know (a newer version's); one
    without ``format_version`` is of the current format.

    Raises:
        DamagedFile: names the file's format and the one this code reads.
    """
    version = checkpoint.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version > FORMAT_VERSION:
        raise DamagedFile(
            path,
            f"has checkpoint format {version!r}, which this version of progan-lightning does "
            f"not read (it reads format {FORMAT_VERSION} and older)",
            "load it with the progan-lightning version that wrote it, or upgrade "
            "(pip install -U progan-lightning)",
        )


def check_weights(checkpoint: dict[str, Any], module: torch.nn.Module, path: str | Path) -> None:
    """Refuse a checkpoint whose ``state_dict`` does not fit ``module`` (other names or shapes).

    Raises:
        DamagedFile: names the first tensors that are missing, unexpected or of another shape.
    """
    saved = {name: tuple(tensor.shape) for name, tensor in checkpoint["state_dict"].items()}
    wanted = {name: tuple(tensor.shape) for name, tensor in module.state_dict().items()}
    differ = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))
    if differ:
        raise DamagedFile(
            path,
            f"damaged: its weights do not fit the networks ({len(differ)} tensors missing, "
            f"unexpected or of another shape, e.g. {', '.join(differ[:3])})",
            "resume from a checkpoint of this run, or with the settings it was trained with",
        )


def images_seen(checkpoint: Mapping[str, Any]) -> int:
    """The real images a loaded training checkpoint had trained on (``progress.cur_nimg``)."""
    return int(checkpoint.get("progress", {}).get("cur_nimg", 0))


def check_resume(ckpt_path: str | None, model: L.LightningModule, growth: Any) -> int:
    """Check a checkpoint against the config before anything runs.

    Returns:
        The images the checkpoint has trained on (0 without one). At or past
        ``growth.total_kimg`` the run is finished and a resume does nothing (logged here).

    Raises:
        ValueError: The file is unreadable, or its networks or growth schedule differ.
    """
    if not ckpt_path:
        return 0
    checkpoint = load_checkpoint(ckpt_path, mmap=True)
    check_architecture(checkpoint, model)
    check_weights(checkpoint, model, ckpt_path)
    nimg = images_seen(checkpoint)
    saved = checkpoint.get("callbacks", {}).get(growth.state_key)
    check_schedule(growth.schedule, saved["schedule"] if saved else None, nimg, ckpt_path)
    if nimg >= growth.schedule.total_nimg:
        log.warning(
            f"ckpt_path={ckpt_path} has seen {nimg / 1000:g} kimg, growth.total_kimg is "
            f"{growth.total_kimg:g}: the run is finished, nothing to train (raise "
            "growth.total_kimg to train longer)"
        )
    return nimg


def check_schedule(
    schedule: GrowthSchedule, saved: Mapping[str, Any] | None, nimg: int, source: str
) -> None:
    """Fail when ``schedule`` contradicts the one a checkpoint saved at ``nimg`` images.

    Args:
        schedule: The config's schedule.
        saved: The checkpoint's (:meth:`GrowthSchedule.state`), or None (none saved).
        nimg: Images seen in the checkpoint.
        source: The checkpoint's path, for the message.

    Raises:
        ValueError: One line naming every conflict and the fix.
    """
    conflicts = schedule.resume_conflicts(saved, nimg) if saved else []
    if conflicts:
        raise CheckpointMismatch(
            f"ckpt_path={source} was trained with another growth schedule: "
            + "; ".join(conflicts)
            + ". Resume with its growth.* settings (its run's .hydra/config.yaml); only "
            "phases not begun, the current stable phase and growth.total_kimg may change"
        )


def _newest_first(dirpath: Path) -> list[Path]:
    ckpts = sorted(dirpath.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return sorted(ckpts, key=lambda p: p.name != LAST_CHECKPOINT)  # first, stable otherwise


def find_last_checkpoint(dirpath: str | Path) -> Path:
    """``last.ckpt`` of a checkpoint folder, else its newest readable ``.ckpt`` file.

    A truncated or damaged ``last.ckpt`` (a crash of the disk, not of this code: writes are
    atomic) is skipped with a warning naming it and the checkpoint used instead.

    Raises:
        FileNotFoundError: No readable checkpoint in ``dirpath``.
    """
    dirpath = Path(dirpath).expanduser()
    skipped = []
    for path in _newest_first(dirpath):
        try:
            load_checkpoint(path, mmap=True)
        except ValueError:
            skipped.append(path)
            continue
        if skipped:
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(
                f"ckpt_path=last: {', '.join(map(str, skipped))} is not readable (truncated or "
                f"damaged); resuming from {path}, the newest readable checkpoint"
            )
        return path
    unreadable = f" ({len(skipped)} unreadable .ckpt files)" if skipped else ""
    raise FileNotFoundError(
        f"ckpt_path=last: no readable checkpoint in {dirpath}{unreadable}; point hydra.run.dir "
        "at the run to resume (its checkpoints/ folder) or give ckpt_path=/path/to/file.ckpt"
    )


def generator_from_checkpoint(
    checkpoint: dict[str, Any],
    map_location: str | torch.device = "cpu",
    source: str | Path = "the checkpoint",
) -> Generator:
    """G_ema from a loaded training checkpoint, with ``trained_stage``/``trained_alpha`` and
    ``class_names`` (from ``checkpoint["classes"]["names"]``; ``[]`` when unconditional).

    Args:
        checkpoint: What :func:`load_checkpoint` returned.
        map_location: Device for the weights.
        source: The checkpoint's path, for messages.

    Raises:
        DamagedFile: no architecture record, G_ema's weights do not fit it or are not finite.
    """
    arch = checkpoint.get("architecture", {}).get("G")
    if arch is None:
        raise DamagedFile(
            source,
            "has no architecture record (written by a version from before exports)",
            "resume it with a current version for one tick to write a checkpoint that has one",
        )
    prefix = "G_ema."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    check_finite(state, source)
    try:
        G = Generator(**arch)
        G.load_state_dict(state)
    except (TypeError, ValueError, RuntimeError) as error:  # Missing or unexpected keys.
        raise DamagedFile(
            source,
            "damaged: its G_ema weights do not fit its architecture record "
            f"({' '.join(str(error).split())[:300]})",
        ) from None
    progress = checkpoint.get("progress", {})
    names = check_class_names(
        checkpoint.get("classes", {}).get("names"), G.num_classes, "the checkpoint"
    )
    return mark_trained(G, progress.get("stage"), progress.get("alpha"), names, map_location)


def export_checkpoint(
    ckpt_path: str | Path, out: str | Path | None = None, allow_pickle: bool = False
) -> tuple[Path, Path]:
    """Export G_ema of a training checkpoint; default output: ``<ckpt>.safetensors``."""
    checkpoint = load_checkpoint(ckpt_path, allow_pickle=allow_pickle)
    G = generator_from_checkpoint(checkpoint, source=Path(ckpt_path).expanduser())
    out = Path(ckpt_path).with_suffix(".safetensors") if out is None else out
    return export_generator(G, out, G.trained_stage, G.trained_alpha)
