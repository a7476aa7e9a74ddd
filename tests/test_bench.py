"""The FLOP counter and the benchmark, end to end on a tiny model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from progan_lightning.bench import run, update_notes
from progan_lightning.flops import FlopCounter, count_flops
from progan_lightning.train import CONFIG_DIR

TINY_BENCH = [
    "model.G.z_dim=16",
    "model.G.fmap_base=32",
    "model.G.fmap_max=16",
    "data.resolution=8",
    "bench.device=cpu",
    "bench.threads=1",
    "bench.warmup=1",
    "bench.repeats=2",
    "bench.min_repeat_s=0",
    "bench.matmul_size=128",
]


@pytest.fixture
def compose_bench(tmp_path: Path) -> Iterator:
    """Factory: ``compose_bench(*overrides)`` -> the bench config writing into ``tmp_path``."""

    def make(*overrides: str) -> DictConfig:
        GlobalHydra.instance().clear()
        with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
            cfg = compose("bench", overrides=list(overrides), return_hydra_config=True)
        with open_dict(cfg):
            cfg.hydra.runtime.output_dir = str(tmp_path)
            cfg.hydra.job.num = 0
        HydraConfig().set_config(cfg)
        return cfg

    yield make
    GlobalHydra.instance().clear()


def test_counts_linear_and_conv_exactly() -> None:
    x = torch.randn(8, 16)
    w = torch.randn(32, 16)
    assert count_flops(lambda: F.linear(x, w)) == 2 * 8 * 32 * 16
    assert count_flops(lambda: x @ w.T) == 2 * 8 * 32 * 16

    img = torch.randn(2, 3, 8, 8)
    kernel = torch.randn(4, 3, 3, 3)
    out_elems = 2 * 4 * 8 * 8
    assert count_flops(lambda: F.conv2d(img, kernel, padding=1)) == 2 * out_elems * 3 * 3 * 3


def test_backward_counts_twice_the_forward() -> None:
    x = torch.randn(8, 16)
    w = torch.randn(32, 16, requires_grad=True)
    forward = count_flops(lambda: F.linear(x, w))
    with FlopCounter() as counter:
        F.linear(x, w).sum().backward()
    # Backward needs only the weight gradient here: one more matmul of the same size.
    assert counter.total == 2 * forward
    assert set(counter.by_op) == {"aten.mm"}


def test_counts_inside_autograd_grad_with_create_graph() -> None:
    kernel = torch.randn(4, 3, 3, 3, requires_grad=True)
    img = torch.randn(2, 3, 8, 8)

    def critic(x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(F.conv2d(x, kernel, padding=1), 0.2).sum()

    def penalty() -> None:
        x = img.clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(critic(x), x, create_graph=True)
        grad.square().sum().backward()

    forward = count_flops(lambda: critic(img))
    total = count_flops(penalty)
    assert total > 2 * forward


def test_update_notes_keeps_other_sections(tmp_path: Path) -> None:
    notes = tmp_path / "benchmarks.md"
    notes.write_text("# Benchmarks\n\nProse stays.\n")
    update_notes(notes, "cpu", "cpu table 1")
    update_notes(notes, "cuda", "gpu table")
    update_notes(notes, "cpu", "cpu table 2")
    text = notes.read_text()
    assert "Prose stays." in text
    assert "cpu table 2" in text and "cpu table 1" not in text
    assert "gpu table" in text
    assert text.count("<!-- bench:cpu -->") == 1


def test_config_composes_like_training(compose_bench) -> None:
    cfg = compose_bench()
    assert cfg.model._target_ == "progan_lightning.module.ProGAN"
    assert (cfg.model.G.fmap_base, cfg.model.G.fmap_max, cfg.data.resolution) == (2048, 128, 32)
    assert cfg.bench.batch_size == 32
    # Experiments still apply their other settings.
    assert compose_bench("experiment=cifar10").model.loss.gp_target == 750.0


def test_bench_runs_end_to_end(compose_bench, tmp_path: Path) -> None:
    out, notes = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    cfg = compose_bench(*TINY_BENCH, f"bench.out={out}", f"bench.notes={notes}")
    rows = run(cfg)

    assert [r["resolution"] for r in rows] == [4, 8]
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    for row in rows:
        assert row["batch"] == 32
        assert row["device_kind"] == "cpu"
        assert row["threads"] == 1
        assert row["gflop_per_img"] > 0
        assert row["train_img_s_min"] <= row["train_img_s"] <= row["train_img_s_max"]
        assert row["train_img_s_iqr"] >= 0
        assert row["g_infer_img_s"] > 0
        assert 0 < row["utilization"] < 10
        assert row["peak_mem_mb"] >= 0
    # The bigger stage costs more per image.
    assert rows[1]["gflop_per_img"] > rows[0]["gflop_per_img"]

    text = notes.read_text()
    assert "<!-- bench:cpu -->" in text and "<!-- /bench:cpu -->" in text
    assert "python -m progan_lightning.bench" in text
    assert "| 8 | 32 |" in text


def test_bench_uses_the_growth_batch_and_checks_resolutions(compose_bench) -> None:
    cfg = compose_bench(*TINY_BENCH, "bench.batch_size=null", "bench.resolutions=[8]")
    with open_dict(cfg):
        cfg.bench.out = None
        cfg.bench.notes = None
    rows = run(cfg)
    assert [(r["resolution"], r["batch"]) for r in rows] == [(8, 128)]

    bad = compose_bench(*TINY_BENCH, "bench.resolutions=[64]")
    with pytest.raises(ValueError, match="bench.resolutions"):
        run(bad)
