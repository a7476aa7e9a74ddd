"""Where the notes go and what they say was run: the marked sections of ``docs/benchmarks.md``."""

from __future__ import annotations

import sys
from pathlib import Path

from hydra.core.hydra_config import HydraConfig


def project_root() -> Path:
    """The checkout this package runs from, else (an installed wheel) the working directory."""
    checkout = Path(__file__).resolve().parents[3]
    return checkout if (checkout / "pyproject.toml").is_file() else Path.cwd()


def notes_path(setting: str) -> Path:
    """``bench.notes`` as a path; a relative one is taken from :func:`project_root`."""
    path = Path(setting).expanduser()
    return path if path.is_absolute() else project_root() / path


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
