"""The side-by-side comparison with pro-gan-pth (bench/peer.py) keeps working: both trainers
train on a tiny folder and are scored, the table reads the results, and each peer variant
changes what it says it changes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from benchmarks import peer

pytest.importorskip("pro_gan_pytorch", reason="pip install --no-deps pro-gan-pth==3.4")

TINY = [
    "data.resolution=8",
    "model.G.z_dim=16",
    "model.G.fmap_base=32",
    "model.G.fmap_max=16",
    "growth.stable_kimg=0.032",
    "growth.fade_kimg=0.032",
    "growth.batch_size=16",
    "growth.lr=null",
    "growth.tick_kimg=0.032",
    "callbacks.samples.num_images=16",
    "callbacks.samples.tile=16",
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 160 small random colour images."""
    path = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for i in range(160):
        pixels = rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((16, 16)).save(path / f"{i:03d}.png")
    return path


@pytest.mark.slow
def test_both_trainers_train_and_are_scored_against_the_floor(
    folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROGAN_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "out"
    argv = [str(folder), *TINY, "--out", str(out), "--seeds", "1", "--num-images", "64"]
    peer.main([*argv, "--floor", "--label", "tiny"])
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [(r["trainer"], r["seed"]) for r in records] == [
        ("floor", 0),
        ("project", 1),
        ("peer", 1),
    ]
    for record in records:
        assert record["swd_8"] > 0 and math.isfinite(record["swd_avg"])
    assert (out / "grids" / "tiny-peer-seed1.png").is_file()
    table = peer.report(out)
    assert "| project | tiny | 1 |" in table and "| peer | tiny | 1 |" in table
    floor = records[0]["swd_avg"]
    assert f"{floor:.1f}" in table.splitlines()[-1]


def test_the_peer_follows_the_projects_schedule_and_variants(folder: Path, tmp_path: Path) -> None:
    cfg = peer.recipe(folder, TINY, tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROGAN_CACHE_DIR", str(tmp_path / "cache"))
        images = peer.real_images(cfg)
    assert images.shape == (160, 3, 8, 8) and images.dtype == np.uint8
    sample, _ = peer.train_peer(cfg, images, 0, torch.device("cpu"), tuple(peer.PEER_VARIANTS))
    assert sample(torch.randn(4, 16)).shape == (4, 3, 8, 8)
    with pytest.raises(ValueError, match="--peer-variant"):
        peer.train_peer(cfg, images, 0, torch.device("cpu"), ("nonsense",))


def test_lrelu_after_pool_is_the_fused_order() -> None:
    modules = peer._peer().modules
    block = modules.DisGeneralConvBlock(4, 8, use_eql=True)
    x = torch.randn(2, 4, 8, 8)
    lrelu = lambda t: F.leaky_relu(t, 0.2)  # noqa: E731
    expected = lrelu(F.avg_pool2d(block.conv_2(lrelu(block.conv_1(x))), 2))
    torch.testing.assert_close(peer._lrelu_after_pool(block, x), expected)
    # The peer's own order differs: pooling after the activation.
    assert not torch.allclose(block(x), expected)


def test_official_gains_and_the_ema_half_life() -> None:
    networks = peer._peer().networks
    G, D = networks.Generator(3, 3, 16), networks.Discriminator(3, 3, 16)
    peer._official_gains(G, D)
    rgb = G.rgb_converters[0]
    assert rgb.scale == pytest.approx(1 / math.sqrt(rgb.in_channels))
    dense = G.layers[0].conv_1
    assert dense.scale == pytest.approx(math.sqrt(2) / 4 / math.sqrt(16))
    out = D.layers[-1].conv_3
    assert out.scale == pytest.approx(1 / math.sqrt(out.in_channels))
    model = peer.OmegaConf.create({"ema_kimg": 1.85, "ema_beta": 0.999})
    assert peer.ema_beta(model, 32) ** (1850 / 32) == pytest.approx(0.5)
    model.ema_kimg = None
    assert peer.ema_beta(model, 32) == 0.999


def test_the_one_sync_gradient_check_is_the_peers_check() -> None:
    gan = peer._peer().gan
    original = gan.ProGAN.__dict__["_check_grad_ok"]  # The shim, installed by _peer().
    assert original.__func__ is peer._grads_finite
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 1), torch.nn.Linear(1, 1))
    assert peer._grads_finite(net)  # No gradients yet.
    net(torch.randn(2, 3)).sum().backward()
    net[2].weight.grad = None  # A parameter without a gradient is skipped.
    assert peer._grads_finite(net)
    for bad in (math.nan, math.inf, -math.inf):
        net[0].bias.grad[1] = bad
        assert not peer._grads_finite(net)
        net[0].bias.grad[1] = 0.0
    assert peer._grads_finite(net)
