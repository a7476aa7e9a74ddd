"""A run's folder is its record: a run resumes from its folder alone, a refused or racing
command leaves the record as it was, and the CSV keeps every row across a resume."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from helpers import REPO, TINY_CLI, run_command, run_python, run_train

# The tiny run on a folder of PNGs with every logger (W&B disabled): every override the resume
# must read back from the folder (the schedule's length comes last, so a resume can extend it).
FOLDER_CLI = [
    *(o for o in TINY_CLI if not o.startswith(("data.", "logger="))),
    "data=folder",
    "data.resolution=16",
    "logger=many",
]


def png_folder(folder: Path, n: int = 16) -> Path:
    folder.mkdir()
    for i in range(n):
        Image.new("RGB", (20, 20), (15 * i, 255 - 15 * i, 90)).save(folder / f"{i}.png")
    return folder


def record_hashes(run: Path) -> dict[str, str]:
    """SHA-256 of every file of the run but its log (which every command appends to)."""
    return {
        str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(run.rglob("*"))
        if p.is_file() and p.suffix != ".log"
    }


def kimg_rows(run: Path) -> list[float]:
    with open(run / "csv" / "metrics.csv", newline="") as file:
        return [float(r["progress/kimg"]) for r in csv.DictReader(file) if r["progress/kimg"]]


@pytest.mark.slow
def test_a_run_resumes_and_extends_from_its_folder_alone(tmp_path: Path):
    images, run = png_folder(tmp_path / "images"), tmp_path / "run"
    first = run_train(
        [*FOLDER_CLI, f"data.path={images}", "growth.total_kimg=0.064", f"hydra.run.dir={run}"],
        tmp_path,
    )
    said = first.stdout + first.stderr
    assert f"Run folder: {run}" in said
    assert f"{run / 'generator.safetensors'}" in said
    overrides = yaml.safe_load((run / ".hydra" / "overrides.yaml").read_text())
    assert f"data.path={images}" in overrides and "data=folder" in overrides
    assert not (run / ".hydra" / "hydra.yaml").exists()  # the project's record, not Hydra's
    before = record_hashes(run)
    assert ".hydra/config.yaml" in before and ".hydra/run.yaml" in before
    assert max(kimg_rows(run)) == pytest.approx(0.064)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 1

    # A resume whose networks differ is refused naming the setting; nothing is written.
    refused = run_python(
        [str(REPO / "train.py"), "ckpt_path=last", f"hydra.run.dir={run}", "model.G.fmap_max=8"],
        cwd=tmp_path,
    )
    assert refused.returncode == 2, refused.stderr[-2000:]
    assert "model.G.fmap_max: checkpoint 16, config 8" in refused.stderr
    assert record_hashes(run) == before

    # progan-generate into the run's folder is refused: it never writes into a training run.
    generate = run_python(
        [
            "-m",
            "progan_lightning.cli.generate",
            f"source={run / 'generator.safetensors'}",
            f"hydra.run.dir={run}",
        ],
        cwd=tmp_path,
    )
    assert generate.returncode == 2, generate.stderr[-2000:]
    assert f"hydra.run.dir={run} holds a training run" in generate.stderr
    assert record_hashes(run) == before

    # progan-evaluate of the run by its folder alone: its newest checkpoint, scored on the
    # folder of images it was trained on (the default data, grayscale digits, would be
    # refused: the generator draws RGB).
    scored = run_command(
        "evaluate",
        f"source={run}",
        "metrics=swd",
        "num_images=16",
        f"hydra.run.dir={tmp_path / 'scores'}",
        f"paths.cache_dir={tmp_path}/cache",
        cwd=tmp_path,
    )
    assert scored.returncode == 0, scored.stderr[-2000:]
    result = json.loads((tmp_path / "scores" / "evaluate.json").read_text())
    assert result["resolution"] == 4 and result["metrics/swd_avg"] > 0  # its trained stage
    assert record_hashes(run) == before

    # The resume with only the folder and a longer schedule.
    resumed = run_train(
        ["ckpt_path=last", f"hydra.run.dir={run}", "growth.total_kimg=0.128"], tmp_path
    )
    assert "Previous log files" not in resumed.stdout + resumed.stderr
    after = record_hashes(run)
    for name in (".hydra/config.yaml", ".hydra/overrides.yaml", ".hydra/run.yaml", "wandb/run-id"):
        assert after[name] == before[name], name  # the record, and the W&B run resumed
    (entry,) = yaml.safe_load((run / ".hydra" / "resumes.yaml").read_text())
    assert entry["overrides"] == ["ckpt_path=last", "growth.total_kimg=0.128"]
    assert {"started", "versions"} <= set(entry)
    kimg = kimg_rows(run)
    assert min(kimg) < 0.032 and max(kimg) == pytest.approx(0.128)  # every row from the start
    # TensorBoard: the resume's events beside the first run's, in the same folder.
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2


@pytest.mark.slow
def test_a_second_run_racing_for_a_folder_is_refused_and_leaves_the_record(tmp_path: Path):
    """A second fresh run into a folder that the first was handed a moment ago (its log is
    open, its library still loading): the second is refused, and the record is the first's."""
    images, run = png_folder(tmp_path / "images"), tmp_path / "run"
    args = [*FOLDER_CLI, f"data.path={images}", "growth.total_kimg=0.032", f"hydra.run.dir={run}"]
    cmd = [sys.executable, str(REPO / "train.py"), *args, f"paths.cache_dir={tmp_path}/cache"]
    first = subprocess.Popen(
        [*cmd, "seed=3"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 60
    while not (run / "train.log").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    second = subprocess.run([*cmd, "seed=7"], capture_output=True, text=True, timeout=300)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-2000:]
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"the run dir {run} is in use by pid {first.pid}" in second.stderr
    assert "seed=3" in (run / ".hydra" / "overrides.yaml").read_text()
    assert yaml.safe_load((run / ".hydra" / "config.yaml").read_text())["seed"] == 3
    assert not (run / ".run.owner").exists()  # released at exit


@pytest.mark.slow
def test_a_run_resumes_from_another_folder_with_its_relative_data_path(tmp_path: Path):
    """``data.path=images`` typed in the folder the run was started in: its resume by folder
    from another folder reads the same images (the record keeps where the run started)."""
    png_folder(tmp_path / "images")
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    run_train(
        [*FOLDER_CLI, "data.path=images", "growth.total_kimg=0.032", f"hydra.run.dir={run}"],
        tmp_path,
    )
    elsewhere.mkdir()
    resumed = run_python(
        [str(REPO / "train.py"), f"resume={run}", "growth.total_kimg=0.064"], cwd=elsewhere
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert max(kimg_rows(run)) == pytest.approx(0.064)
    assert "data.path=images" in (run / ".hydra" / "overrides.yaml").read_text()  # as typed
