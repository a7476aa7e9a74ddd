"""Why a command stopped before its end, as exceptions that carry the process exit status.

Library code raises them; every console command turns them into one message and the exit
status below (:mod:`progan_lightning.cli.errors`), so that a user, a scheduler or a sweep
can tell the cases apart:

| status | meaning |
|---|---|
| 0 | finished (or already finished: a resume of a finished run does nothing) |
| 1 | a crash (a bug: its traceback is shown) |
| 2 | a user error (a bad value, path, file or command line): one message naming it and the fix |
| 3 | :class:`Diverged`: a loss or gradient became non-finite; nothing of it was written |
| 4 | :class:`WriteFailed`, :class:`WriteError`: a file could not be written (disk full, ...) |
| 128 + N | :class:`Preempted` by signal N (143: SIGTERM, 130: SIGINT); ``last.ckpt`` written |

A user error prints only its message; ``HYDRA_FULL_ERROR=1`` shows its traceback too.
"""

from __future__ import annotations

import errno
import os
import re
import signal
from pathlib import Path

from progan_lightning.run_paths import LAST_CHECKPOINT

USER_ERROR_EXIT_CODE = 2
DIVERGED_EXIT_CODE = 3
WRITE_FAILED_EXIT_CODE = 4


USER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
)
"""The kinds of error a user can cause and fix (a bad value, path or file): the library refuses
with one of these (:class:`UserError` is a ``ValueError``), and a command reports them as one
line with :data:`USER_ERROR_EXIT_CODE`. Anything else is a bug and keeps its traceback."""


class UserError(ValueError):
    """A mistake the user can fix (a bad value, path, file or run dir); the message names it
    and the fix. A ``ValueError``, like the other refusals of a bad config value."""


class DamagedFile(UserError):
    """A file that is not what it should be: foreign, truncated or corrupted.

    Args:
        path: The file.
        what: What is wrong with it (``not a progan-lightning checkpoint``, ``damaged: ...``).
        fix: What to do about it.
    """

    def __init__(self, path: str | Path, what: str, fix: str = ""):
        self.path, self.what, self.fix = Path(path), what, fix
        super().__init__(path, what, fix)

    def __str__(self) -> str:
        return f"{self.path}: {self.what}" + (f"; {self.fix}" if self.fix else "")


class CheckpointMismatch(UserError):
    """A checkpoint the config does not fit (other networks, classes or growth schedule); the
    settings it was trained with fit it."""


def resume_overrides(checkpoint: Path, run_dir: Path | None) -> str:
    """The overrides that resume from ``checkpoint``, with a word saying how many.

    With its run's folder known: ``resume=RUN`` (for its ``last.ckpt``) or ``resume=RUN
    ckpt_path=FILE``, which compose the run's own recorded overrides (``ckpt_path=FILE``
    alone composes the config on the command line, which a run with settings of its own does
    not fit). Without it: ``ckpt_path=FILE``."""
    if run_dir is None:
        return f"the override ckpt_path={checkpoint}"
    if checkpoint.name == LAST_CHECKPOINT:
        return f"the override resume={run_dir}"
    return f"the overrides resume={run_dir} ckpt_path={checkpoint}"


class TrainingStopped(Exception):
    """Training ended early for a reason the user can act on; ``exit_code`` is the status.

    ``run_dir``: the run's folder, set once the run has written its record there; the message
    then resumes by that folder (:func:`resume_overrides`)."""

    exit_code = 1
    run_dir: Path | None = None


class Diverged(TrainingStopped):
    """A non-finite loss or gradient: the step was not applied (weights, G_ema and every
    checkpoint stay finite) and the run stops.

    Args:
        what: What became non-finite (``loss/D``, ``gradient of G``, ``G_ema weights``, ...).
        nimg: Images seen when it happened.
        phase: The phase's name (``fade16``).
        checkpoint: The newest checkpoint (all checkpoints are finite), once known.
    """

    exit_code = DIVERGED_EXIT_CODE

    def __init__(self, what: str, nimg: int, phase: str, checkpoint: Path | None = None):
        self.what, self.nimg, self.phase, self.checkpoint = what, nimg, phase, checkpoint
        super().__init__(what, nimg, phase, checkpoint)

    def __str__(self) -> str:
        where = (
            f"the newest good checkpoint is {self.checkpoint} (resume from it with "
            f"{resume_overrides(self.checkpoint, self.run_dir)} and a lower growth.lr or "
            "model.optimizer.lr)"
            if self.checkpoint
            else "no checkpoint was written yet; lower growth.lr or model.optimizer.lr"
        )
        return (
            f"training diverged at kimg {self.nimg / 1000:.3f} ({self.phase}): {self.what} is "
            f"not finite; the step was not applied and nothing non-finite was saved; {where}"
        )


class Preempted(TrainingStopped):
    """Stopped by SIGTERM/SIGINT after writing ``last.ckpt``; no final export.

    Args:
        signum: The signal received.
        checkpoint: The checkpoint written at the stop.
    """

    def __init__(self, signum: int, checkpoint: Path | None = None):
        self.signum, self.checkpoint = signum, checkpoint
        self.exit_code = 128 + signum
        super().__init__(signum, checkpoint)

    def __str__(self) -> str:
        name = signal.Signals(self.signum).name
        return (
            f"stopped by {name}: {self.checkpoint} written, no final export; resume with "
            f"{resume_overrides(self.checkpoint, self.run_dir)} (exit status {self.exit_code})"
        )


class WriteFailed(TrainingStopped):
    """A file could not be written (disk full, a file size limit, a lost mount); the file it
    would have replaced is intact.

    Args:
        path: The file that could not be written.
        reason: The operating system's reason.
        checkpoint: The newest intact checkpoint, once known.
        export: The file is the final export (written again from ``checkpoint`` with
            ``progan-export``), not a checkpoint (resume from ``checkpoint``).
    """

    exit_code = WRITE_FAILED_EXIT_CODE

    def __init__(
        self, path: str | Path, reason: str, checkpoint: Path | None = None, export: bool = False
    ):
        self.path, self.reason, self.checkpoint = Path(path), reason, checkpoint
        self.export = export
        super().__init__(path, reason, checkpoint, export)

    def __str__(self) -> str:
        fix = "free some space (or raise the limit)"
        if self.checkpoint is None:
            where = f"no checkpoint was written yet; {fix} and start again"
        elif self.export:
            where = (
                f"the run's checkpoint {self.checkpoint} is intact; {fix} and export it with "
                f"progan-export {self.checkpoint} {self.path}"
            )
        else:
            where = (
                f"the previous checkpoint {self.checkpoint} is intact; {fix} and resume with "
                f"{resume_overrides(self.checkpoint, self.run_dir)}"
            )
        return f"could not write {self.path} ({self.reason}); {where}"


WRITE_FIXES = {
    errno.ENOSPC: "free some space on its disk",
    errno.EDQUOT: "free some space (the disk quota is used up)",
    errno.EFBIG: "raise the file size limit (ulimit -f) or write to another file system",
    errno.EROFS: "write into a folder on a writable file system",
    errno.EACCES: "write into a folder you may write to",
    errno.EPERM: "write into a folder you may write to",
}
"""The fix of each cause of a failed write."""

_RUST_OS_ERROR = re.compile(r"\(os error (\d+)\)")


def os_error(error: BaseException) -> OSError | None:
    """``error`` as an ``OSError``: itself, or one rebuilt from the ``(os error N)`` that
    libraries written in Rust (safetensors) put in their messages; None for anything else."""
    if isinstance(error, OSError):
        return error
    found = _RUST_OS_ERROR.search(str(error))
    if found is None:
        return None
    code = int(found.group(1))
    return OSError(code, os.strerror(code))


class WriteError(OSError):
    """A command could not write a file (disk full, a file size limit, a read-only folder);
    nothing half-written is left under its name. Commands end with :meth:`message` and exit
    status 4 (:data:`WRITE_FAILED_EXIT_CODE`).

    Args:
        path: The file (or folder) that could not be written.
        error: The operating system's error.
        fix: What to do, when the cause's usual fix (:data:`WRITE_FIXES`) is not enough (a
            setting that names another folder).
    """

    exit_code = WRITE_FAILED_EXIT_CODE

    def __init__(self, path: str | Path, error: OSError, fix: str = ""):
        super().__init__(error.errno, error.strerror or str(error), str(path))
        self.fix = fix

    def message(self) -> str:
        """One line: the file, the cause and the fix."""
        fix = WRITE_FIXES.get(self.errno or 0, "check the disk and the folder's permissions")
        also = f"; {self.fix}" if self.fix else ""
        return (
            f"could not write {self.filename} ({self.strerror}); {fix}{also}, and run the "
            "command again"
        )
