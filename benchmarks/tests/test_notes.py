"""The project's notes writer: relative notes files are taken from the checkout."""

from __future__ import annotations

from pathlib import Path

from benchmarks.notes import DOCS, notes_path, project_root


def test_relative_notes_go_to_the_checkout(tmp_path: Path, monkeypatch) -> None:
    assert (project_root() / "pyproject.toml").is_file()  # benchmarks/ lives in a checkout
    monkeypatch.chdir(tmp_path)
    assert notes_path(DOCS) == project_root() / "docs" / "benchmarks.md"
    assert notes_path(str(tmp_path / "n.md")) == tmp_path / "n.md"
