"""Logs a person can read: one line per tick and a few preparation lines without a terminal."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from helpers import REPO, TINY, TINY_CLI, run_python
from progan_lightning.callbacks.progress import remaining_seconds
from progan_lightning.console import format_duration
from progan_lightning.schedule import GrowthSchedule


@pytest.mark.slow
def test_training_log_to_a_file_has_one_line_per_tick_with_an_eta(tmp_path: Path):
    log = tmp_path / "train.log"
    with log.open("w") as out:  # stdout is a file, as under SLURM or nohup
        result = subprocess.run(
            [
                sys.executable,
                str(REPO / "train.py"),
                *TINY,
                "logger=none",
                "metrics=none",
                f"hydra.run.dir={tmp_path / 'run'}",
                f"paths.cache_dir={tmp_path / 'cache'}",  # a fresh cache: preparation runs
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            timeout=300,
        )
    text = log.read_text()
    assert result.returncode == 0, text[-3000:]
    assert "\r" not in text
    ticks = [line for line in text.splitlines() if re.search(r"\btick \d+  kimg ", line)]
    assert len(ticks) == 10  # 320 images in ticks of 32
    last = ticks[-1]
    for part in (
        "kimg 0.3",
        "res 16",
        "stable16 alpha 1.000",
        "  D ",
        "  G ",
        "img/s ",
        "sec/kimg ",
        "elapsed ",
        "ETA 0s",
        "peak ",
    ):
        assert part in last, (part, last)
    assert re.search(r"ETA (\d+[dhms])+", ticks[0]) and "ETA ?" not in ticks[0]
    assert any("prepare data: 256/256 img (100%)" in line for line in text.splitlines())


def test_remaining_seconds_per_stage_and_extrapolated():
    sched = GrowthSchedule(4, 16, stable_kimg=1, fade_kimg=1, batch_size=16)
    # Phases: stable4 0-1000, fade8 -2000, stable8 -3000, fade16 -4000, stable16 -5000.
    assert remaining_seconds(sched, 0, {}) is None
    # Only 4x4 measured (1 ms/img): 2x per doubling, 8x8 costs 2x and 16x16 4x per image.
    assert remaining_seconds(sched, 500, {4: 1e-3}) == 500 * 1e-3 + 2000 * 2e-3 + 2000 * 4e-3
    # 4x4 and 8x8 measured: their ratio (3x) per doubling.
    assert remaining_seconds(sched, 2500, {4: 1e-3, 8: 3e-3}) == pytest.approx(
        500 * 3e-3 + 2000 * 9e-3
    )
    # The ratio is clamped to 1-4x (an 8x8 tick slower than 4x4 by 10x is noise).
    assert remaining_seconds(sched, 2500, {4: 1e-3, 8: 1e-2}) == pytest.approx(
        500 * 1e-2 + 2000 * 4e-2
    )
    assert remaining_seconds(sched, 5000, {4: 1e-3}) == 0.0


def test_durations_read_like_a_clock():
    assert [format_duration(s) for s in (None, 42, 723, 3 * 3600 + 240, 2 * 86400 + 7200)] == [
        "?",
        "42s",
        "12m03s",
        "3h04m",
        "2d02h",
    ]


def test_eta_stops_at_the_time_budget_where_that_comes_first():
    from types import SimpleNamespace

    from lightning.pytorch.callbacks import Timer

    from progan_lightning.callbacks.progress import StageSpeed
    from progan_lightning.progress import TrainingProgress

    schedule = GrowthSchedule(
        start_resolution=4, final_resolution=16, stable_kimg=1, fade_kimg=1, batch_size=16
    )
    speed = StageSpeed()
    speed.sec_per_img = {4: 1e-3}  # 500 + 2000 * 2 + 2000 * 4 ms = 12.5 s left at 500 images
    trainer = SimpleNamespace(callbacks=[])
    at = TrainingProgress(cur_nimg=500, schedule=schedule)
    assert speed.eta(trainer, at) == pytest.approx(12.5)
    timer = Timer(duration="00:00:00:05")  # trainer.max_time: 5 s
    timer.on_train_start(trainer, None)
    trainer.callbacks.append(timer)
    assert 4.0 < speed.eta(trainer, at) <= 5.0
    assert (
        speed.eta(trainer, TrainingProgress(cur_nimg=5000, schedule=schedule)) == 0.0
    )  # the schedule's end comes first


def test_a_short_tick_at_a_phase_end_does_not_set_the_rate(monkeypatch):
    from progan_lightning.callbacks import progress

    # A 10 s tick of 1000 images, then the phase's last 100 images with 6 s of phase-end work.
    clock = iter([0.0, 0.0, 10.0, 10.0, 16.0])
    monkeypatch.setattr(progress.time, "perf_counter", lambda: next(clock))
    speed = progress.StageSpeed()
    speed.tick_start(0)
    speed.tick_end(1000, 8)
    assert speed.sec_per_img == {8: pytest.approx(0.01)}
    speed.tick_start(1000)
    speed.tick_end(1100, 8)
    assert speed.sec_per_img == {8: pytest.approx(16 / 1100)}  # not 0.06
    assert speed.last == (pytest.approx(6.0), 100)  # the tick line still shows its own tick


def test_the_run_log_holds_the_console_and_the_console_holds_no_noise(tmp_path: Path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    gen = np.random.default_rng(0)
    for i in range(64):
        Image.fromarray(gen.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(images / f"{i}.png")
    (images / "broken.png").write_bytes(b"not an image")
    run = tmp_path / "run"
    result = run_python(
        [
            str(REPO / "train.py"),
            *[o for o in TINY_CLI if not o.startswith(("data.resolution", "data.source"))],
            "data=folder",
            f"data.path={images}",
            "data.resolution=8",
            "data.prepare_workers=0",
            f"hydra.run.dir={run}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
        cwd=tmp_path,
    )
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-3000:]
    log = (run / "train.log").read_text()
    ticks = [line for line in log.splitlines() if re.search(r"\btick \d+  kimg ", line)]
    assert len(ticks) == 6, log  # 192 images (stable4, fade8, stable8) in ticks of 32
    bad = [line for line in log.splitlines() if "could not be read" in line]
    assert len(bad) == 1 and "broken.png" in bad[0] and "[WARNING]" in bad[0], log
    assert "first estimate:" in log and "training on cpu" in log and "schedule: 0.192 kimg" in log
    # The console: the same lines, plain, and none of the libraries' noise.
    assert sum(bool(re.search(r"^tick \d+  kimg ", line)) for line in console.splitlines()) == 6
    assert re.search(r"^WARNING: 1 image files could not be read", console, re.M), console
    for noise in (
        "GPU available",
        "TPU available",
        "Tip:",
        "litlogger",
        "FLOPs",
        "is deprecated",
        "UserWarning",
        ".py:",  # a warning's source path
        "INFO",
    ):
        assert noise not in console, (noise, console)
    assert len([line for line in console.splitlines() if "prepare data:" in line]) == 1


class Module(SimpleNamespace):
    """What the progress callbacks read of the LightningModule."""

    @property
    def cur_nimg(self) -> int:
        return self.progress.cur_nimg


def test_a_cpu_run_of_a_gpu_schedule_says_so_with_a_first_estimate(monkeypatch, caplog):
    from progan_lightning.callbacks import progress
    from progan_lightning.progress import TrainingProgress

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    # The official schedule to 128x128 (600 + 600 kimg per resolution, 12000 kimg in all).
    schedule = GrowthSchedule(
        start_resolution=4,
        final_resolution=128,
        stable_kimg=600,
        fade_kimg=600,
        batch_size=16,
        total_kimg=12000,
    )
    at = TrainingProgress(cur_nimg=0, schedule=schedule)
    module = Module(
        device=torch.device("cpu"), progress=at, resolution=4, phase_name="stable4", alpha=1.0
    )
    trainer = SimpleNamespace(callbacks=[], is_global_zero=True, current_epoch=0)
    bar = progress.TickLog(tick_seconds=60, first_estimate_seconds=10, cpu_warning_hours=12)
    bar.forecast.started = 0.0
    bar.on_train_epoch_start(trainer, module)
    with caplog.at_level(logging.INFO):
        for second in range(1, 200):  # 100 img/s at 4x4 on the CPU
            now[0] = float(second)
            at.cur_nimg = 100 * second
            bar.on_train_batch_end(trainer, module, None, None, second)
    lines = [r.getMessage() for r in caplog.records]
    first = [line for line in lines if line.startswith("first estimate:")]
    assert len(first) == 1 and "100.0 img/s at 4x4" in first[0] and "to 12000 kimg" in first[0]
    warning = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warning) == 1 and "sized for GPUs" in warning[0].getMessage()
    assert "growth.total_kimg=N" in warning[0].getMessage()
    eta = re.search(r"first estimate is (\S+) to 12000 kimg", warning[0].getMessage())
    assert eta and eta.group(1).endswith("h") and "d" in eta.group(1)  # days
    # Between ticks a line at least every tick_seconds: at 60, 120 and 180 s.
    between = [line for line in lines if "(tick 0 under way)" in line]
    assert len(between) == 3 and between[0].startswith("kimg 6.0  res 4  stable4")


def test_a_gpu_or_a_short_run_gets_no_cpu_warning(monkeypatch, caplog):
    from progan_lightning.callbacks import progress
    from progan_lightning.progress import TrainingProgress
    from progan_lightning.schedule import GrowthSchedule

    now = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: now[0])
    at = TrainingProgress(cur_nimg=0, schedule=GrowthSchedule(4, 32, 30, 30, 16))
    module = Module(device=torch.device("cpu"), progress=at, resolution=4)
    trainer = SimpleNamespace(callbacks=[], is_global_zero=True)
    forecast = progress.Forecast(progress.StageSpeed(), first_estimate_seconds=10)
    forecast.started = 0.0
    forecast.speed.tick_start(0)
    now[0], at.cur_nimg = 10.0, 1000
    with caplog.at_level(logging.INFO):
        forecast.check(trainer, module)
    assert any(r.getMessage().startswith("first estimate:") for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
