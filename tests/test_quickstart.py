"""The quickstart (`python train.py`): what it composes to, and that it trains across every
stage change it has. Its quality and wall time are measured, not tested
(docs/quickstart_study.md)."""

from __future__ import annotations

import math
from pathlib import Path

import hydra
import torch
from PIL import Image

from progan_lightning.train import train

PHASES = ["stable4", "fade8", "stable8", "fade16", "stable16", "fade32", "stable32"]


def test_the_quickstart_composes_to_its_schedule(make_cfg):
    cfg = make_cfg(tiny=False)  # exactly what `python train.py` composes
    assert cfg.data.resolution == 32 and cfg.data.source._target_.endswith("ShapesSource")
    growth = hydra.utils.instantiate(cfg.growth)
    schedule = growth.schedule
    assert [p.name for p in schedule.phases] == PHASES
    # Most of the images go to the final resolution, where the shapes get their edges.
    stable32 = schedule.phases[-1]
    assert stable32.images(schedule.total_nimg, since=0) > 0.5 * schedule.total_nimg
    # Short enough for a CPU: the whole run is about 100k images of at most 32x32.
    assert 50_000 <= schedule.total_nimg <= 150_000
    # bf16 where the CPU has bf16 units, else fp32; the conditional run as it was measured.
    assert cfg.model.precision == "auto" and cfg.model.G.pixel_norm_eps == 1e-8
    assert make_cfg("experiment=quickstart_cond", tiny=False).model.precision == "fp32"
    assert make_cfg().model.precision == "fp32"  # the tests' tiny runs, on every CPU


def test_the_quickstart_trains_32x32_faster_and_its_conditional_run_keeps_one_rate(make_cfg):
    def rates(cfg) -> dict[str, float]:
        phases = hydra.utils.instantiate(cfg.growth).schedule.phases
        return {p.name: p.lr or cfg.model.optimizer.lr for p in phases}

    quickstart = make_cfg(tiny=False)
    lr = rates(quickstart)
    below, final = {lr[p] for p in PHASES[:5]}, {lr["fade32"], lr["stable32"]}
    assert below == {quickstart.model.optimizer.lr} and min(final) > max(below)
    # The conditional quickstart was measured (docs/conditional.md) with one rate throughout.
    cond = make_cfg("experiment=quickstart_cond", tiny=False)
    assert set(rates(cond).values()) == {cond.model.optimizer.lr}
    assert cond.model.d_lr_ratio == 1


def test_the_quickstart_trains_across_its_stage_changes_with_tiny_overrides(
    make_cfg, tmp_path: Path
):
    cfg = make_cfg(
        # The quickstart as composed, with its phases 1000x shorter and narrower networks:
        # its batch sizes, learning rate, EMA, z size and 32x32 final resolution stay.
        "data.source.num_images=256",
        "model.G.fmap_base=32",
        "model.G.fmap_max=8",
        "growth.stable_kimg=0.064",
        "growth.fade_kimg=0.064",
        "growth.tick_kimg=0.064",
        "metrics.num_images=64",
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
    assert (tmp_path / "generator.safetensors").is_file()
    # The grid the README shows beside the reals: both hold num_images images.
    samples = tmp_path / "samples"
    fakes = sorted(samples.glob("fakes_*_res32.png"))[-1]
    assert Image.open(samples / "reals_res32.png").size == Image.open(fakes).size == (64, 64)
    assert math.isfinite(metrics["metrics/swd_avg"])  # taken at the end, on G_ema
