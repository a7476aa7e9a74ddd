"""Safe checkpoints: atomic writes at tick ends, retention, SIGTERM/SIGINT, RNG states, export."""

from __future__ import annotations

import os
import random
import re
import signal
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from progan_lightning.export import export_generator, load_checkpoint
from progan_lightning.faults import DamagedFile, Diverged, WriteFailed
from progan_lightning.fs import temp_path

LAST = "last.ckpt"
# How torch's zip writer reports a failed write (it raises RuntimeError, not OSError).
TORCH_WRITE_ERROR = re.compile(r"PytorchStreamWriter|file write failed|unexpected pos")


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """Open a training checkpoint cheaply (memory-mapped, weights only) to check it.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        DamagedFile: It is truncated, damaged or not a progan-lightning checkpoint (see
            :func:`~progan_lightning.export.load_checkpoint`); the message names the other
            checkpoints beside it.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"ckpt_path={path} not found; give an existing .ckpt file")
    try:
        return load_checkpoint(path, mmap=True)
    except DamagedFile as error:
        others = [p.name for p in _newest_first(path.parent) if p != path]
        if others:
            beside = f"checkpoints beside it: {', '.join(others)}"
            error.fix = f"{error.fix}; {beside}" if error.fix else beside
        raise


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


def _newest_first(dirpath: Path) -> list[Path]:
    ckpts = sorted(dirpath.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    return sorted(ckpts, key=lambda p: p.name != LAST)  # last.ckpt first, stable otherwise


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
            read_checkpoint(path)
        except ValueError:
            skipped.append(path)
            continue
        if skipped:
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


def rng_states() -> dict[str, Any]:
    """Global RNG states (torch CPU/CUDA, numpy, python) as weights-only-loadable values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what :func:`rng_states` returned."""
    torch.set_rng_state(states["torch"])
    kind, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _reason(error: Exception) -> str:
    """An error's message on one line (torch's spans several)."""
    return " ".join(str(error).split()) or type(error).__name__


def check_finite_weights(pl_module: L.LightningModule) -> None:
    """Raise :class:`Diverged` if a parameter of G, D or G_ema is not finite."""
    for name in ("G", "D", "G_ema"):
        params = list(getattr(pl_module, name).parameters())
        if not torch.isfinite(torch.stack(torch._foreach_norm(params))).all():
            raise Diverged(f"the weights of {name}", pl_module.cur_nimg, pl_module.phase_name)


class SafeCheckpoint(Checkpoint):
    """Writes resumable checkpoints only at tick (epoch) ends, so a resume is exact.

    Every tick end rewrites ``last.ckpt``; ``kimg<kimg>.ckpt`` is kept every ``every_kimg``
    (checked at tick ends) or ``every_n_epochs`` ticks, the newest ``keep_last`` of them
    survive; ``phase<i>_kimg<kimg>.ckpt`` is kept at every phase end. Each file is written
    to a temporary name and renamed, so a kill during a write leaves the previous file
    intact. SIGTERM/SIGINT (e.g. SLURM pre-emption) finish the current batch, end the tick
    there, write ``last.ckpt`` and stop. Checkpoints hold the global RNG states, restored
    when training resumes. Only a finished run (images seen reached ``total_kimg``) exports
    G_ema at the end of fit (see ``export.py``); a stopped one leaves the export untouched.
    Non-finite weights are never written (:class:`~progan_lightning.faults.Diverged`).

    Args:
        dirpath: Folder of the checkpoints (``${paths.output_dir}/checkpoints``).
        every_kimg: Keep a checkpoint every this many kimg (null = off).
        every_n_epochs: Keep a checkpoint every this many ticks (null = off).
        keep_last: Periodic checkpoints kept (older ones are deleted); at least 1.
        handle_signals: Checkpoint and stop on SIGTERM/SIGINT.
        export_path: Where G_ema is exported at the end of fit (null = no export).
    """

    def __init__(
        self,
        dirpath: str | Path,
        every_kimg: float | None = None,
        every_n_epochs: int | None = None,
        keep_last: int = 3,
        handle_signals: bool = True,
        export_path: str | Path | None = None,
    ) -> None:
        super().__init__()
        if keep_last < 1:
            raise ValueError(
                f"callbacks.model_checkpoint.keep_last={keep_last} would delete the checkpoint "
                "just written; use 1 or more"
            )
        self.dirpath = Path(dirpath)
        self.every_nimg = round(every_kimg * 1000) if every_kimg else None
        self.every_n_epochs = every_n_epochs
        self.keep_last = keep_last
        self.handle_signals = handle_signals
        self.export_path = Path(export_path) if export_path else None
        self.signal_received: int | None = None
        self._old_handlers: dict[int, Any] = {}
        self._rng: dict[str, Any] | None = None
        self._last_kept_nimg = 0

    # Writing.

    def save(self, trainer: L.Trainer, name: str) -> Path:
        """Write ``<dirpath>/<name>`` atomically (every rank calls it; rank 0 writes).

        Raises:
            Diverged: the weights are not finite (nothing is written).
            WriteFailed: the file could not be written (disk full, a file size limit); the
                previous file of that name is intact and the temporary file removed.
        """
        path = self.dirpath / name
        tmp = temp_path(path)  # unique per process (rank 0 alone renames it)
        check_finite_weights(trainer.lightning_module)
        try:
            if trainer.is_global_zero:
                self.dirpath.mkdir(parents=True, exist_ok=True)
            trainer.save_checkpoint(tmp, weights_only=False)
            if trainer.is_global_zero:
                os.replace(tmp, path)
        except (OSError, RuntimeError) as error:
            if not isinstance(error, OSError) and not TORCH_WRITE_ERROR.search(str(error)):
                raise
            tmp.unlink(missing_ok=True)
            last = self.dirpath / LAST
            raise WriteFailed(path, _reason(error), last if last.is_file() else None) from error
        trainer.strategy.barrier("SafeCheckpoint.save")
        return path

    def _prune(self) -> None:
        kept = sorted(self.dirpath.glob("kimg*.ckpt"))
        for old in kept[: max(0, len(kept) - self.keep_last)]:
            old.unlink(missing_ok=True)

    def _keep_periodic(self, trainer: L.Trainer, nimg: int) -> bool:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            return True
        return bool(self.every_nimg) and nimg // self.every_nimg > self._last_kept_nimg // (
            self.every_nimg
        )

    # Hooks.

    def _on_signal(self, signum: int, frame: Any) -> None:
        if self.signal_received is not None:
            # A second signal: stop at once, as without this callback.
            signal.signal(signum, self._old_handlers.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
        self.signal_received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # After Lightning's own handlers (registered once fit set-up is done), which would
        # abort mid-tick instead.
        self.signal_received = None
        if self.handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        # After every restore and set-up hook: the next batch sees the saved RNG states.
        if self._rng is not None:
            set_rng_states(self._rng)
            self._rng = None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self.signal_received is not None:
            rank_zero_info(f"[checkpoint] signal {self.signal_received}: saving and stopping")
            trainer.should_stop = True

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.fast_dev_run:
            return
        nimg = pl_module.cur_nimg
        kimg = f"{nimg / 1000:09.3f}"
        self.save(trainer, LAST)
        if pl_module.progress.phase_ended:
            self.save(trainer, f"phase{pl_module.phase_index:02d}_kimg{kimg}.ckpt")
        if self._keep_periodic(trainer, nimg):
            self._last_kept_nimg = nimg
            self.save(trainer, f"kimg{kimg}.ckpt")
            if trainer.is_global_zero:
                self._prune()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        progress = pl_module.progress
        finished = progress.schedule is None or progress.done
        if self.export_path is not None and finished and trainer.is_global_zero:
            G, stage, alpha = pl_module.G_ema, pl_module.stage, pl_module.alpha
            try:
                export_generator(G, self.export_path, stage, alpha)
            except OSError as error:
                last = self.dirpath / LAST
                raise WriteFailed(
                    self.export_path, _reason(error), last if last.is_file() else None, True
                ) from error

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)
        self._old_handlers.clear()

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._rng = checkpoint.get("rng_states")

    def state_dict(self) -> dict[str, Any]:
        return {"last_kept_nimg": self._last_kept_nimg}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_kept_nimg = int(state_dict.get("last_kept_nimg", 0))
