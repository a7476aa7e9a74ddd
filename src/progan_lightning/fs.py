"""File-system helpers every writer shares: temp names, atomic writes, inter-process locks.

A file under its final name is always complete: writers write a temp file beside it (unique
per process, so two writers never rename each other's half-written files) and rename it into
place (``os.replace``, atomic on one file system). Locks are ``filelock``'s (``flock`` on
POSIX, ``msvcrt`` on Windows), released by the operating system if the holder dies.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from filelock import FileLock, Timeout

from progan_lightning.faults import UserError, WriteError, os_error

__all__ = [
    "FileLock",
    "Timeout",
    "atomic_write",
    "atomic_write_all",
    "check_folder",
    "expand_path",
    "file_kind",
    "file_lock",
    "new_file_mode",
    "temp_path",
]


def temp_path(path: str | Path) -> Path:
    """A temp name beside ``path``, hidden and unique to this process:
    ``<dir>/.<name>.tmp-<pid>``."""
    path = Path(path)
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


_UNSET_VARIABLE = re.compile(r"\$(\w+|\{[^}]*\})")


def expand_path(value: str | os.PathLike[str], setting: str = "the path") -> Path:
    """``value`` with ``~`` and ``$VARS`` (``${VARS}``) expanded, as a shell expands them.

    Args:
        value: A path setting's value.
        setting: Its name, for the error message (``data.path``, ``PROGAN_LOG_DIR``).

    Raises:
        UserError: it names a variable that is not set (it would become a folder named
            ``$NAME``).
    """
    expanded = os.path.expandvars(os.path.expanduser(os.fspath(value)))
    unset = _UNSET_VARIABLE.search(expanded)
    if unset:
        raise UserError(
            f"{setting}={os.fspath(value)} names the environment variable {unset.group(0)}, "
            "which is not set; set it (in the shell or .env) or write the path out"
        )
    return Path(expanded).expanduser()


def check_folder(path: str | Path, setting: str) -> Path:
    """``path``, refused when it (or the nearest part of it that exists) is a file: it must
    be a folder, or become one.

    Raises:
        UserError: naming ``setting`` and the file.
    """
    path = Path(path)
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is not None and not existing.is_dir():
        what = (
            "is a file, not a folder"
            if existing == path
            else f"cannot be a folder: {existing} is a file"
        )
        raise UserError(f"{setting}={path} {what}; set {setting} to a folder")
    return path


_SIGNATURES = (
    (b"PK\x03\x04", "a zip archive"),
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"RIFF", "a RIFF file (WebP image)"),
    (b"\x1f\x8b", "a gzip file"),
    (b"\x89HDF", "an HDF5 file (Keras)"),
    (b"<", "an HTML or XML page (a download that returned a web page)"),
    (b"{", "a JSON file"),
)


def file_kind(path: str | Path) -> str:
    """What ``path`` holds, read from its first bytes: ``a zip archive`` (as ``torch.save``
    writes), ``a pickle``, ``a safetensors file``, ``a PNG image``, ... or ``an unknown
    kind of file``, ``an empty file``.

    Raises:
        OSError: the file cannot be read.
    """
    with open(path, "rb") as file:
        head = file.read(16)
    if not head:
        return "an empty file"
    # safetensors: an 8-byte little-endian header length, then the JSON header.
    if head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 2**30:
        return "a safetensors file"
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[0] == 0x80 and len(head) > 1 and 2 <= head[1] <= 5:
        return "a pickle"
    return "an unknown kind of file"


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
    the writer chose: safetensors, for one, creates its files ``0o600``.

    Raises:
        WriteError: the file could not be written (disk full, a file size limit, a read-only
            folder); it names ``path``.
    """
    return atomic_write_all({Path(path): write})[0]


def atomic_write_all(writes: dict[Path, Callable[[Path], object]]) -> list[Path]:
    """:func:`atomic_write` of several files that belong together: each is written to its
    temp file first, and only when all are written are they renamed into place, so a failed
    write leaves every previous file as it was (and no new one).

    Raises:
        WriteError: a file could not be written; it names that file.
    """
    temps: list[Path] = []
    try:
        for path, write in writes.items():
            current = path
            path.parent.mkdir(parents=True, exist_ok=True)
            temps.append(temp_path(path))
            write(temps[-1])
            os.chmod(temps[-1], new_file_mode())
        for path, tmp in zip(writes, temps, strict=True):
            current = path
            os.replace(tmp, path)
    except BaseException as error:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        cause = os_error(error)
        if cause is None or isinstance(error, WriteError):
            raise
        raise WriteError(current, cause) from error
    return list(writes)


def file_lock(path: str | Path, timeout: float = -1) -> FileLock:
    """An exclusive inter-process lock on ``path`` (created if missing), to use as a context
    manager or with ``acquire``/``release``. ``timeout``: seconds to wait (-1: for ever; 0:
    fail at once with :class:`filelock.Timeout`)."""
    return FileLock(str(path), timeout=timeout)
