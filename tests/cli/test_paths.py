"""Path settings: an empty variable is its default, ``~`` and ``$VARS`` are expanded in every
path setting, and a file where a folder must be is refused naming the setting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from helpers import FIXTURES
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.data.files import FolderSource
from progan_lightning.generate import load_any

PICKLE = FIXTURES / "official-progan" / "tiny32.pkl"


def command(
    name: str, tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``progan-<name> ARGS`` run in ``tmp_path`` with no PROGAN_ variable but ``env``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("PROGAN_")}
    script = Path(sys.executable).parent / f"progan-{name}"
    return subprocess.run(
        [str(script), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**clean, "WANDB_MODE": "disabled", **(env or {})},
        timeout=300,
    )


def resolved_paths(tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    out = command("prepare", tmp_path, "--cfg", "job", "--package", "paths", "--resolve", env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    return dict(line.split(": ", 1) for line in out.stdout.splitlines() if ": " in line)


def test_empty_variables_in_env_are_the_defaults(tmp_path: Path):
    (tmp_path / ".env").write_text("PROGAN_ROOT=\nPROGAN_LOG_DIR=\nPROGAN_CACHE_DIR=\n")
    paths = resolved_paths(tmp_path)
    assert paths["root_dir"] == str(tmp_path)
    assert paths["log_dir"] == str(tmp_path / "outputs")
    assert paths["cache_dir"] == str(tmp_path / ".cache")


def test_variables_exported_empty_by_the_shell_are_the_defaults(tmp_path: Path):
    paths = resolved_paths(tmp_path, {"PROGAN_ROOT": "", "PROGAN_LOG_DIR": " "})
    assert paths["log_dir"] == str(tmp_path / "outputs")


def test_tilde_and_variables_are_expanded_in_every_folder_variable(tmp_path: Path):
    (tmp_path / ".env").write_text("PROGAN_LOG_DIR=~/runs\nPROGAN_CACHE_DIR=$BASE/cache\n")
    paths = resolved_paths(tmp_path, {"HOME": str(tmp_path / "home"), "BASE": "/data"})
    assert paths["log_dir"] == str(tmp_path / "home" / "runs")
    assert paths["cache_dir"] == "/data/cache"


@pytest.mark.parametrize("variable", ["PROGAN_LOG_DIR", "PROGAN_ROOT", "PROGAN_CACHE_DIR"])
def test_a_file_where_a_folder_must_be_is_refused_naming_the_variable(
    tmp_path: Path, variable: str
):
    (tmp_path / "notes.txt").write_text("a file")
    out = command("generate", tmp_path, f"source={PICKLE}", env={variable: "notes.txt"})
    assert out.returncode == 2, out.stderr[-2000:]
    assert f"{variable}=notes.txt is a file, not a folder" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "outputs").exists()


def test_a_variable_that_is_not_set_is_refused_not_made_a_folder(tmp_path: Path):
    out = command("generate", tmp_path, f"source={PICKLE}", env={"PROGAN_LOG_DIR": "$NOPE/x"})
    assert out.returncode == 2 and "$NOPE, which is not set" in out.stderr
    assert list(tmp_path.iterdir()) == []


def test_tilde_and_variables_are_expanded_in_path_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("MODELS", str(PICKLE.parent))
    assert load_any(f"$MODELS/{PICKLE.name}").trained_stage == 3  # source=, init_from=
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.png").write_bytes(b"")  # listed, not read
    assert FolderSource("~/images").path == tmp_path / "images"  # data.path=
    assert FolderSource("${HOME}/images").path == tmp_path / "images"
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("generate", ["source=$MODELS/tiny32.pkl", "out_dir='~/gen'"])
    GlobalHydra.instance().clear()
    from progan_lightning.cli.generate import main as generate_main

    generate_main(cfg)
    assert (tmp_path / "gen" / "grid.png").is_file() and not Path("~").exists()


@pytest.mark.parametrize(
    ("name", "setting"),
    [("generate", "out_dir"), ("prepare", "data.cache_dir"), ("evaluate", "data.cache_dir")],
)
def test_a_file_as_a_folder_setting_is_refused_naming_it(tmp_path: Path, name: str, setting: str):
    (tmp_path / "notes.txt").write_text("a file")
    for value in ("notes.txt", "notes.txt/sub"):
        args = [f"source={PICKLE}"] if name == "generate" else ["data.source.num_images=16"]
        out = command(name, tmp_path, *args, f"{setting}={tmp_path / value}")
        assert out.returncode == 2, out.stderr[-2000:]
        assert f"{setting}={tmp_path / value}" in out.stderr and "is a file" in out.stderr
        assert "Traceback" not in out.stderr
    assert (tmp_path / "notes.txt").read_text() == "a file"


@pytest.mark.parametrize(
    ("name", "override"),
    [
        ("train", "hydra.run.dir={file}"),
        ("train", "paths.log_dir={file}"),
        ("generate", "hydra.run.dir={file}/run"),
    ],
)
def test_a_file_as_the_run_folder_is_refused_naming_the_setting(tmp_path: Path, name, override):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    args = [override.format(file=blocker)]
    if name == "generate":
        args.append(f"source={PICKLE}")
    out = command(name, tmp_path, *args)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "Traceback" not in out.stderr
    assert "hydra.run.dir=" in out.stderr and "is a file" in out.stderr
    assert blocker.read_text() == "not a folder\n"


def test_variables_are_expanded_in_ckpt_path(tmp_path: Path, monkeypatch):
    from omegaconf import OmegaConf

    from progan_lightning.train import resolve_ckpt_path

    monkeypatch.setenv("RUNS", str(tmp_path))
    cfg = OmegaConf.create({"ckpt_path": "$RUNS/checkpoints/last.ckpt"})
    assert resolve_ckpt_path(cfg) == str(tmp_path / "checkpoints" / "last.ckpt")
