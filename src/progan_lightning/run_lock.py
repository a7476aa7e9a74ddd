"""One training run per run dir: an inter-process lock held for the whole run."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

LOCK_NAME = ".run.lock"
OWNER_NAME = ".run.owner"


@contextmanager
def run_dir_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold ``<run_dir>/.run.lock`` while the body runs.

    A second process that tries the same run dir (two jobs given one ``hydra.run.dir``, a
    resume started while the run is still alive) fails at once, naming the process that
    holds it, instead of mixing checkpoints, samples and ``metrics.csv`` with it. The lock
    is released by the operating system if the holder dies.

    Raises:
        RuntimeError: Another process holds the lock.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock, owner = FileLock(run_dir / LOCK_NAME, timeout=0), run_dir / OWNER_NAME
    try:
        lock.acquire()
    except Timeout:
        who = owner.read_text().strip() if owner.is_file() else "another process"
        raise RuntimeError(
            f"the run dir {run_dir} is in use by {who}: one run per run dir. Wait for that "
            "run to end (or stop it), or give this one its own hydra.run.dir"
        ) from None
    try:
        since = time.strftime("%Y-%m-%d %H:%M:%S")
        owner.write_text(f"pid {os.getpid()} on {socket.gethostname()} (since {since})\n")
        yield
    finally:
        owner.unlink(missing_ok=True)
        lock.release()
