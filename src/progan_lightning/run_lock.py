"""One training run per run dir: an inter-process lock held for the whole run, and the
refusal of a fresh run in a folder that already holds one."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from progan_lightning.faults import UserError
from progan_lightning.fs import Timeout, file_lock

LOCK_NAME = ".run.lock"
OWNER_NAME = ".run.owner"
EXPORT_NAME = "generator.safetensors"


def run_files(run_dir: str | Path, checkpoint_dir: str | Path | None = None) -> list[Path]:
    """What makes ``run_dir`` hold a run: its checkpoints and its export (empty: none).

    Args:
        run_dir: The run dir (``hydra.run.dir``).
        checkpoint_dir: Where its checkpoints go (default: ``<run_dir>/checkpoints``).
    """
    run_dir = Path(run_dir).expanduser()
    checkpoints = Path(checkpoint_dir or run_dir / "checkpoints").expanduser()
    found = sorted(checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    return found + [p for p in [run_dir / EXPORT_NAME] if p.is_file()]


def check_fresh_run_dir(
    run_dir: str | Path, ckpt_path: str | None, checkpoint_dir: str | Path | None = None
) -> None:
    """Refuse to start a fresh run (no ``ckpt_path``) in a folder that holds a run.

    Its checkpoints, export and config would be overwritten by the new run's, and its
    checkpoints mixed with them.

    Raises:
        UserError: ``run_dir`` holds checkpoints or an export and ``ckpt_path`` is unset.
    """
    found = run_files(run_dir, checkpoint_dir) if not ckpt_path else []
    if found:
        shown = ", ".join(str(p) for p in found[:3]) + (" ..." if len(found) > 3 else "")
        raise UserError(
            f"hydra.run.dir={run_dir} holds a run ({shown}); a fresh run there would overwrite "
            "it. Continue that run with ckpt_path=last (and the same hydra.run.dir), or start "
            "a new one in another folder: hydra.run.dir=OTHER_DIR (or leave hydra.run.dir "
            "unset for a new dated folder)"
        )


def in_use_error(run_dir: Path) -> UserError:
    """The refusal of a run dir that another process holds."""
    owner = run_dir / OWNER_NAME
    who = owner.read_text().strip() if owner.is_file() else "another process"
    return UserError(
        f"the run dir {run_dir} is in use by {who}: one run per run dir. Wait for that run "
        "to end (or stop it), or give this one its own hydra.run.dir"
    )


def check_not_in_use(run_dir: str | Path) -> None:
    """Refuse a run dir whose lock another process holds, without creating anything.

    Raises:
        UserError: another process holds ``<run_dir>/.run.lock``.
    """
    run_dir = Path(run_dir).expanduser()
    if not (run_dir / LOCK_NAME).is_file():
        return
    lock = file_lock(run_dir / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise in_use_error(run_dir) from None
    lock.release()


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``<run_dir>/.run.lock`` while the body runs.

    A second process that tries the same run dir (two jobs given one ``hydra.run.dir``, a
    resume started while the run is still alive) fails at once, naming the process that
    holds it, instead of mixing checkpoints, samples and ``metrics.csv`` with it. The lock
    is released by the operating system if the holder dies.

    Raises:
        UserError: Another process holds the lock.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock, owner = file_lock(run_dir / LOCK_NAME, timeout=0), run_dir / OWNER_NAME
    try:
        lock.acquire()
    except Timeout:
        raise in_use_error(run_dir) from None
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        owner.write_text(f"pid {os.getpid()} on {socket.gethostname()} (since {since})\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
