"""Every command reads ``.env`` (``progan_lightning.cli.env``), not only ``python train.py``."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from helpers import REPO
from progan_lightning.cli.env import load_env


def test_load_env_reads_the_nearest_env_and_keeps_the_shells_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / ".env").write_text("PROGAN_TEST_A=from-file\nPROGAN_TEST_B=from-file\n")
    below = tmp_path / "runs" / "today"
    below.mkdir(parents=True)
    monkeypatch.chdir(below)
    monkeypatch.delenv("PROGAN_TEST_A", raising=False)
    monkeypatch.setenv("PROGAN_TEST_B", "from-shell")
    assert load_env() == tmp_path / ".env"
    assert os.environ["PROGAN_TEST_A"] == "from-file"
    assert os.environ["PROGAN_TEST_B"] == "from-shell"
    monkeypatch.delenv("PROGAN_TEST_A")


def test_no_env_file_loads_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    assert load_env() is None


def test_every_command_enters_through_the_package_that_loads_env():
    """Importing ``progan_lightning.cli`` loads ``.env``: every console command and
    ``train.py`` import their main from it."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert set(scripts) >= {
        "progan-train",
        "progan-prepare",
        "progan-evaluate",
        "progan-generate",
        "progan-export",
        "progan-import",
        "progan-bench",
    }
    assert all(target.startswith("progan_lightning.cli.") for target in scripts.values())
    assert "from progan_lightning.cli." in (REPO / "train.py").read_text()
    init = (REPO / "src" / "progan_lightning" / "cli" / "__init__.py").read_text()
    assert "\nload_env()\n" in init


@pytest.mark.parametrize("command", ["progan-prepare", "progan-evaluate"])
def test_a_console_command_takes_its_paths_from_env(tmp_path: Path, command: str):
    cache = tmp_path / "my-cache"
    (tmp_path / ".env").write_text(f"PROGAN_CACHE_DIR={cache}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROGAN_")}
    script = Path(sys.executable).parent / command
    out = subprocess.run(
        [str(script), "--cfg", "job", "--package", "paths", "--resolve"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
        check=True,
    ).stdout
    assert f"cache_dir: {cache}" in out
