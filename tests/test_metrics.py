"""Quality metrics: SWD against the paper's algorithm, MS-SSIM diversity, FID and Inception
Score plumbing, the IS math, and the metrics callback (mirrored reals, a NaN generator, a
tiny run)."""

from __future__ import annotations

import csv
import functools
import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import scipy.ndimage
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from helpers import stub_trainer
from progan_lightning.callbacks.metrics import MetricsCallback
from progan_lightning.losses import WGANGP
from progan_lightning.metrics.fid import FrechetDistance
from progan_lightning.metrics.inception import InceptionSetupError
from progan_lightning.metrics.inception_score import InceptionScore, inception_score
from progan_lightning.metrics.ms_ssim import MSSSIMDiversity
from progan_lightning.metrics.registry import prepare_metrics
from progan_lightning.metrics.swd import (
    SlicedWassersteinDistance,
    patch_positions,
    pyramid_resolutions,
)
from progan_lightning.module import ProGAN
from progan_lightning.networks import Discriminator, Generator
from progan_lightning.train import train

SMALL = {"nhoods_per_image": 16, "dir_repeats": 2, "dirs_per_repeat": 32}


def smooth_images(n: int, res: int, seed: int) -> torch.Tensor:
    """Blurry colour blobs: low-frequency content. uint8 [NCHW]"""
    gen = torch.Generator().manual_seed(seed)
    low = torch.rand(n, 3, res // 4, res // 4, generator=gen)
    return (F.interpolate(low, size=(res, res), mode="bilinear") * 255).to(torch.uint8)


def noise_images(n: int, res: int, seed: int) -> torch.Tensor:
    """White noise: high-frequency content. uint8 [NCHW]"""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, res, res), generator=gen, dtype=torch.uint8)


def swd(reals: torch.Tensor, fakes: torch.Tensor, **kwargs) -> dict[str, float]:
    metric = SlicedWassersteinDistance(reals.shape[-1], **{**SMALL, **kwargs})
    metric.update(reals, real=True)
    metric.update(fakes, real=False)
    return {k: float(v) for k, v in metric.compute().items()}


def test_pyramid_levels_go_down_to_16_or_are_the_image_itself():
    assert pyramid_resolutions(1024) == [1024, 512, 256, 128, 64, 32, 16]
    assert pyramid_resolutions(32) == [32, 16]
    assert pyramid_resolutions(16) == [16]
    assert pyramid_resolutions(8) == [8]
    assert pyramid_resolutions(4) == [4]


@pytest.mark.parametrize("res", [4, 8, 32])
def test_swd_of_identical_sets_is_zero_and_different_distributions_score_clearly_more(res):
    a, b = smooth_images(512, res, 0), smooth_images(512, res, 1)
    same = swd(a, a)
    assert set(same) == {f"swd_{r}" for r in pyramid_resolutions(res)} | {"swd_avg"}
    assert all(v == pytest.approx(0.0, abs=1e-6) for v in same.values())
    other_sample = swd(a, b)["swd_avg"]
    other_distribution = swd(a, noise_images(512, res, 2))["swd_avg"]
    assert other_distribution > 2 * other_sample > 0


def test_swd_is_invariant_to_image_order():
    a, b = smooth_images(64, 32, 0), noise_images(64, 32, 1)
    perm = torch.randperm(64, generator=torch.Generator().manual_seed(3))
    assert swd(a, b) == swd(a[perm], b[perm])
    # Split into several updates: same result.
    metric = SlicedWassersteinDistance(32, **SMALL)
    for chunk in a[perm].split(10):
        metric.update(chunk, real=True)
    metric.update(b, real=False)
    assert float(metric.compute()["swd_avg"]) == swd(a, b)["swd_avg"]


def test_swd_accepts_float_images_in_minus_one_one():
    a = smooth_images(32, 16, 0)
    as_float = a.float() / 127.5 - 1.0
    assert swd(a, as_float)["swd_avg"] == pytest.approx(0.0, abs=1e-3)


# A straightforward NumPy transcription of the official metrics/sliced_wasserstein.py.
GAUSS = np.float32([[1, 4, 6, 4, 1]]).T @ np.float32([[1, 4, 6, 4, 1]]) / 256.0


def ref_pyr_down(x: np.ndarray) -> np.ndarray:
    return scipy.ndimage.convolve(x, GAUSS[None, None], mode="mirror")[:, :, ::2, ::2]


def ref_pyr_up(x: np.ndarray) -> np.ndarray:
    n, c, h, w = x.shape
    res = np.zeros((n, c, h * 2, w * 2), x.dtype)
    res[:, :, ::2, ::2] = x
    return scipy.ndimage.convolve(res, GAUSS[None, None] * 4.0, mode="mirror")


def ref_swd(reals, fakes, positions, directions, nhood=7) -> list[float]:
    """SWD x1e3 per level; ``positions[kind][level]`` [N, P, 2] and ``directions`` given."""
    levels = pyramid_resolutions(reals.shape[-1])
    descs = {}
    for kind, images in (("real", reals), ("fake", fakes)):
        pyramid = [images.numpy().astype(np.float32)]
        for _ in range(1, len(levels)):
            pyramid.append(ref_pyr_down(pyramid[-1]))
            pyramid[-2] -= ref_pyr_up(pyramid[-1])
        descs[kind] = []
        for lod, level in enumerate(pyramid):
            patches = []
            for i in range(len(level)):
                for y, x in positions[kind][lod][i]:
                    h = nhood // 2
                    patches.append(level[i, :, y - h : y + h + 1, x - h : x + h + 1])
            desc = np.stack(patches).astype(np.float64)
            desc -= desc.mean(axis=(0, 2, 3), keepdims=True)
            desc /= desc.std(axis=(0, 2, 3), keepdims=True)
            descs[kind].append(desc.reshape(len(desc), -1))
    out = []
    for lod in range(len(levels)):
        a, b = descs["real"][lod], descs["fake"][lod]
        dists = []
        for dirs in directions:
            dirs = dirs / np.sqrt((dirs**2).sum(axis=0, keepdims=True))
            pa, pb = np.sort(a @ dirs, axis=0), np.sort(b @ dirs, axis=0)
            dists.append(np.abs(pa - pb).mean())
        out.append(float(np.mean(dists)) * 1e3)
    return out


def test_swd_matches_a_reference_implementation_of_the_paper():
    reals, fakes = smooth_images(12, 32, 0), noise_images(12, 32, 1)
    p, repeats, per_repeat, seed = 8, 3, 16, 5
    metric = SlicedWassersteinDistance(
        32, nhoods_per_image=p, dir_repeats=repeats, dirs_per_repeat=per_repeat, seed=seed
    )
    metric.update(reals, real=True)
    metric.update(fakes, real=False)
    ours = metric.compute()

    # Same random draws: the metric's patch positions and its seeded directions.
    positions = {
        kind: [
            patch_positions(images, 2 * p, 3, res - 3, seed + res).view(len(images), p, 2).numpy()
            for res in (32, 16)
        ]
        for kind, images in (("real", reals), ("fake", fakes))
    }
    gen = torch.Generator().manual_seed(seed)
    directions = [
        torch.randn(3 * 49, per_repeat, generator=gen).double().numpy() for _ in range(2 * repeats)
    ]
    # The metric draws a level's directions before moving to the next level.
    reference = [
        ref_swd(reals, fakes, positions, directions[:repeats])[0],
        ref_swd(reals, fakes, positions, directions[repeats:])[1],
    ]
    assert float(ours["swd_32"]) == pytest.approx(reference[0], rel=1e-4)
    assert float(ours["swd_16"]) == pytest.approx(reference[1], rel=1e-4)
    assert float(ours["swd_avg"]) == pytest.approx(np.mean(reference), rel=1e-4)


def test_swd_keeps_real_statistics_across_reset():
    metric = SlicedWassersteinDistance(16, **SMALL)
    metric.update(smooth_images(16, 16, 0), real=True)
    metric.update(smooth_images(16, 16, 0), real=False)
    assert float(metric.compute()["swd_avg"]) == pytest.approx(0.0, abs=1e-6)
    metric.reset()
    assert metric.num_real == 16
    metric.update(noise_images(16, 16, 1), real=False)
    assert float(metric.compute()["swd_avg"]) > 10


@pytest.mark.parametrize("res", [4, 16, 64])
def test_ms_ssim_diversity_is_one_for_identical_pairs_and_low_for_random(res):
    x = noise_images(8, res, 0)
    same = MSSSIMDiversity(res)
    same.update(x[:1].repeat(8, 1, 1, 1), real=False)
    same.update(x, real=True)  # reals are ignored
    assert float(same.compute()["ms_ssim"]) == pytest.approx(1.0, abs=1e-4)
    varied = MSSSIMDiversity(res)
    varied.update(x, real=False)
    assert float(varied.compute()["ms_ssim"]) < 0.5


class TinyFeatures(nn.Module):
    """Stand-in for Inception (no download): mean colour and a 2x2 average per channel."""

    num_features = 15

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float() / 255.0
        return torch.cat([x.mean((2, 3)), F.adaptive_avg_pool2d(x, 2).flatten(1)], dim=1)


def test_fid_plumbing_with_a_stand_in_feature_network():
    a, b = smooth_images(64, 16, 0), noise_images(64, 16, 1)
    fid = FrechetDistance(16, feature=TinyFeatures())
    fid.update(a, real=True)
    fid.update(a, real=False)
    assert float(fid.compute()["fid"]) == pytest.approx(0.0, abs=1e-3)
    fid.reset()  # real statistics are kept
    fid.update(b, real=False)
    assert float(fid.compute()["fid"]) > 0.01


class TinyLogits(nn.Module):
    """Stand-in for Inception's logits (no download): 3 classes from the mean colour."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.float().mean((2, 3)) / 255.0 * 8.0


def test_inception_score_matches_a_hand_computation_on_known_probabilities():
    # 5 images, 2 splits: the official split i holds rows i*5//2 .. (i+1)*5//2, i.e. [0, 1]
    # and [2, 3, 4] (torch.chunk would give [0, 1, 2] and [3, 4]).
    probs = torch.tensor(
        [[0.5, 0.25, 0.25], [0.25, 0.5, 0.25], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5], [0.2, 0.3, 0.5]]
    )
    logits = probs.log() + 3.0  # softmax is shift-invariant
    mean, std = inception_score(logits, splits=2)
    # Split 1: p(y) = (0.375, 0.375, 0.25); both rows have the same KL by symmetry.
    kl = 0.5 * math.log(0.5 / 0.375) + 0.25 * math.log(0.25 / 0.375) + 0.25 * math.log(1.0)
    first, second = math.exp(kl), 1.0  # identical rows: p(y|x) = p(y), KL 0
    assert float(mean) == pytest.approx((first + second) / 2, rel=1e-6)
    assert float(std) == pytest.approx(abs(first - second) / 2, rel=1e-6)  # NumPy's std
    # One split of confident, uniformly spread classes: IS = number of classes.
    assert float(inception_score(torch.eye(4) * 60.0, splits=1)[0]) == pytest.approx(4.0)
    with pytest.raises(ValueError, match="at least splits=10 images, got 5"):
        inception_score(logits)


def test_inception_score_metric_with_a_stand_in_network_ignores_reals():
    images = smooth_images(40, 16, 0)
    metric = InceptionScore(16, feature=TinyLogits(), splits=4)
    metric.update(noise_images(8, 16, 1), real=True)  # ignored
    metric.update(images[:25], real=False)
    metric.update(images[25:].float() / 127.5 - 1.0, real=False)  # float [-1, 1] works too
    out = metric.compute()
    expected = inception_score(TinyLogits()(images), splits=4)
    assert set(out) == {"is_mean", "is_std"}
    torch.testing.assert_close(out["is_mean"], expected[0], rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(out["is_std"], expected[1], rtol=1e-4, atol=1e-5)


def test_inception_score_without_weights_fails_at_start_up_with_one_clear_message(tmp_path):
    with pytest.raises(
        InceptionSetupError, match=r"^IS.*(torch-fidelity|weights_path).*drop IS.*metrics=default"
    ):
        prepare_metrics({"is": {"weights_path": str(tmp_path / "missing.pth")}})


def test_is_config_shares_the_fid_weights_path(make_cfg):
    cfg = make_cfg("metrics=[default,is]")
    assert (cfg.metrics["is"].feature, cfg.metrics["is"].splits) == ("logits_unbiased", 10)
    assert "fid" not in cfg.metrics
    cfg = make_cfg("metrics=[default,fid,is]", "metrics.fid.weights_path=/w/inception.pth")
    assert cfg.metrics["is"].weights_path == "/w/inception.pth"


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


def test_fid_without_weights_fails_at_start_up_with_one_clear_message(make_cfg, tmp_path):
    with pytest.raises(
        InceptionSetupError, match=r"FID.*(torch-fidelity|weights_path).*metrics=default"
    ):
        prepare_metrics({"fid": {"weights_path": str(tmp_path / "missing.pth")}})
    cfg = make_cfg("metrics=[default,fid]", f"metrics.fid.weights_path={tmp_path / 'no.pth'}")
    with pytest.raises(Exception, match="metrics=default") as info:
        train(cfg)
    assert not (tmp_path / "checkpoints").exists()  # nothing ran
    assert "FID" in str(info.value)


def test_unknown_metric_names_the_known_ones():
    with pytest.raises(ValueError, match="Unknown metric 'swdd'.*swd, ms_ssim, fid, is"):
        prepare_metrics({"swdd": {}})


def test_metrics_callback_logs_and_writes_json_lines_on_a_tiny_run(make_cfg, tmp_path: Path):
    cfg = make_cfg(
        "data=shapes",  # RGB: the stand-ins read 3 colour channels (15 features, 3 logits)
        "metrics=[default,fid,is]",
        "metrics.fid.feature={_target_: test_metrics.TinyFeatures}",
        "metrics.is.feature={_target_: test_metrics.TinyLogits}",
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
