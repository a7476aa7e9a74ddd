"""``--help`` of every command: what it does, its usage, the common settings and examples, in
one screenful (not the composed config), and nothing of training where it does not apply."""

from __future__ import annotations

import pytest

from helpers import run_command

COMMANDS = {
    "train": "progan-train",
    "prepare": "progan-prepare",
    "generate": "progan-generate",
    "evaluate": "progan-evaluate",
    "bench": "progan-bench",
    "export": "progan-export",
    "import_official": "progan-import",
}


@pytest.mark.parametrize("module", list(COMMANDS))
def test_help_says_what_the_command_does_with_examples(module):
    run = run_command(module, "--help")
    assert run.returncode == 0, run.stderr[-2000:]
    text = run.stdout
    name = COMMANDS[module]
    lines = text.splitlines()
    assert len(lines) <= 60, text  # a screenful, not the 215-line config dump
    assert name in text.split("\n\n")[0] or name in text.split("\n\n")[1]  # its first paragraph
    assert f"{name}:" in text  # "progan-x: what it does"
    assert "usage: " + name in text.lower()
    examples = text.split("Examples:\n", 1)[1].splitlines()
    assert sum(line.startswith(f"  {name} ") or line == f"  {name}" for line in examples) >= 2
    assert "fmap_base" not in text and "_target_" not in text  # no config dump
    assert "Powered by Hydra" not in text


def test_generate_help_lists_no_training_groups():
    text = run_command("generate", "--help").stdout
    for group in ("growth", "hparams_search", "trainer", "logger", "callbacks", "experiment"):
        assert group not in text, group
    assert "source=PATH" in text
