"""A mistake on a command line: one message on stderr and exit status 2 from every command;
the traceback only with HYDRA_FULL_ERROR=1; a bug keeps its traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import run_command
from progan_lightning.cli.errors import user_errors
from progan_lightning.faults import USER_ERROR_EXIT_CODE


def command(module: str, *args: str, env: dict[str, str] | None = None):
    """Run a console command as its entry point does (``progan-<name> args``)."""
    return run_command(module, *args, env=env)


def test_a_bad_value_prints_one_message_and_exits_2(tmp_path: Path):
    run = command("train", "data.resolution=48", "logger=none", f"hydra.run.dir={tmp_path}")
    assert run.returncode == USER_ERROR_EXIT_CODE == 2, run.stderr[-2000:]
    assert "Error: data.resolution=48 is not a power of two" in run.stderr
    assert "Traceback" not in run.stderr
    # The run's log file holds the error too.
    assert (
        "[ERROR] - data.resolution=48 is not a power of two"
        in (tmp_path / "train.log").read_text()
    )


@pytest.mark.slow
def test_a_missing_source_prints_one_message_or_the_traceback_when_asked(tmp_path: Path):
    run = command("generate", f"hydra.run.dir={tmp_path}")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Error: source is not set" in run.stderr and "source=..." in run.stderr
    assert "Traceback" not in run.stderr
    full = command("generate", f"hydra.run.dir={tmp_path}", env={"HYDRA_FULL_ERROR": "1"})
    assert (
        full.returncode != 0 and "Traceback" in full.stderr and "MissingMandatory" in full.stderr
    )


def test_a_bug_keeps_its_traceback(tmp_path: Path):
    code = (
        "import progan_lightning.cli.train as command\n"
        "import progan_lightning.train as training\n"
        "def broken(cfg):\n"
        "    return {}['a bug']\n"
        "training.train = broken\n"
        "command.main()\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, f"hydra.run.dir={tmp_path}"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "Traceback" in run.stderr and "KeyError" in run.stderr


def test_a_missing_data_path_names_the_key(make_cfg, capsys):
    from progan_lightning.cli.train import main

    with pytest.raises(SystemExit) as exited:
        main(make_cfg("data=folder", tiny=False))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "Error: data.path is not set" in err and "data.path=..." in err


def test_user_errors_wraps_only_user_errors(monkeypatch, capsys):
    @user_errors
    def refuse(kind: type[Exception]) -> None:
        raise kind("data.path=/nope not found; point data.path at a folder of images")

    with pytest.raises(SystemExit) as exited:
        refuse(FileNotFoundError)
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("Error: data.path=/nope not found") and err.count("\n") == 2
    with pytest.raises(KeyError):  # a bug
        refuse(KeyError)
    monkeypatch.setenv("HYDRA_FULL_ERROR", "1")
    with pytest.raises(FileNotFoundError):
        refuse(FileNotFoundError)


# Hydra's own refusals of a command line, before any command body runs (no torch import).
@pytest.mark.parametrize(
    ("name", "args", "expected"),
    [
        ("train", ["data.path=~/faces"], "'data.path=\"~/faces\"'"),
        ("train", ["data.path=~/faces"], "data.path=$HOME/faces"),
        ("prepare", ["data=folder", "data.path=/my", "faces"], "'data.path=\"/my faces\"'"),
        ("train", ["data.resolutoin=8"], "did you mean data.resolution"),
        ("generate", ["source=g.safetensors", "sed=3"], "did you mean seed"),
        ("evaluate", ["growth.stabel_kimg=3"], "did you mean growth.stable_kimg"),
        ("bench", ["experiment=nope"], "choose one of celebahq, celebahq_v1, cifar10"),
        ("train", ["data.path=/my/faces"], "a setting of data=folder, not of the data config"),
        ("train", ["xyz=1"], "xyz is not a setting of this command (`--cfg job`"),
        ("train", ["data=folder", "data.path=/a,b"], "quote the value as one string ('data.path="),
    ],
)
def test_a_command_line_typo_is_one_line_with_the_fix_and_exit_2(name, args, expected):
    run = command(name, *args)
    assert run.returncode == USER_ERROR_EXIT_CODE, run.stderr[-2000:]
    first, *rest = run.stderr.splitlines()
    assert first.startswith("Error: ") and expected in first, run.stderr
    assert rest == ["(exit status 2; set HYDRA_FULL_ERROR=1 for the traceback)"]
    for jargon in ("Lexer", "EQUAL", "not in struct", "Traceback", "search path"):
        assert jargon not in run.stderr


def test_a_command_line_typo_keeps_hydras_traceback_when_asked():
    run = command("train", "data.resolutoin=8", env={"HYDRA_FULL_ERROR": "1"})
    assert run.returncode == 1 and "Traceback" in run.stderr and "resolutoin" in run.stderr
