"""The quickstart (`python train.py`) and its conditional version: what they compose to, and
that they train across every stage change they have; the quickstart refuses resolutions its
settings do not suit, naming experiment=folder. Their quality and wall time are measured, not
tested (``python -m benchmarks.legibility``)."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import hydra
import pytest
import torch
from omegaconf import open_dict
from PIL import Image

from helpers import REPO, lay_out
from progan_lightning.data.datamodule import build_datamodule
from progan_lightning.export import load_generator
from progan_lightning.train import train

DIGITS = [str(digit) for digit in range(10)]
PHASES = ["stable4", "fade8", "stable8", "fade16", "stable16", "fade32", "stable32"]


def test_the_quickstart_composes_to_its_schedule(make_cfg):
    cfg = make_cfg(tiny=False)  # exactly what `python train.py` composes
    assert cfg.data.resolution == 32 and cfg.data.source._target_.endswith("DigitsSource")
    assert cfg.data.channels == 1 and cfg.data.labels == "none"
    schedule = lay_out(hydra.utils.instantiate(cfg.growth)).schedule
    assert [p.name for p in schedule.phases] == PHASES
    # About half the images go to the final resolution, where the details are drawn.
    at32 = sum(p.images(schedule.total_nimg, since=0) for p in schedule.phases[-2:])
    assert at32 > 0.45 * schedule.total_nimg
    # Short enough for ten minutes on a 2-core AVX2 CPU: 60k images of at most 32x32.
    assert schedule.total_nimg == 60_000
    # fp32 on every CPU (bf16 scored no better); the conditional run too.
    assert cfg.model.precision == "fp32" and cfg.model.G.pixel_norm_eps == 1e-8
    assert make_cfg("experiment=quickstart_cond", tiny=False).model.precision == "fp32"
    assert make_cfg().model.precision == "fp32"  # the tests' tiny runs, on every CPU


def test_the_quickstart_trains_32x32_faster_and_its_conditional_run_the_same(make_cfg):
    def rates(cfg) -> dict[str, float]:
        phases = lay_out(hydra.utils.instantiate(cfg.growth)).schedule.phases
        return {p.name: p.lr or cfg.model.optimizer.lr for p in phases}

    quickstart = make_cfg(tiny=False)
    lr = rates(quickstart)
    below, final = {lr[p] for p in PHASES[:5]}, {lr["fade32"], lr["stable32"]}
    assert below == {quickstart.model.optimizer.lr} and min(final) > max(below)
    assert quickstart.model.d_lr_ratio == 3
    # The conditional quickstart: the same rates, schedule and widths, with labels, and a
    # projection D (the official AC-GAN head conditions little in the budget).
    cond = make_cfg("experiment=quickstart_cond", tiny=False)
    assert rates(cond) == lr and cond.model.d_lr_ratio == 3
    assert cond.model.D.conditioning == "projection"
    assert quickstart.model.D.conditioning == "acgan"
    with open_dict(cond):
        cond.model.D.conditioning = "acgan"
    assert cond.growth == quickstart.growth and cond.model == quickstart.model
    assert cond.data.labels == "digit" and quickstart.data.labels == "none"


@pytest.mark.parametrize("experiment", ["quickstart", "quickstart_cond"])
def test_the_quickstart_trains_across_its_stage_changes_with_tiny_overrides(
    make_cfg, tmp_path: Path, experiment: str
):
    cfg = make_cfg(
        f"experiment={experiment}",
        # The quickstart as composed, with its phases 1000x shorter and narrower networks:
        # its batch sizes, learning rate, EMA, z size and 32x32 final resolution stay.
        "data.source.num_images=256",
        "model.G.fmap_base=32",
        "model.G.fmap_max=8",
        "growth.stable_kimg=0.064",
        "growth.fade_kimg=0.064",
        "growth.tick_kimg=0.064",
        "metrics.num_images=64" if experiment == "quickstart" else "metrics=none",
        "callbacks.samples.num_images=64",  # more than a batch (32)
        "callbacks.samples.tile=8",
        "trainer.accelerator=cpu",
        tiny=False,
    )
    metrics, objects = train(cfg)
    model, growth = objects["model"], objects["callbacks"][0]
    assert [p.name for p in growth.schedule.phases] == PHASES
    assert model.cur_nimg == growth.schedule.total_nimg
    assert model.resolution == 32 and model.alpha == 1.0
    assert metrics["progress/resolution"] == 32
    assert all(torch.isfinite(p).all() for p in model.G_ema.parameters())
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    # Grayscale digits end to end: the data, both networks and the export.
    assert model.G.img_channels == model.D.img_channels == 1
    G = load_generator(tmp_path / "generator.safetensors")
    assert G.img_channels == 1
    assert G.class_names == ([] if experiment == "quickstart" else DIGITS)
    assert model.class_names == G.class_names
    if experiment == "quickstart_cond":  # D scores each image with its label
        assert model.D.conditioning == "projection" and model.D.num_classes == 10
        assert "loss/class_real" not in metrics
    # The grid the README shows beside the reals: both hold num_images images.
    samples = tmp_path / "samples"
    fakes = sorted(samples.glob("fakes_*_res32.png"))[-1]
    reals = Image.open(samples / "reals_res32.png")
    assert reals.mode == "L" and Image.open(fakes).size == reals.size
    if experiment == "quickstart":  # the conditional grids name their rows (a margin)
        assert reals.size == (64, 64)
        assert math.isfinite(metrics["metrics/swd_avg"])  # taken at the end, on G_ema


def test_the_conditional_quickstart_is_the_ten_digits(make_cfg):
    cfg = make_cfg("experiment=quickstart_cond", tiny=False)
    assert cfg.data.labels == "digit" and cfg.data.source._target_.endswith("DigitsSource")
    assert cfg.max_resolution == 32
    with open_dict(cfg):
        cfg.data.source.num_images = 100
    assert build_datamodule(cfg.data).class_names == DIGITS


@pytest.mark.parametrize("experiment", ["quickstart", "quickstart_cond"])
def test_the_quickstart_refuses_a_resolution_above_32_naming_experiment_folder(
    make_cfg, tmp_path: Path, image_folder: Path, experiment: str
):
    """``python train.py data=folder data.path=DIR data.resolution=128`` keeps the quickstart
    (the default experiment): refused before anything is prepared or written."""
    cfg = make_cfg(
        f"experiment={experiment}",
        "data=folder",
        f"data.path={image_folder}",
        "data.resolution=128",
        tiny=False,
    )
    message = (
        r"data.resolution=128 is above max_resolution=32, .* 4 channels wide at 128x128 .* "
        r"python train.py experiment=folder data.path=DIR data.resolution=128"
    )
    caches = set(Path(cfg.paths.cache_dir).iterdir())  # the session's: other tests' data
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert set(Path(cfg.paths.cache_dir).iterdir()) == caches
    assert not (tmp_path / "checkpoints").exists()
    # At 32x32 and below the quickstart's settings are what it was made for.
    assert make_cfg("data=folder", f"data.path={image_folder}", tiny=False).max_resolution == 32


def test_experiment_folder_has_the_official_widths_and_schedule(make_cfg, image_folder: Path):
    cfg = make_cfg("experiment=folder", f"data.path={image_folder}", tiny=False)
    assert cfg.max_resolution is None and cfg.data.resolution == 128
    assert cfg.data.source._target_.endswith("FolderSource") and cfg.data.channels == 3
    G = hydra.utils.instantiate(cfg.model.G)
    assert G.channels[:6] == [512, 512, 512, 512, 256, 128]  # 4x4 ... 128x128 (paper)
    schedule = lay_out(hydra.utils.instantiate(cfg.growth)).schedule  # one device: preset-v2-1gpu
    sizes = {p.resolution: p.batch_size for p in schedule.phases}
    assert sizes == {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16}
    assert schedule.phases[-1].resolution == 128
    assert schedule.phases[1].end_nimg - schedule.phases[1].start_nimg == 600_000
    assert schedule.total_nimg == 12_000_000


def test_the_newcomers_command_prints_the_one_message(tmp_path: Path, image_folder: Path):
    """``python train.py data=folder data.path=DIR data.resolution=128``: one message naming
    experiment=folder, exit status 2, no traceback, no cache."""
    command = ["data=folder", f"data.path={image_folder}", "data.resolution=128"]
    where = [f"hydra.run.dir={tmp_path / 'run'}", f"paths.cache_dir={tmp_path / 'cache'}"]
    run = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *command, *where, "logger=none"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert "Error: data.resolution=128 is above max_resolution=32" in run.stderr
    assert "experiment=folder" in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "cache").exists()
