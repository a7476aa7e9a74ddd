"""The metrics callback (callbacks/metrics.py): reals mirrored like the official evaluation,
a NaN generator, the sizes each experiment measures at, and tiny and short runs."""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from helpers import SMALL, TinyLogits, noise_images, smooth_images, stub_trainer, swd
from progan_lightning.callbacks.metrics import MetricsCallback
from progan_lightning.losses import WGANGP
from progan_lightning.module import ProGAN
from progan_lightning.networks import Discriminator, Generator
from progan_lightning.train import train

# A straightforward NumPy transcription of the official metrics/sliced_wasserstein.py.


class Recorder:
    """A metric that keeps what it is fed."""

    def __init__(self) -> None:
        self.seen: list[torch.Tensor] = []

    def update(self, images: torch.Tensor, real: bool) -> None:
        self.seen.append(images.clone())


def fed_reals(images: np.ndarray, mirror: bool, world_size: int = 1) -> list[bytes]:
    datamodule = SimpleNamespace(images=lambda res: images, mirror=mirror)
    callback = MetricsCallback({"num_images": 48, "batch_size": 7}, "unused.jsonl", seed=5)
    fed = []
    for rank in range(world_size):
        recorder = Recorder()
        trainer = stub_trainer(datamodule, rank, world_size)
        callback._feed_reals(trainer, [recorder], images.shape[-1], torch.device("cpu"))
        fed += [img.numpy().tobytes() for batch in recorder.seen for img in batch]
    return fed


def test_reals_are_mirrored_like_the_official_evaluation_when_mirror_augment_is_on():
    images = noise_images(80, 8, 0).numpy()  # no image equals its mirror image
    originals = {img.tobytes(): i for i, img in enumerate(images)}
    mirrors = {img[:, :, ::-1].tobytes(): i for i, img in enumerate(images)}

    plain = fed_reals(images, mirror=False)
    assert len(plain) == 48 and all(img in originals for img in plain)

    fed = fed_reals(images, mirror=True)
    flipped = [img for img in fed if img in mirrors]
    assert len(fed) == 48 and len(flipped) + sum(img in originals for img in fed) == 48
    assert 12 <= len(flipped) <= 36  # each one with probability 0.5
    # The same images (and the same ones mirrored) as without mirroring, on any device count.
    assert sorted(originals.get(img, mirrors.get(img)) for img in fed) == sorted(
        originals[img] for img in plain
    )
    assert sorted(fed_reals(images, mirror=True, world_size=3)) == sorted(fed)
    assert fed_reals(images, mirror=True) == fed  # seeded


def test_a_generator_with_nan_weights_reports_nan_for_every_metric(tmp_path: Path):
    torch.manual_seed(0)
    G = Generator(8, z_dim=8, fmap_base=32, fmap_max=8)
    D = Discriminator(8, fmap_base=32, fmap_max=8)
    module = ProGAN(G, D, WGANGP(), functools.partial(torch.optim.Adam, lr=1e-3))
    module.progress.hold(1)  # 8x8
    reals = smooth_images(64, 8, 0).numpy()
    trainer = stub_trainer(SimpleNamespace(images=lambda res: reals, mirror=False))
    jsonl = tmp_path / "metrics.jsonl"
    settings = {"num_images": 64, "batch_size": 32}
    callback = MetricsCallback(
        {**settings, "swd": SMALL, "ms_ssim": {}, "is": {"feature": TinyLogits(), "splits": 4}},
        jsonl,
    )

    healthy = callback.evaluate(trainer, module, alpha=1.0)
    assert healthy and all(math.isfinite(v) for v in healthy.values())
    with torch.no_grad():
        for p in module.G_ema.parameters():
            p.fill_(float("nan"))
    broken = callback.evaluate(trainer, module, alpha=1.0)

    assert set(broken) == set(healthy)
    assert all(math.isnan(v) for v in broken.values())  # not SWD 776 and MS-SSIM 1.0
    assert all(math.isnan(float(trainer.callback_metrics[k])) for k in broken)
    # Strict JSON: null, never NaN.
    rows = [
        json.loads(line, parse_constant=lambda c: pytest.fail(f"non-strict JSON {c}"))
        for line in jsonl.read_text().splitlines()
    ]
    assert rows[0]["fakes_finite"] is True and rows[1]["fakes_finite"] is False
    assert all(rows[1][k] is None for k in broken)
    assert all(rows[0][k] is not None for k in broken)


def test_metrics_callback_logs_and_writes_json_lines_on_a_tiny_run(make_cfg, tmp_path: Path):
    cfg = make_cfg(
        "data=shapes",  # RGB: the stand-ins read 3 colour channels (15 features, 3 logits)
        "metrics=[default,fid,is]",
        "metrics.fid.feature={_target_: helpers.TinyFeatures}",
        "metrics.is.feature={_target_: helpers.TinyLogits}",
        "metrics.is.splits=4",
        "metrics.every_kimg=0.096",
        "metrics.num_images=64",
        "metrics.batch_size=32",
    )
    metrics, _ = train(cfg)

    # One evaluation per phase end (5 phases) plus the periodic ones not at a phase end.
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["kimg"] for r in rows] == [0.064, 0.096, 0.128, 0.192, 0.256, 0.288, 0.32]
    assert [r["resolution"] for r in rows] == [4, 8, 8, 8, 16, 16, 16]
    last = rows[-1]
    keys = ("metrics/swd_16", "metrics/swd_avg", "metrics/ms_ssim", "metrics/fid")
    for key in (*keys, "metrics/is_mean", "metrics/is_std"):
        assert np.isfinite(last[key]), key
    assert 1 <= last["metrics/is_mean"] <= 3 and last["fakes_finite"] is True
    assert last["metrics/swd_avg"] == pytest.approx(last["metrics/swd_16"])
    assert 0 < last["metrics/ms_ssim"] <= 1
    assert last["num_images"] == 64

    # The final values are returned (for sweepers) and reach the CSV logger.
    assert metrics["metrics/swd_avg"] == pytest.approx(last["metrics/swd_avg"])
    table = list(csv.DictReader((tmp_path / "csv" / "metrics.csv").open()))
    logged = [float(r["metrics/swd_avg"]) for r in table if r.get("metrics/swd_avg")]
    assert logged == pytest.approx([r["metrics/swd_avg"] for r in rows])
    assert any(r.get("lr/G") for r in table) and any(
        r.get("throughput/img_per_sec") for r in table
    )

    # Pictures: fixed-latent fakes and real grids at every resolution.
    samples = tmp_path / "samples"
    assert {p.name for p in samples.glob("reals_*.png")} >= {"reals_res16.png"}
    assert (samples / "fakes_kimg00000.320_res16.png").is_file()
    # A latent-interpolation animation at every phase end.
    gifs = sorted(p.name for p in samples.glob("interp_*.gif"))
    assert len(gifs) == 5 and gifs[-1] == "interp_kimg00000.320_res16.gif"
    with Image.open(samples / gifs[-1]) as gif:
        assert gif.n_frames == 4 * 12  # keyframes x steps
        assert gif.size == (8 * 16, 16)  # 8 images of 16x16 side by side (tile 16)


@pytest.mark.parametrize("experiment", ["celebahq", "cifar10"])
def test_paper_experiments_use_the_paper_swd_sizes_and_log_to_wandb(experiment, make_cfg):
    cfg = make_cfg(f"experiment={experiment}", "++data.path=/data", tiny=False)
    assert cfg.metrics.num_images == 16384
    swd_cfg = cfg.metrics.swd
    assert (swd_cfg.nhood_size, swd_cfg.nhoods_per_image) == (7, 128)
    assert (swd_cfg.dir_repeats, swd_cfg.dirs_per_repeat) == (4, 128)
    assert list(cfg.logger) == ["wandb"]


def test_quickstart_stays_small_and_on_csv(make_cfg):
    cfg = make_cfg(tiny=False)
    assert list(cfg.logger) == ["csv"]
    assert cfg.metrics.num_images <= 1024 and set(cfg.metrics) >= {"swd", "ms_ssim"}
    assert "fid" not in cfg.metrics


@pytest.mark.slow
def test_a_short_quickstart_run_lowers_swd_clearly_below_the_untrained_generator(make_cfg):
    import hydra
    import lightning as L

    cfg = make_cfg(
        "data.resolution=16",
        "data.source.num_images=2048",
        "growth.stable_kimg=2",
        "growth.fade_kimg=2",
        "growth.batch_size=32",
        "growth.tick_kimg=10",
        "logger=none",
        "callbacks=none",
        "trainer.accelerator=cpu",
        tiny=False,  # the quickstart's networks and optimizer, shorter phases
    )
    L.seed_everything(0)
    untrained = hydra.utils.instantiate(cfg.model).G_ema
    _, objects = train(cfg)
    trained = objects["model"].G_ema
    reals = torch.from_numpy(np.array(objects["datamodule"].images(16)[:512]))

    def swd_of(G: nn.Module) -> float:
        z = torch.randn(512, G.z_dim, generator=torch.Generator().manual_seed(1))
        with torch.no_grad():
            fakes = G(z, 2, 1.0)  # stage 2 = 16x16
        return swd(reals, fakes, nhoods_per_image=32, dir_repeats=4, dirs_per_repeat=128)[
            "swd_avg"
        ]

    before, after = swd_of(untrained), swd_of(trained)
    assert after < 0.7 * before, (before, after)
