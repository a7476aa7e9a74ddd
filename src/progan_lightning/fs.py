"""File-system helpers every writer shares: temp names, atomic writes, inter-process locks.

A file under its final name is always complete: writers write a temp file beside it (unique
per process, so two writers never rename each other's half-written files) and rename it into
place (``os.replace``, atomic on one file system). Locks are ``filelock``'s (``flock`` on
POSIX, ``msvcrt`` on Windows), released by the operating system if the holder dies.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = ["FileLock", "Timeout", "atomic_write", "file_lock", "new_file_mode", "temp_path"]


def temp_path(path: str | Path) -> Path:
    """A temp name beside ``path``, hidden and unique to this process:
    ``<dir>/.<name>.tmp-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def new_file_mode() -> int:
    """The mode ``open()`` gives a new file: ``0o666`` less the process's umask (read from
    ``/proc`` where it can be, so no other thread ever sees a changed umask)."""
    try:
        status = Path("/proc/self/status").read_text()
        mask = next(
            int(line.split()[1], 8) for line in status.splitlines() if line.startswith("Umask:")
        )
    except (OSError, StopIteration, IndexError, ValueError):
        mask = os.umask(0o077)  # Python < 3.13 cannot read the umask without setting it
        os.umask(mask)
    return 0o666 & ~mask


def atomic_write(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on :func:`temp_path` of ``path``, then rename it into place: a
    crash or a failed write never leaves a truncated file under the final name, and never
    touches a previous file of that name. The temp file is removed when ``write`` fails.

    The file gets the mode of any file the user creates (:func:`new_file_mode`), whatever
    the writer chose: safetensors, for one, creates its files ``0o600``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        write(tmp)
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def file_lock(path: str | Path, timeout: float = -1) -> FileLock:
    """An exclusive inter-process lock on ``path`` (created if missing), to use as a context
    manager or with ``acquire``/``release``. ``timeout``: seconds to wait (-1: for ever; 0:
    fail at once with :class:`filelock.Timeout`)."""
    return FileLock(str(path), timeout=timeout)
