"""End to end: a tiny run grows 4 -> 8 -> 16 and writes what a user expects."""

import csv
from pathlib import Path

import lightning as L
import pytest
import torch

from progan_lightning.train import train


def test_tiny_run_grows_across_two_transitions(make_cfg, tmp_path: Path):
    cfg = make_cfg()
    metrics, objects = train(cfg)
    model, growth = objects["model"], objects["callbacks"][0]

    # Progress counters: stable4, fade8, stable8, fade16, stable16 at 64 images each.
    assert growth.schedule.total_nimg == 320
    assert model.cur_nimg == 320
    assert model.stage == 2 and model.alpha == 1.0
    assert metrics["progress/kimg"] == pytest.approx(0.32)
    assert metrics["progress/resolution"] == 16
    assert torch.isfinite(torch.tensor([metrics["loss/D"], metrics["loss/G"]])).all()

    # Checkpoints: last plus periodic ones, holding the images-seen counter.
    ckpts = tmp_path / "checkpoints"
    assert (ckpts / "last.ckpt").is_file()
    assert len(list(ckpts.glob("kimg*.ckpt"))) >= 2
    state = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["progress"]["cur_nimg"] == 320
    assert any(k.startswith("G_ema.") for k in state["state_dict"])

    # Sample grids at every tick, named by kimg and resolution; reals per resolution.
    samples = sorted(p.name for p in (tmp_path / "samples").glob("fakes_*.png"))
    assert len(samples) == 10  # 320 images / 32 per tick
    assert {s.rsplit("_res", 1)[1] for s in samples} == {"4.png", "8.png", "16.png"}
    assert samples[-1] == "fakes_kimg00000.320_res16.png"
    assert {p.name for p in (tmp_path / "samples").glob("reals_*.png")} == {
        "reals_res4.png",
        "reals_res8.png",
        "reals_res16.png",
    }

    # CSV metrics with the progress columns.
    rows = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    kimg = [float(r["progress/kimg"]) for r in rows if r.get("progress/kimg")]
    assert kimg == sorted(kimg) and kimg[-1] == pytest.approx(0.32)
    alphas = [float(r["progress/alpha"]) for r in rows if r.get("progress/alpha")]
    assert any(0 < a < 1 for a in alphas)  # a fade was logged mid-way


def test_phase_change_resets_optimizer_and_sets_per_resolution_lr(make_cfg):
    cfg = make_cfg("growth.lr={4: 0.002, 16: 0.0005}", "growth.fade_kimg=0")
    _, objects = train(cfg)
    trainer = objects["trainer"]
    for opt in trainer.optimizers:
        assert opt.param_groups[0]["lr"] == 0.0005
        # Adam state was cleared at the last phase change, so its step count restarted there.
        step = next(iter(opt.state.values()))["step"]
        assert int(step) == 64 // 16


class RecordLr(L.Callback):
    """Records (images seen before the step, G's lr, D's lr) at every batch start, after the
    growth callback has set them."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float, float]] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        lr_g, lr_d = (opt.param_groups[0]["lr"] for opt in trainer.optimizers)
        self.steps.append((pl_module.cur_nimg, lr_g, lr_d))


def test_lr_rampdown_and_d_lr_ratio_set_every_step(make_cfg, monkeypatch):
    # 320 images at batch 16; the ramp covers the last 128 (fade16 and stable16). The
    # per-resolution rates and the ramp apply to both networks; D's is 3x G's at every step.
    cfg = make_cfg(
        "growth.lr={4: 0.002, 16: 0.0005}",
        "growth.lr_rampdown_kimg=0.128",
        "model.d_lr_ratio=3",
    )
    record = RecordLr()
    from progan_lightning import train as train_mod

    configured = train_mod.instantiate_dict
    monkeypatch.setattr(train_mod, "instantiate_dict", lambda c: [record, *configured(c)])
    train(cfg)
    assert len(record.steps) == 320 // 16
    for nimg, lr_g, lr_d in record.steps:
        base = 0.002 if nimg < 192 else 0.0005  # 8x8 takes 4x4's lr
        scale = min(1.0, (320 - nimg) / 128)
        assert lr_g == pytest.approx(base * scale), nimg
        assert lr_d == pytest.approx(3 * base * scale), nimg
    assert record.steps[-1][1] == pytest.approx(0.0005 * 16 / 128)  # the last step moves


def test_celebahq_experiment_trains_on_a_folder_with_tiny_overrides(make_cfg, tmp_path: Path):
    from PIL import Image

    folder = tmp_path / "faces"
    (folder / "sub").mkdir(parents=True)
    for i in range(12):
        Image.new("RGB", (24 + i, 20), (20 * i, 90, 160)).save(folder / "sub" / f"{i}.JPG")
    cfg = make_cfg(
        "experiment=celebahq",
        f"data.path={folder}",
        "data.resolution=8",
        "model.G.z_dim=16",
        "model.G.fmap_base=32",
        "model.G.fmap_max=16",
        "growth.stable_kimg=0.016",
        "growth.fade_kimg=0.016",
        "growth.batch_size=4",
        "growth.tick_kimg=0.016",
        "growth.total_kimg=0.048",  # null would be the preset's 12000
        "logger=csv",
        "trainer.accelerator=cpu",
        "callbacks.samples.num_images=4",
        "callbacks.samples.tile=8",
        tiny=False,
    )
    _, objects = train(cfg)
    assert objects["model"].cur_nimg == 48
    assert objects["model"].stage == 1
    assert objects["datamodule"].mirror is True
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()


def test_fast_dev_run_runs_one_batch(make_cfg):
    cfg = make_cfg(
        "debug=fdr",
        "data.resolution=8",
        "data.source.num_images=64",
        "model.G.fmap_base=32",
        "model.G.fmap_max=16",
        tiny=False,
    )
    metrics, objects = train(cfg)
    assert objects["model"].cur_nimg == 32  # one batch at the quickstart 4x4 batch size
    assert "loss/D" in metrics
