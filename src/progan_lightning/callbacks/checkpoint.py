"""Safe checkpoints: atomic writes at tick ends, retention, SIGTERM/SIGINT, RNG states, export."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Checkpoint
from lightning.pytorch.utilities import rank_zero_info

from progan_lightning.export import export_generator
from progan_lightning.faults import Diverged, WriteFailed
from progan_lightning.fs import temp_path
from progan_lightning.rng import gather_rng_states, restore_rank
from progan_lightning.run_paths import LAST_CHECKPOINT, last_checkpoint

# How torch's zip writer reports a failed write (it raises RuntimeError, not OSError).
TORCH_WRITE_ERROR = re.compile(r"PytorchStreamWriter|file write failed|unexpected pos")


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
    there, write ``last.ckpt`` and stop. Checkpoints hold the global RNG states of every
    rank, each restored on its rank when training resumes (``rng.py``). Only a finished run
    (images seen reached ``total_kimg``) exports G_ema at the end of fit (see ``export.py``);
    a stopped one leaves the export untouched.
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
        self._rng: list[dict[str, Any]] | None = None  # each rank's, from a checkpoint
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
            last = last_checkpoint(self.dirpath)
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
            restore_rank(self._rng, trainer.global_rank, trainer.world_size)
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
        self.save(trainer, LAST_CHECKPOINT)
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
                last = last_checkpoint(self.dirpath)
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
        ranks = gather_rng_states()
        checkpoint["rng_states"] = ranks[0]
        if len(ranks) > 1:
            checkpoint["rank_rng_states"] = ranks

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        saved = checkpoint.get("rng_states")
        self._rng = checkpoint.get("rank_rng_states") or ([saved] if saved else None)

    def state_dict(self) -> dict[str, Any]:
        return {"last_kept_nimg": self._last_kept_nimg}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._last_kept_nimg = int(state_dict.get("last_kept_nimg", 0))
