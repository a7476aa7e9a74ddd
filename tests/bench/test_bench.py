"""The FLOP counter, the schedule projection and the benchmark, end to end on a tiny model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, open_dict

from progan_lightning.bench.flops import FlopCounter, count_flops
from progan_lightning.bench.memory import MetaValues, SavedTensorMeter, max_batches, step_memory
from progan_lightning.bench.plan import device_schedules
from progan_lightning.bench.projection import Rate, project, total_hours
from progan_lightning.bench.report import update_notes
from progan_lightning.bench.run import run
from progan_lightning.bench.timing import peak_reference
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.schedule import GrowthSchedule

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


def tiny_with_files(
    compose_bench, tmp_path: Path, *overrides: str
) -> tuple[DictConfig, Path, Path]:
    """The tiny bench config writing its JSON and notes into ``tmp_path``: (cfg, out, notes)."""
    out, notes = tmp_path / "bench.json", tmp_path / "benchmarks.md"
    cfg = compose_bench(*TINY_BENCH, *overrides, f"bench.out={out}", f"bench.notes={notes}")
    return cfg, out, notes


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
    cfg, out, notes = tiny_with_files(compose_bench, tmp_path)
    rows = run(cfg)["stages"]

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
    rows = run(cfg)["stages"]
    assert [(r["resolution"], r["batch"]) for r in rows] == [(8, 128)]

    bad = compose_bench(*TINY_BENCH, "bench.resolutions=[64]")
    with pytest.raises(ValueError, match="bench.resolutions"):
        run(bad)


def test_saved_tensor_meter_counts_each_storage_until_backward() -> None:
    x = torch.randn(1000, requires_grad=True)
    with SavedTensorMeter(exclude=[x]) as meter:
        y = x.exp()  # saves its result: 4000 bytes
        z = y.view(10, 100).exp()  # saves a second result; y is not saved again by the view
        assert meter.bytes == 8000
        loss = (z * y.view(10, 100)).sum()  # mul saves both operands: y's storage counts once
        assert meter.bytes == 8000
        loss.backward()
        del y, z, loss
    assert meter.bytes == 0
    assert meter.peak == 8000


def test_activation_memory_is_per_image_and_the_same_on_meta(compose_bench) -> None:
    import hydra

    cfg = compose_bench(*TINY_BENCH)
    module = hydra.utils.instantiate(cfg.model)
    (b4, state), (b8, _), (b16, _) = (step_memory(module, 8, n) for n in (4, 8, 16))
    per_image = (b8 - b4) / 4
    assert per_image > 0
    assert (b16 - b8) / 8 == pytest.approx(per_image, rel=0.01)  # linear in the batch
    # Mostly per image; the fixed part (saved weights and fused kernels) is small.
    assert 0 <= b4 - 4 * per_image < 0.25 * b8
    params = sum(p.numel() * 4 for p in module.parameters())
    assert params < state < 4 * params  # weights and G_ema, plus gradients and Adam moments
    # The meta trace (no arithmetic) saves exactly what the CPU saves.
    meta = hydra.utils.instantiate(cfg.model).to("meta")
    assert step_memory(meta, 8, 4) == (b4, state)


def test_meta_values_answer_host_reads_of_meta_tensors_only() -> None:
    with MetaValues():
        assert torch.zeros(3, device="meta").sum().item() == 1
        assert bool(torch.isfinite(torch.full((2,), float("nan"), device="meta")).all())
        assert torch.zeros(3).sum().item() == 0  # real values are read as they are
        assert not bool(torch.isfinite(torch.tensor([float("nan")])).all())


def test_max_batches_fit_their_budget() -> None:
    fixed, per_image = 3 * 2**30, 0.7 * 2**30
    fits = max_batches(fixed, per_image, [16, 24, 40, 80], reserve=0.1)
    assert list(fits.values()) == sorted(fits.values())
    for gb, batch in zip([16, 24, 40, 80], fits.values(), strict=True):
        assert fixed + batch * per_image <= 0.9 * gb * 2**30 < fixed + (batch + 1) * per_image
    assert max_batches(fixed, per_image, [2], reserve=0.1) == {"max_batch_2gb": 0}


def test_bench_memory_part_on_cpu_is_computed_and_labelled(
    compose_bench, tmp_path, monkeypatch
) -> None:
    notes = tmp_path / "benchmarks.md"
    cfg = compose_bench(
        *TINY_BENCH, "bench.parts=[memory]", "bench.out=null", f"bench.notes={notes}"
    )
    rows = run(cfg)["memory"]
    assert [r["resolution"] for r in rows] == [4, 8]
    assert rows[1]["per_image_mb"] > rows[0]["per_image_mb"] > 0
    assert rows[0]["max_batch_16gb"] <= rows[0]["max_batch_80gb"]
    text = notes.read_text()
    assert "<!-- bench:memory-cpu -->" in text
    assert "computed from CPU-measured saved activations, not measured on a GPU" in text

    fp16 = compose_bench(*TINY_BENCH, "bench.parts=[memory]", "model/precision=fp16")
    with pytest.raises(ValueError, match="model.precision=fp16"):
        run(fp16)
    # auto is traced where it trains in float32 (no bf16 units), refused where it takes bf16.
    monkeypatch.setattr("progan_lightning.precision.cpu_capabilities", lambda: {"amx_bf16": True})
    auto = compose_bench(*TINY_BENCH, "bench.parts=[memory]", "model/precision=auto")
    with pytest.raises(ValueError, match="model.precision=auto"):
        run(auto)
    with pytest.raises(ValueError, match="bench.parts"):
        run(compose_bench(*TINY_BENCH, "bench.parts=[speed]"))
    with pytest.raises(ValueError, match="python -m benchmarks.eqlr"):
        run(compose_bench(*TINY_BENCH, "bench.parts=[stages,eqlr]"))


def test_utilization_is_against_the_step_compute_dtype() -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert [peak_reference(cpu, p) for p in ("fp32", "bf16", "fp16")] == ["fp32", "bf16", "fp32"]
    assert [peak_reference(cuda, p) for p in ("bf16", "fp16")] == ["bf16", "fp16"]
    assert peak_reference(cuda, "fp32") == ("tf32" if torch.backends.cudnn.allow_tf32 else "fp32")


def test_bench_data_part_against_the_step(compose_bench, tmp_path: Path) -> None:
    notes = tmp_path / "benchmarks.md"
    cfg = compose_bench(
        *TINY_BENCH,
        "bench.parts=[stages,data]",
        "bench.data.num_files=12",
        "bench.data.file_size=null",
        f"data.cache_dir={tmp_path / 'cache'}",
        "bench.out=null",
        f"bench.notes={notes}",
    )
    results = run(cfg)
    assert len(list((tmp_path / "cache" / "bench-files-12x8").glob("*.jpg"))) == 12
    steps = {row["resolution"]: row["train_img_s"] for row in results["stages"]}
    assert [row["res"] for row in results["data"]] == [4, 8]
    for row in results["data"]:
        assert row["loader_img_s"] > 0 and row["decode_img_s"] > 0
    text = notes.read_text()
    assert "<!-- bench:data-cpu-8 -->" in text and "### CPU: data loading" in text
    # The files by their folder's name (no machine path); the command without its outputs.
    assert "cpu, 12 files from bench-files-12x8, cache levels up to 8." in text
    assert "bench.notes=" not in text and "bench.out=" not in text
    ratio = results["data"][0]["loader_img_s"] / steps[4]
    assert f"| {ratio:.0f}x |" in text
    # The data part alone: the step columns are dashes.
    alone = run(
        compose_bench(
            *TINY_BENCH,
            "bench.parts=[data]",
            "bench.data.num_files=12",
            f"data.cache_dir={tmp_path / 'cache'}",
            "bench.out=null",
            f"bench.notes={notes}",
        )
    )
    assert len(alone["data"]) == 2
    assert "step not timed" in notes.read_text()


def test_projection_hours_are_images_over_rate_summed() -> None:
    # stable4 7.2 kimg, fade8 3.6 kimg, stable8 3.6 kimg (cut by total_kimg from 7.2).
    schedule = GrowthSchedule(
        start_resolution=4,
        final_resolution=8,
        stable_kimg={4: 7.2, 8: 7.2},
        fade_kimg=3.6,
        batch_size={4: 16, 8: 8},
        total_kimg=14.4,
    )
    rates = {(4, False): Rate(2.0, 16), (8, True): Rate(0.5, 8), (8, False): Rate(1.0, 4)}
    one = project(schedule.phases, schedule.total_nimg, 1, rates)
    assert [(t.phase, t.images, t.hours) for t in one] == [
        ("stable4", 7200, 7200 / 2.0 / 3600),
        ("fade8", 3600, 3600 / 0.5 / 3600),
        ("stable8", 3600, 3600 / 1.0 / 3600),
    ]
    assert [t.hours for t in one] == [1.0, 2.0, 1.0]
    assert total_hours(one) == (4.0, 14400, 14400)
    # Ideal data-parallel scaling: twice the devices, half the hours at half the batch each.
    two = project(schedule.phases, schedule.total_nimg, 2, rates)
    assert [t.hours for t in two] == [0.5, 1.0, 0.5]
    assert [t.batch_per_device for t in two] == [8, 4, 4]
    # Measured at another batch than the per-device one: used as is, and flagged.
    assert [t.converted for t in one] == [False, False, True]
    assert [t.converted for t in two] == [True, True, False]


def test_projection_leaves_unmeasured_phases_out_of_the_total() -> None:
    schedule = GrowthSchedule(4, 8, stable_kimg=3.6, fade_kimg=3.6, batch_size=4)
    times = project(schedule.phases, schedule.total_nimg, 1, {(4, False): Rate(1.0, 4)})
    assert [t.hours for t in times] == [1.0, None, None]
    assert total_hours(times) == (1.0, 3600, 10800)
    with pytest.raises(ValueError, match="does not divide over 3 devices"):
        project(schedule.phases, schedule.total_nimg, 3, {})


def test_bench_projection_part(compose_bench, tmp_path: Path) -> None:
    cfg, _, notes = tiny_with_files(
        compose_bench, tmp_path, "bench.parts=[stages,projection]", "bench.devices=[1,2]"
    )
    results = run(cfg)
    stable = {r["resolution"]: r["train_img_s"] for r in results["stages"]}
    rows = results["projection"]
    assert json.loads((tmp_path / "bench.projection.json").read_text()) == rows
    # The default growth to 8x8: stable4, fade8, stable8 up to 12000 kimg, on 1 and 2 devices.
    assert [(r["devices"], r["phase"]) for r in rows] == [
        (n, p) for n in (1, 2) for p in ("stable4", "fade8", "stable8")
    ]
    assert sum(r["images"] for r in rows if r["devices"] == 1) == 12_000_000
    for row in rows:
        assert row["hours"] == row["images"] / (row["devices"] * row["img_s"]) / 3600
        assert row["measured_batch"] == 32
        assert row["batch_per_device"] == 128 // row["devices"]
        assert row["converted"]
        if not row["fading"]:
            assert row["img_s"] == stable[row["resolution"]]
    fade = next(r for r in rows if r["fading"])
    assert fade["img_s"] > 0 and fade["img_s"] != stable[8]  # measured at alpha 0.5
    text = notes.read_text()
    assert "<!-- bench:projection-cpu-8 -->" in text
    assert "Ideal data-parallel scaling assumed" in text
    assert "| 1 dev: batch/dev | 1 dev: hours | 2 dev: batch/dev | 2 dev: hours |" in text

    with pytest.raises(ValueError, match="bench.parts"):
        run(compose_bench(*TINY_BENCH, "bench.parts=[projection]"))
    with pytest.raises(ValueError, match="bench.devices has 3"):
        run(compose_bench(*TINY_BENCH, "bench.parts=[stages,projection]", "bench.devices=[3]"))


def test_projection_follows_the_preset_of_each_device_count(compose_bench) -> None:
    cfg = compose_bench("experiment=celebahq", "data.path=unused", "bench.devices=[1,8]")
    schedules = device_schedules(cfg)
    assert [name for name, _ in schedules.values()] == ["preset-v2-1gpu", "preset-v2-8gpus"]
    for _, schedule in schedules.values():
        assert schedule.total_nimg == 12_000_000


def test_module_entry_point_composes_the_bench_config() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "progan_lightning.bench", "--cfg", "job", "bench.devices=[2]"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "devices:\n  - 2" in done.stdout


@pytest.mark.slow
def test_bench_from_an_empty_folder_writes_nothing_unless_asked(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    docs = Path(__file__).resolve().parents[2] / "docs" / "benchmarks.md"
    before = docs.read_bytes() if docs.exists() else None
    command = [
        sys.executable,
        "-m",
        "progan_lightning.bench",
        *TINY_BENCH,
        "bench.resolutions=[4]",
    ]
    subprocess.run(command, cwd=empty, check=True)
    assert list(empty.iterdir()) == []  # no run folder, no log, no notes
    assert (docs.read_bytes() if docs.exists() else None) == before  # not the checkout's either

    # Named outputs are written, relative ones from the working directory.
    subprocess.run(
        [*command, "bench.out=b.json", "bench.notes=n.md"],
        cwd=empty,
        check=True,
    )
    assert sorted(p.name for p in empty.iterdir()) == ["b.json", "n.md"]
    assert "<!-- bench:cpu -->" in (empty / "n.md").read_text()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_the_device_is_refused_as_every_command_refuses_it(compose_bench):
    with pytest.raises(ValueError, match=r"bench.device=cuda, but there is no CUDA GPU"):
        run(compose_bench(*TINY_BENCH, "bench.device=cuda"))
    with pytest.raises(ValueError, match=r"bench.device=bogus is not a device"):
        run(compose_bench(*TINY_BENCH, "bench.device=bogus"))
