"""What a person reads: a bar on a terminal, a few plain lines anywhere else.

When stdout is not a terminal (SLURM, nohup, CI, a pipe) nothing draws a carriage-return bar:
multi-day logs stay readable and small.
"""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

log = logging.getLogger(__name__)


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
    """Counts work done: a tqdm bar on a terminal, else one log line per ``every`` of it.

    Args:
        total: Units of work in all.
        desc: What is being done (``prepare data``).
        unit: Name of one unit (``img``).
        every: Fraction of ``total`` between two log lines without a terminal.
        enabled: False shows nothing.
    """

    def __init__(
        self, total: int, desc: str, unit: str, every: float = 0.1, enabled: bool = True
    ) -> None:
        self.total, self.desc, self.unit, self.every = total, desc, unit, every
        self.done = 0
        self._next = every * total
        self._start = time.perf_counter()
        self._bar = None
        if enabled and is_terminal():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit)
        self.enabled = enabled

    def update(self, n: int, **postfix: object) -> None:
        """Record ``n`` more units (and show ``postfix`` values on the bar)."""
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix(**postfix)
        elif self.enabled and (self.done >= self._next or self.done >= self.total):
            self._next += self.every * self.total
            elapsed = time.perf_counter() - self._start
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
