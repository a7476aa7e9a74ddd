"""The legibility measurement (``python -m benchmarks.legibility``) on tiny runs:
an unconditional and a conditional generator, each in a run dir as training leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks import legibility
from benchmarks.legibility import main, measure, table
from progan_lightning.export import export_generator
from progan_lightning.networks import Generator

DATA = ["data.resolution=16", "data.source.num_images=300"]
DIGITS = [str(digit) for digit in range(10)]


def tiny_run(folder: Path, classes: list[str] | None = None) -> Path:
    """An untrained 16x16 grayscale generator in ``folder`` with the run's overrides."""
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in DATA))
    torch.manual_seed(0)
    G = Generator(
        16, img_channels=1, z_dim=8, fmap_base=32, fmap_max=8, num_classes=len(classes or [])
    )
    export_generator(G, folder / "generator.safetensors", class_names=classes)
    return folder


def test_an_unconditional_run_gets_the_read_shares_and_swd_beside_the_floor(
    tmp_path: Path, cache_dir: Path
):
    run = tiny_run(tmp_path / "run")
    result = measure(run, num_images=32, steps=30, cache_dir=cache_dir)
    assert result["resolution"] == 16 and not result["conditional"]
    # An untrained generator draws noise: far above the floor, and read far less than reals.
    assert result["swd"] > 2 * result["swd_floor"] > 0
    assert 0 <= result["read"] <= 1 and 0 <= result["reals_read"] <= 1
    assert "class_accuracy" not in result


def test_a_conditional_run_gets_its_class_accuracy_and_a_median_table(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
):
    train = legibility.train_classifier
    runs = [tiny_run(tmp_path / f"seed{i}", DIGITS) for i in range(2)]
    out = tmp_path / "table.md"
    settings = ["--num-images", "20", "--steps", "20", "--cache-dir", str(cache_dir)]
    trained = []
    monkeypatch.setattr(
        legibility, "train_classifier", lambda *a, **k: trained.append(a) or train(*a, **k)
    )
    text = main([*map(str, runs), *settings, "--out", str(out)])
    assert len(trained) == 1  # One reference classifier for both runs on the same reals.
    assert out.read_text() == text
    lines = text.splitlines()
    assert lines[0].startswith("| run | SWD x1e3 | floor (reals vs reals) | SWD / floor |")
    assert "class accuracy" in lines[0] and "samples read" not in lines[0]
    assert len(lines) == 2 + 2 + 1 and lines[-1].startswith("| median of 2 |")
    # Each class's accuracy beside the mean (the median row leaves it out).
    assert lines[0].endswith("| class accuracy per class |")
    per_class = lines[2].split(" | ")[-1].rstrip(" |").split(", ")
    assert [entry.split(" ")[0] for entry in per_class] == DIGITS
    accuracies = [float(entry.split(" ")[1]) for entry in per_class]
    assert all(0 <= a <= 1 for a in accuracies)
    mean = float(lines[2].split(" | ")[4])  # run, SWD, floor, ratio, class accuracy
    assert abs(mean - sum(accuracies) / len(accuracies)) < 0.006  # both rounded
    assert lines[-1].endswith("|  |")


def test_the_table_takes_the_median_of_each_column():
    rows = [
        {
            "run": f"r{i}",
            "swd": swd,
            "swd_floor": 1.0,
            "read": read,
            "reals_read": 0.5,
            "reals_accuracy": 1.0,
        }
        for i, (swd, read) in enumerate([(3.0, 0.1), (1.0, 0.4), (2.0, 0.3)])
    ]
    median = table(rows).splitlines()[-1].split(" | ")
    assert median[:5] == ["| median of 3", "2", "1", "2", "0.3"]


def test_a_folder_without_an_export_is_named(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match=r"no generator.safetensors here"):
        measure(tmp_path)
