"""What a person reads: a bar on a terminal, a few plain lines anywhere else, and one log.

When stdout is not a terminal (SLURM, nohup, CI, a pipe) nothing draws a carriage-return bar:
multi-day logs stay readable and small. Every line goes through :mod:`logging`, so the
run's log file (``conf/hydra/job_logging/console.yaml``: ``<run dir>/<command>.log``) holds
the whole console: Lightning's lines and Python warnings are routed there too
(:func:`route_to_log`), and the library noise a person cannot act on is left out
(:class:`LibraryNoise`).
"""

from __future__ import annotations

import logging
import sys
import time
import warnings
from pathlib import Path
from types import TracebackType
from typing import TextIO

log = logging.getLogger(__name__)

LIBRARY_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
"""Loggers that set up their own console handler when imported before logging is."""

NOISE = (
    "GPU available:",
    "TPU available:",
    "HPU available:",
    "\N{ELECTRIC LIGHT BULB} Tip:",
)
"""Starts of library lines that say nothing about the run (Lightning's accelerator census
and adverts); the progress callback prints the device used instead."""


class ConsoleFormatter(logging.Formatter):
    """The message alone; a warning or error prefixed with its level (``WARNING: ...``)."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return text if record.levelno < logging.WARNING else f"{record.levelname}: {text}"


class LibraryNoise(logging.Filter):
    """Drops the library lines of :data:`NOISE`."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.name.startswith("lightning") and str(record.msg).startswith(NOISE))


def route_to_log() -> None:
    """Send Lightning's lines and Python warnings through the root logger's handlers (the
    console and the run's log file), once each.

    Lightning gives its loggers a console handler of their own (and stops them propagating)
    when imported before logging is set up; those are removed. A warning becomes one log
    line of its message (no source path): a deprecation inside a library, which a user
    cannot act on, only at DEBUG.
    """
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers[:]:
            if type(handler) is logging.StreamHandler:
                logger.removeHandler(handler)
        logger.propagate = True
    warnings.showwarning = log_warning


def log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """``warnings.showwarning`` that logs the warning's message (see :func:`route_to_log`)."""
    logger = logging.getLogger("py.warnings")
    text = str(message)
    internal = issubclass(category, DeprecationWarning | FutureWarning) and not _ours(filename)
    if internal:
        logger.debug(f"{filename}:{lineno}: {category.__name__}: {text}")
    elif _ours(filename) or issubclass(category, UserWarning):
        logger.warning(text)
    else:
        logger.warning(f"{text} ({category.__name__})")


def _ours(filename: str) -> bool:
    """Whether ``filename`` is this package's code (or a user's script), not a library's."""
    path = Path(filename).resolve()
    return Path(__file__).resolve().parent in path.parents or not any(
        part in ("site-packages", "dist-packages") for part in path.parts
    )


def is_terminal() -> bool:
    """Whether stdout is an interactive terminal."""
    return sys.stdout.isatty()


def format_duration(seconds: float | None) -> str:
    """``3d04h``, ``5h07m``, ``12m03s`` or ``42s`` (``?`` when unknown)."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "?"
    s = round(seconds)
    days, hours, minutes = s // 86400, s // 3600 % 24, s // 60 % 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{s % 60:02d}s"
    return f"{s}s"


class Progress:
    """Counts work done: a tqdm bar on a terminal, else a log line every ``interval`` seconds
    and one at the end (a short job: that line alone).

    Args:
        total: Units of work in all.
        desc: What is being done (``prepare data``).
        unit: Name of one unit (``img``).
        interval: Seconds between two log lines without a terminal.
        enabled: False shows nothing.
    """

    def __init__(
        self, total: int, desc: str, unit: str, interval: float = 10.0, enabled: bool = True
    ) -> None:
        self.total, self.desc, self.unit, self.interval = total, desc, unit, interval
        self.done = 0
        self._start = self._last = time.perf_counter()
        self._bar = None
        if enabled and is_terminal():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit)
        self.enabled = enabled

    def update(self, n: int, **postfix: object) -> None:
        """Record ``n`` more units (and show ``postfix`` values on the bar)."""
        self.done += n
        now = time.perf_counter()
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(**postfix)
        elif self.enabled and (now - self._last >= self.interval or self.done >= self.total):
            self._last = now
            elapsed = now - self._start
            rate = self.done / elapsed if elapsed > 0 else 0.0
            eta = (self.total - self.done) / rate if rate > 0 else None
            extra = "".join(f", {key} {value}" for key, value in postfix.items())
            log.info(
                f"{self.desc}: {self.done}/{self.total} {self.unit} "
                f"({100 * self.done / max(self.total, 1):.0f}%), {rate:.0f} {self.unit}/s, "
                f"elapsed {format_duration(elapsed)}, ETA {format_duration(eta)}{extra}"
            )

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.close()
