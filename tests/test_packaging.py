"""Installed like a library, run like a tool: the wheel carries the configs and commands."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from setuptools import find_packages
from tests.conftest import TINY

REPO = Path(__file__).resolve().parents[1]
TINY_CLI = [*TINY, "logger=none", "metrics=none"]
USER_EXPERIMENT = """# @package _global_
defaults:
  - quickstart
  - _self_

task_name: mine
model:
  G:
    fmap_max: 8
"""


def test_the_wheel_lists_every_package_of_the_tree():
    listed = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = set(listed["packages"]) - {"progan_lightning.conf"}
    assert packages == set(find_packages(REPO / "src"))
    assert listed["package-dir"]["progan_lightning.conf"] == "conf"


def user_config_dir(tmp_path: Path) -> Path:
    user = tmp_path / "my-conf"
    (user / "experiment").mkdir(parents=True)
    (user / "experiment" / "mine.yaml").write_text(USER_EXPERIMENT)
    return user


@pytest.mark.parametrize("how", ["--config-dir", "hydra.searchpath"])
def test_a_user_config_dir_adds_an_experiment(tmp_path: Path, how: str):
    user = user_config_dir(tmp_path)
    where = (
        ["--config-dir", str(user)]
        if how == "--config-dir"
        else [f"hydra.searchpath=[file://{user}]"]
    )
    out = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *where, "experiment=mine", "--cfg", "job"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=True,
    ).stdout
    assert "task_name: mine" in out and "fmap_max: 8" in out
    assert "fmap_base: 256" in out  # the quickstart it builds on


@pytest.mark.slow
def test_a_plain_wheel_install_runs_every_command_from_anywhere(tmp_path: Path):
    dist = tmp_path / "dist"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(REPO),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
        ],
        check=True,
        cwd=tmp_path,
        timeout=600,
    )
    wheel = next(dist.glob("progan_lightning-*.whl"))
    # A fresh environment that reuses the installed dependencies, without the checkout.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    bin_dir = venv / "bin"
    subprocess.run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--force-reinstall",
            str(wheel),
        ],
        check=True,
        timeout=600,
    )
    work = tmp_path / "empty"
    work.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "WANDB_MODE": "disabled",
    }
    env.pop("PYTHONPATH", None)

    def run(*args: str) -> str:
        result = subprocess.run(
            list(args), capture_output=True, text=True, cwd=work, env=env, timeout=600
        )
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        return result.stdout

    where = run(
        str(bin_dir / "python"), "-c", "import progan_lightning; print(progan_lightning.__file__)"
    )
    assert str(venv) in where and str(REPO) not in where
    assert "experiment" in run("progan-train", "--help")
    run("progan-train", *TINY_CLI, "hydra.run.dir=run", "paths.cache_dir=cache")
    export = work / "run" / "generator.safetensors"
    assert export.is_file()
    run("progan-generate", f"source={export}", "num_images=4", "hydra.run.dir=gen")
    assert len(list((work / "gen").glob("*.png"))) >= 4
    run(
        "progan-export",
        str(work / "run" / "checkpoints" / "last.ckpt"),
        str(work / "e.safetensors"),
    )
    user = user_config_dir(tmp_path)
    assert "task_name: mine" in run(
        "progan-train", "--config-dir", str(user), "experiment=mine", "--cfg", "job"
    )
    assert "data:" in run("progan-prepare", "--cfg", "job")
    assert "source: reals" in run("progan-evaluate", "--cfg", "job")
