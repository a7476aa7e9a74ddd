"""The markdown a benchmark run writes where the user asks (``bench.notes``): marked sections,
each replaced in place, and the command that reproduces them."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig


def update_notes(path: Path, kind: str, section: str) -> None:
    """Replace the ``<!-- bench:KIND -->`` section of ``path`` (appended when missing)."""
    start, end = f"<!-- bench:{kind} -->", f"<!-- /bench:{kind} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


OUTPUTS = ("bench.out=", "bench.notes=")
"""Overrides that say where the results go, not what was measured: left out of the command."""


def command_line() -> str:
    """The command that reproduces this run's figures (without its output files)."""
    overrides = (
        list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else sys.argv[1:]
    )
    kept = [o for o in overrides if not o.startswith(OUTPUTS)]
    return " ".join(["python -m progan_lightning.bench", *kept])
