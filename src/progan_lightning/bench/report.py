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


def command_line() -> str:
    """The command that reproduces this run."""
    overrides = (
        list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else sys.argv[1:]
    )
    return " ".join(["python -m progan_lightning.bench", *overrides])
