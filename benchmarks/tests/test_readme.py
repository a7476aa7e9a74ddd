"""benchmarks/README.md lists every study and runs each with a module that exists."""

from __future__ import annotations

import re
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]


def test_every_study_is_listed_and_every_command_names_a_study():
    text = (HERE / "README.md").read_text()
    studies = {p.stem for p in HERE.glob("*.py")} - {"__init__"}
    assert {s for s in studies if f"`{s}.py`" in text} == studies
    commands = set(re.findall(r"python -m benchmarks\.(\w+)", text))
    assert commands and commands <= studies
    requirements = (HERE / "requirements.txt").read_text()
    assert "scikit-image" in requirements and "pro-gan-pth==3.4" in requirements
