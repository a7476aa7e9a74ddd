"""Installed like a library, run like a tool: the wheel carries the configs and commands."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from setuptools import find_packages

from helpers import REPO, TINY_CLI

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


PRODUCT_BENCH = {
    "data",
    "flops",
    "memory",
    "plan",
    "projection",
    "report",
    "run",
    "stages",
    "step",
    "timing",
}
"""The modules of ``progan-bench``: the measurements a user runs, and nothing of the studies."""


def test_the_studies_live_outside_the_package():
    studies = {p.stem for p in (REPO / "benchmarks").glob("*.py")} - {"__init__"}
    assert {"peer", "legibility", "photos", "eqlr", "notes"} <= studies
    bench = {p.stem for p in (REPO / "src" / "progan_lightning" / "bench").glob("*.py")}
    assert bench == {"__init__", "__main__", *PRODUCT_BENCH}
    assert "benchmarks" not in find_packages(REPO / "src")


def test_the_licence_and_python_versions_match_the_package_metadata():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    # An SPDX expression (setuptools >= 77; its licence table is deprecated).
    assert project["project"]["license"] == "MIT"
    assert project["project"]["license-files"] == ["LICENSE"]
    licence = (REPO / "LICENSE").read_text()
    assert licence.startswith("MIT License\n") and "progan-lightning contributors" in licence
    # The tests (tomllib, for one) need 3.11; ruff checks the code for the same floor.
    assert project["project"]["requires-python"] == ">=3.11"
    assert project["tool"]["ruff"]["target-version"] == "py311"
    assert sys.version_info >= (3, 11)


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
        timeout=600,
        check=True,
    ).stdout
    assert "task_name: mine" in out and "fmap_max: 8" in out
    assert "fmap_base: 256" in out  # the quickstart it builds on


def see_the_dependencies_of_this_interpreter(venv: Path) -> None:
    """Make ``venv`` import the packages of the interpreter running the tests, after its own.

    ``venv --system-site-packages`` would show the base interpreter's packages, which are not
    these when the tests run in a virtual environment themselves (the usual install). A
    ``.pth`` file lists this interpreter's site-packages folders as plain paths: their own
    ``.pth`` files (this checkout's editable install among them) are not run, so the package
    under test is the wheel's.
    """
    folders = [*site.getsitepackages()]
    if site.ENABLE_USER_SITE:
        folders.append(site.getusersitepackages())
    purelib = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_path('purelib'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    existing = [folder for folder in folders if Path(folder).is_dir()]
    (Path(purelib) / "outer-site-packages.pth").write_text("\n".join(existing) + "\n")


@pytest.mark.slow
def test_a_plain_wheel_install_runs_every_command_from_anywhere(tmp_path: Path):
    dist = tmp_path / "dist"
    # Built from a copy of what the build reads: a checkout's build/ left by an earlier build
    # (setuptools reuses it) cannot put removed modules back into the wheel.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, source / name)
    for folder in ("src", "conf"):
        shutil.copytree(
            REPO / folder,
            source / folder,
            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
        )
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
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
    # The product only: the studies of benchmarks/ stay in the checkout.
    names = zipfile.ZipFile(wheel).namelist()
    assert not [name for name in names if name.startswith("benchmarks/")]
    bench = {Path(n).stem for n in names if n.startswith("progan_lightning/bench/")}
    assert bench == {"__init__", "__main__", *PRODUCT_BENCH}
    # A fresh environment that reuses the installed dependencies, without the checkout.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    see_the_dependencies_of_this_interpreter(venv)
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
