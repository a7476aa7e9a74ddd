"""The data part's measurements (bench/data.py): loader and decode rates per stage."""

from __future__ import annotations

from pathlib import Path

import torch

from progan_lightning.bench.data import format_data_table, measure_data, synthetic_folder
from progan_lightning.data.datamodule import ProGANDataModule
from progan_lightning.data.files import FolderSource


def test_data_benchmark_rows(tmp_path: Path) -> None:
    folder = synthetic_folder(tmp_path / "src", num_images=6, size=32)
    assert sorted(p.name for p in folder.iterdir())[0] == "000000.jpg"
    source = FolderSource(folder)
    datamodule = ProGANDataModule(source, 16, cache_dir=tmp_path / "cache", compress_above=8)
    datamodule.decode_workers = 0  # decode in this process: keeps the test quick
    rows = measure_data(
        datamodule, [4, 16], {4: 4, 16: 2}, torch.device("cpu"), repeats=2, min_repeat_s=0.01
    )
    assert [(r["res"], r["batch"], r["storage"]) for r in rows] == [(4, 4, "npy"), (16, 2, "png")]
    for row in rows:
        assert 0 < row["loader_min"] <= row["loader_img_s"] <= row["loader_max"]
        assert row["decode_img_s"] > 0
    table = format_data_table(rows, {4: 100.0, 16: 10.0})
    assert "| 16 | 2 | png |" in table
    ratio = rows[0]["loader_img_s"] / 100.0
    assert f"| {ratio:.0f}x |" in table.splitlines()[2]
