"""One training run per run dir: an inter-process lock held for the whole run, and the
refusal of a fresh run in a folder that already holds one (or of a fresh sweep in a sweep dir
whose job dirs do).

The command takes the lock the moment Hydra hands it the run dir (``cli/run_dir.py``) and holds
it until the process exits (:func:`acquire_run_dir`); :func:`run_dir_lock` around training then
finds it held. A run started from Python takes it there.
"""

from __future__ import annotations

import atexit
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from progan_lightning.faults import UserError
from progan_lightning.fs import FileLock, Timeout, atomic_write, file_lock
from progan_lightning.run_paths import CHECKPOINT_DIR, EXPORT_NAME
from progan_lightning.run_record import RECORD_DIR, RUN_NAME

LOCK_NAME = ".run.lock"
OWNER_NAME = ".run.owner"


def run_files(run_dir: str | Path, checkpoint_dir: str | Path | None = None) -> list[Path]:
    """What makes ``run_dir`` hold a run: its checkpoints and its export (empty: none).

    Args:
        run_dir: The run dir (``hydra.run.dir``).
        checkpoint_dir: Where its checkpoints go (default: ``<run_dir>/checkpoints``).
    """
    run_dir = Path(run_dir).expanduser()
    checkpoints = Path(checkpoint_dir or run_dir / CHECKPOINT_DIR).expanduser()
    found = sorted(checkpoints.glob("*.ckpt")) if checkpoints.is_dir() else []
    return found + [p for p in [run_dir / EXPORT_NAME] if p.is_file()]


def held_error(folder: Path | str, found: list[Path], sweep: bool = False) -> UserError:
    """The refusal of a fresh run (or sweep) in ``folder``, the value of ``hydra.run.dir``
    (``hydra.sweep.dir``), which holds ``found`` (shown up to three): what it holds and both
    ways on."""
    key, unit, held = (
        ("hydra.sweep.dir", "sweep", "runs") if sweep else ("hydra.run.dir", "run", "a run")
    )
    shown = ", ".join(str(p) for p in found[:3]) + (" ..." if len(found) > 3 else "")
    return UserError(
        f"{key}={folder} holds {held} ({shown}); a fresh {unit} there would overwrite "
        f"{'them' if sweep else 'it'}. Continue that {unit} with ckpt_path=last (and the same "
        f"{key}), or start a new one in another folder: {key}=OTHER_DIR (or leave {key} unset "
        "for a new dated folder)"
    )


def check_fresh_sweep_dir(sweep_dir: str | Path, ckpt_path: str | None) -> None:
    """Refuse a fresh sweep (no ``ckpt_path``) in a sweep dir whose job dirs hold runs, or
    that another process trains in: Hydra writes each job's ``.hydra/`` before the job
    starts, so the check must run before the sweep does.

    Raises:
        UserError: A job dir of ``sweep_dir`` is in use, or holds a run and ``ckpt_path`` is
            unset.
    """
    sweep_dir = Path(sweep_dir).expanduser()
    jobs = sorted(p for p in sweep_dir.iterdir() if p.is_dir()) if sweep_dir.is_dir() else []
    for job in jobs:
        check_not_in_use(job)
    held = [job for job in jobs if run_files(job)] if not ckpt_path else []
    if held:
        raise held_error(sweep_dir, held, sweep=True)


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
        raise held_error(run_dir, found)


def check_not_a_training_run(run_dir: str | Path, command: str) -> None:
    """Refuse ``run_dir`` to a command that does not train (``command``: its task name) when
    it holds a training run: checkpoints, an export or a run record.

    Raises:
        UserError: ``run_dir`` holds a training run.
    """
    run_dir = Path(run_dir).expanduser()
    record = run_dir / RECORD_DIR / RUN_NAME
    found = run_files(run_dir) + [p for p in [record] if p.is_file()]
    if found:
        shown = ", ".join(str(p) for p in found[:3]) + (" ..." if len(found) > 3 else "")
        raise UserError(
            f"hydra.run.dir={run_dir} holds a training run ({shown}); progan-{command} never "
            "writes into one: leave hydra.run.dir unset (a new dated folder) or give it another "
            "folder"
        )


def in_use_error(run_dir: Path) -> UserError:
    """The refusal of a run dir that another process holds."""
    owner = run_dir / OWNER_NAME
    who = (owner.read_text().strip() if owner.is_file() else "") or "another process"
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


# The run dirs this process holds, by resolved path: taken once, released at exit.
_held: dict[Path, FileLock] = {}


def _key(run_dir: str | Path) -> Path:
    return Path(run_dir).expanduser().resolve()


def holds_run_dir(run_dir: str | Path) -> bool:
    """Whether this process holds ``run_dir``'s lock."""
    return _key(run_dir) in _held


def acquire_run_dir(run_dir: str | Path) -> None:
    """Take ``<run_dir>/.run.lock`` (and name this process in ``.run.owner``) until
    :func:`release_run_dir` or the process's exit; nothing if this process holds it already.

    Taking it is one atomic step (``flock``), so of two processes racing for one run dir
    exactly one gets it. The operating system releases it if the holder dies.

    Raises:
        UserError: Another process holds the lock.
    """
    key = _key(run_dir)
    if key in _held:
        return
    key.mkdir(parents=True, exist_ok=True)
    lock = file_lock(key / LOCK_NAME, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise in_use_error(Path(run_dir)) from None
    if not _held:
        atexit.register(release_all)
    _held[key] = lock
    since = time.strftime("%Y-%m-%d %H:%M:%S")
    who = f"pid {os.getpid()} on {socket.gethostname()} (since {since})\n"
    atomic_write(key / OWNER_NAME, lambda tmp: tmp.write_text(who))


def release_run_dir(run_dir: str | Path) -> None:
    """Release ``run_dir``'s lock if this process holds it (its owner file removed first)."""
    lock = _held.pop(_key(run_dir), None)
    if lock is not None:
        (_key(run_dir) / OWNER_NAME).unlink(missing_ok=True)
        lock.release()


def release_all() -> None:
    """Release every run dir this process holds (at exit)."""
    for key in list(_held):
        release_run_dir(key)


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``<run_dir>/.run.lock`` while the body runs (the command's hold, taken when Hydra
    handed the run dir over, goes on to the process's exit).

    A second process that tries the same run dir (two jobs given one ``hydra.run.dir``, a
    resume started while the run is still alive) fails at once, naming the process that
    holds it, instead of mixing checkpoints, samples and ``metrics.csv`` with it. The lock
    is released by the operating system if the holder dies.

    Raises:
        UserError: Another process holds the lock.
    """
    if holds_run_dir(run_dir):
        yield
        return
    acquire_run_dir(run_dir)
    try:
        yield
    finally:
        release_run_dir(run_dir)
