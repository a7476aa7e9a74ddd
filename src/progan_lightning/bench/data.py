"""The ``data`` part: the prepared cache's DataLoader per stage against on-the-fly decoding.

For each stage resolution, :func:`measure_data` times

- **loader img/s**: batches from :class:`~progan_lightning.data.datamodule.ProGANDataModule`
  exactly as training draws them (stream sampler, the stage's cache level, its workers),
  moved to the device and turned into floats in [-1, 1] with mirroring; and
- **decode img/s**: what a loader without the cache would do, reading each source file,
  decoding and resizing it to the stage's resolution, in one process.

``python -m progan_lightning.bench "bench.parts=[stages,data]"`` runs it next to the training
step benchmark and reports the ratio of the two (the loader must be >= 10x the step).
Without ``data.path`` it writes a synthetic folder of photo-like JPEGs first.
"""

from __future__ import annotations

import copy
import math
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf, open_dict
from PIL import Image

from progan_lightning.bench.timing import summarize, time_calls
from progan_lightning.data.datamodule import ProGANDataModule, build_datamodule
from progan_lightning.data.sources import ImageSource, ShapesSource
from progan_lightning.data.stream import split_batch


def synthetic_folder(folder: Path, num_images: int, size: int, quality: int = 95) -> Path:
    """Write ``num_images`` photo-like ``size`` x ``size`` JPEGs into ``folder`` (reused).

    Shapes drawn at 1/8 of the size, upscaled bicubically and overlaid with fine noise, so
    that the files decode and compress like photographs rather than flat colour.
    """
    folder.mkdir(parents=True, exist_ok=True)
    shapes = ShapesSource(num_images, seed=0)
    rng = np.random.default_rng(0)
    for index in range(num_images):
        file = folder / f"{index:06d}.jpg"
        if file.is_file():
            continue
        small = Image.fromarray(shapes.load(index, max(4, size // 8), 3))
        image = np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float32)
        image = image + rng.normal(0.0, 6.0, image.shape)
        Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(file, quality=quality)
    return folder


FILES_TARGET = "progan_lightning.data.files.FolderSource"


def decode_rate(
    source: ImageSource, resolution: int, repeats: int, min_repeat_s: float
) -> dict[str, float]:
    """Images/second of ``source.load`` at ``resolution`` in this process (files cycled):
    median, iqr, min and max over the repeats."""
    position = iter(range(10**12))

    def load() -> None:
        source.load(next(position) % len(source), resolution, 3)

    seconds, _ = time_calls(load, torch.device("cpu"), 1, repeats, min_repeat_s)
    return summarize([1 / s for s in seconds])


def loader_rate(
    datamodule: ProGANDataModule,
    resolution: int,
    batch_size: int,
    device: torch.device,
    repeats: int,
    min_repeat_s: float,
) -> dict[str, float]:
    """Images/second of training batches at ``resolution``, on ``device`` as floats.

    Returns:
        Median, iqr, min and max over the repeats, and the loader's ``workers``.
    """
    datamodule.set_plan(resolution, batch_size, start_nimg=0, num_images=10**12)
    loader = datamodule.train_dataloader()
    batches = iter(loader)

    def next_batch() -> None:
        images, labels = split_batch(next(batches))
        images = images.to(device, non_blocking=True)
        batch = images if labels is None else (images, labels.to(device, non_blocking=True))
        datamodule.on_after_batch_transfer(batch, 0)

    # Two warm-up batches: worker start-up and the first read of the level. The workers
    # stop when ``batches`` goes out of scope.
    seconds, _ = time_calls(next_batch, device, 2, repeats, min_repeat_s)
    return {**summarize([batch_size / s for s in seconds]), "workers": loader.num_workers}


def measure_data(
    datamodule: ProGANDataModule,
    resolutions: list[int],
    batches: dict[int, int],
    device: torch.device,
    repeats: int = 3,
    min_repeat_s: float = 0.5,
    decode: bool = True,
) -> list[dict[str, Any]]:
    """One row per stage: loader and on-the-fly decode images/second.

    Args:
        datamodule: Prepared (or preparable) data; its source is decoded for comparison.
        resolutions: Stage resolutions.
        batches: Per-device batch size per resolution.
        device: Where batches go.
        repeats: Timed repeats (median and min-max over them).
        min_repeat_s: Each repeat lasts at least this long.
        decode: Also time decoding from the source files.

    Returns:
        Rows with ``res``, ``batch``, ``storage``, ``loader_img_s`` (+ min/max),
        ``workers`` and ``decode_img_s``.
    """
    datamodule.prepare_data()
    rows = []
    for res in resolutions:
        images = datamodule.images(res)
        storage = "npy" if isinstance(images, np.ndarray) else datamodule.storage.compress_format
        loader = loader_rate(datamodule, res, batches[res], device, repeats, min_repeat_s)
        row = {
            "res": res,
            "batch": batches[res],
            "storage": storage,
            "in_ram": isinstance(images, np.ndarray) and not isinstance(images, np.memmap),
            "workers": loader["workers"],
            "loader_img_s": loader["median"],
            "loader_min": loader["min"],
            "loader_max": loader["max"],
        }
        if decode:
            row["decode_img_s"] = decode_rate(datamodule.source, res, repeats, min_repeat_s)[
                "median"
            ]
        rows.append(row)
    return rows


def format_data_table(rows: list[dict[str, Any]], step_rates: dict[int, float]) -> str:
    """Markdown table of :func:`measure_data` rows, with the step's img/s and the ratios."""
    lines = [
        "| res | batch | level | loader img/s | min-max | decode img/s | step img/s "
        "| loader / step | decode / step |",
        "|---:|---:|:---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        step = step_rates.get(row["res"], math.nan)  # nan: the step was not timed
        where = "RAM" if row["in_ram"] else "mmap" if row["storage"] == "npy" else row["storage"]
        where += f", {row['workers']} workers" if row["workers"] else ""
        decode = row.get("decode_img_s", math.nan)
        lines.append(
            f"| {row['res']} | {row['batch']} | {where} | {row['loader_img_s']:.0f} "
            f"| {row['loader_min']:.0f}-{row['loader_max']:.0f} | {decode:.0f} "
            f"| {_maybe(step, '{:.1f}')} | {_maybe(row['loader_img_s'] / step, '{:.0f}x')} "
            f"| {_maybe(decode / step, '{:.1f}x')} |"
        )
    return "\n".join(lines)


def _maybe(value: float, pattern: str) -> str:
    """``pattern`` of ``value``, or a dash for a value that was not measured (nan)."""
    return "-" if math.isnan(value) else pattern.format(value)


def data_module_for_bench(cfg: DictConfig) -> ProGANDataModule:
    """``cfg.data`` as training builds it; without ``data.path``, on synthetic JPEG files.

    The synthetic folder (``bench.data.num_files`` JPEGs at ``bench.data.file_size`` px,
    default ``data.resolution``) is written once under ``data.cache_dir/bench-files-*``.
    """
    options = cfg.bench.data
    if "path" in cfg.data and not OmegaConf.is_missing(cfg.data, "path"):
        return build_datamodule(cfg.data)
    size = options.file_size or cfg.data.resolution
    folder = Path(cfg.data.cache_dir).expanduser() / f"bench-files-{options.num_files}x{size}"
    synthetic_folder(folder, options.num_files, size)
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.data.path = str(folder)
        if cfg.data.source.get("_target_") != FILES_TARGET:
            cfg.data.source = {"_target_": FILES_TARGET, "path": "${data.path}"}
    return build_datamodule(cfg.data)


def data_section(
    cfg: DictConfig, device: torch.device, batches: dict[int, int], step_rates: dict[int, float]
) -> tuple[list[dict[str, Any]], str]:
    """Measure the data pipeline at the stages of ``step_rates`` and format the notes section.

    Args:
        cfg: The composed bench config (``cfg.data``, ``cfg.bench.data``).
        device: Where batches go.
        batches: Per-device batch size per stage resolution to measure.
        step_rates: Training step images/second per resolution, measured in the same run
            (empty when the stages part did not run).

    Returns:
        The rows and a markdown section for the benchmark notes.
    """
    datamodule = data_module_for_bench(cfg)
    resolutions = sorted(batches)
    rows = measure_data(
        datamodule,
        resolutions,
        batches,
        device,
        repeats=cfg.bench.repeats,
        min_repeat_s=cfg.bench.min_repeat_s,
    )
    ratios = [
        row["loader_img_s"] / step_rates[row["res"]] for row in rows if row["res"] in step_rates
    ]
    lowest = f"lowest loader/step ratio {min(ratios):.0f}x" if ratios else "step not timed"
    source = datamodule.source
    # The folder's name, not its path: the notes may be published, the machine's paths not.
    files = Path(source.path).name if hasattr(source, "path") else type(source).__name__
    text = [
        f"### {device.type.upper()}: data loading",
        "",
        f"{date.today().isoformat()}, {device.type}, {len(source)} files from {files}, "
        f"cache levels up to {datamodule.resolution}"
        + (
            f", levels above {datamodule.storage.compress_above} stored as "
            f"{datamodule.storage.compress_format.upper()}"
            if datamodule.storage.compress_above
            else ""
        )
        + ".",
        "",
        "`loader img/s`: training batches from the prepared cache through the DataLoader, "
        "moved to the device and made floats (median of the repeats). `decode img/s`: reading, "
        "decoding and resizing the source files in one process, as a loader without the cache "
        "would. `step img/s`: the training step of the stages table, same run. "
        f"Target: loader >= 10x the step at every stage; {lowest}.",
        "",
        format_data_table(rows, step_rates),
    ]
    return rows, "\n".join(text)
