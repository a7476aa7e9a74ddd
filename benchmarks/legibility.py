"""What a person sees: how many of a generator's samples read clearly, beside SWD.

    python -m benchmarks.legibility RUN_DIR [RUN_DIR ...] [--out table.md]

For each run (a training run dir holding ``generator.safetensors``, or an export inside one)
the run's data is composed again from its ``.hydra/overrides.yaml`` with class labels
(``--labels``, default ``digit``), and the project's reference classifier
(``metrics/class_accuracy.py``) is trained on those reals. Then, at the generator's last
trained stage:

- unconditional G: the share of its samples the classifier reads with confidence
  >= ``--confidence`` (0.9), beside the same share of the held-out reals;
- conditional G: its class accuracy (mean over classes; chance ``1 / classes``) and each
  class's, beside the classifier's accuracy on the held-out reals;
- both: SWD of the samples against the reals and the reals-vs-reals floor (two disjoint sets
  of ``--num-images`` reals), as ``progan-evaluate`` measures them.

One markdown table: a row per run and the median over the runs (e.g. seeds 0-2).
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf, open_dict

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.data.datamodule import ProGANDataModule, build_datamodule
from progan_lightning.generate import load_any, stage_for
from progan_lightning.metrics.class_accuracy import (
    confident_share,
    held_out_mask,
    per_class_accuracy,
    train_classifier,
)
from progan_lightning.metrics.offline import disjoint_subsets, index_batches, score_sets
from progan_lightning.metrics.registry import prepare_metrics
from progan_lightning.networks import seeded_latents

EXPORT = "generator.safetensors"


def find_export(path: Path) -> tuple[Path, Path]:
    """``(export, run dir)`` of ``path``: a run dir holding ``generator.safetensors``, or an
    export file (its folder is the run dir).

    Raises:
        FileNotFoundError: Neither.
    """
    export = path / EXPORT if path.is_dir() else path
    if not export.is_file():
        raise FileNotFoundError(
            f"{path}: no {EXPORT} here; give a training run dir (it writes {EXPORT} at the end) "
            "or an export file"
        )
    return export, export.parent


def run_data(run: Path, labels: str, cache_dir: Path | None) -> ProGANDataModule:
    """The labelled data of ``run``: ``conf/train.yaml`` composed with the run's command-line
    overrides (``.hydra/overrides.yaml``; none: the quickstart) and ``data.labels``."""
    file = run / ".hydra" / "overrides.yaml"
    overrides = [str(o) for o in OmegaConf.load(file)] if file.is_file() else []
    overrides = [o for o in overrides if not o.lstrip("+~").startswith(("hydra.", "data.labels"))]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", [*overrides, f"data.labels={labels}"], return_hydra_config=True)
    GlobalHydra.instance().clear()
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(run)
        cfg.hydra.job.num = 0
        if cache_dir is not None:
            cfg.paths.cache_dir = str(cache_dir)
    HydraConfig().set_config(cfg)  # resolves ${hydra:...} in the paths
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    return datamodule


_CLASSIFIERS: dict[tuple[str, int, int, int], tuple[torch.nn.Module, float]] = {}
"""Reference classifiers trained in this process, by reals, classes, steps and seed."""


def reference_classifier(
    images: np.ndarray, classes: np.ndarray, num_classes: int, steps: int, seed: int
) -> tuple[torch.nn.Module, float]:
    """``train_classifier`` on these reals (uint8 [N, C, R, R]) and classes [N], trained once
    per process for every run on the same data (e.g. seeds 0-2): the classifier and its
    accuracy on the held-out reals."""
    digest = hashlib.sha256(images.tobytes() + np.asarray(classes).tobytes()).hexdigest()
    key = (digest, num_classes, steps, seed)
    if key not in _CLASSIFIERS:
        _CLASSIFIERS[key] = train_classifier(images, classes, num_classes, steps=steps, seed=seed)
    return _CLASSIFIERS[key]


def measure(
    path: Path,
    num_images: int = 2048,
    labels: str = "digit",
    confidence: float = 0.9,
    steps: int = 1500,
    seed: int = 0,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """Every figure of one run (see the module's docstring).

    Args:
        path: A run dir or an export.
        num_images: Samples scored, and reals per set of the SWD floor.
        labels: ``data.labels`` that names the classes of the reals (``digit``, ``kind``).
        confidence: The softmax probability a sample must reach to count as read.
        steps: Training steps of the reference classifier (batch 64).
        seed: Seed of the classifier, the real sets and the latents.
        cache_dir: The data cache (default: the run config's ``paths.cache_dir``).
    """
    export, run = find_export(path)
    G = load_any(export).eval()
    stage, alpha = stage_for(G, None)
    resolution = 4 * 2**stage
    datamodule = run_data(run, labels, cache_dir)
    images, classes = datamodule.images(resolution), datamodule.labels  # uint8 [N, C, R, R]
    classifier, reals_accuracy = reference_classifier(
        images, classes, datamodule.num_classes, steps, seed
    )
    conditional = bool(getattr(G, "class_names", []))

    def sample(z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        with torch.no_grad():
            return G(z, stage, alpha, *(() if y is None else (y,)))  # [N, C, R, R] in [-1, 1]

    z = seeded_latents((num_images, G.z_dim), seed)
    if conditional:
        if G.class_names != datamodule.class_names:
            raise ValueError(
                f"{export} draws the classes {G.class_names}, the reals with "
                f"data.labels={labels} are {datamodule.class_names}; give the --labels that "
                "the run trained with"
            )
        per_class = max(1, num_images // len(G.class_names))
        accuracies = per_class_accuracy(
            classifier, sample, len(G.class_names), per_class, G.z_dim, seed
        )
        by_class = dict(zip(G.class_names, map(float, accuracies), strict=True))
        fake_labels = torch.arange(num_images) % len(G.class_names)
    else:
        fake_labels = None
    fakes = torch.cat(
        [
            sample(z[i : i + 256], None if fake_labels is None else fake_labels[i : i + 256])
            for i in range(0, num_images, 256)
        ]
    )
    sets = disjoint_subsets(len(images), num_images, 2, seed)
    options = prepare_metrics({"swd": {}})

    def reals(index: np.ndarray) -> Iterator[torch.Tensor]:
        return index_batches(images, index, 256)

    swd = score_sets(options, resolution, reals(sets[0]), [fakes])["metrics/swd_avg"]
    floor = score_sets(options, resolution, reals(sets[0]), reals(sets[1]))["metrics/swd_avg"]
    held_out = np.flatnonzero(held_out_mask(len(images)))
    result = {
        "run": str(path),
        "resolution": resolution,
        "conditional": conditional,
        "swd": swd,
        "swd_floor": floor,
        "reals_accuracy": reals_accuracy,
    }
    if conditional:
        return result | {
            "class_accuracy": float(np.mean(accuracies)),
            "chance": 1 / len(G.class_names),
            "per_class": by_class,
        }
    return result | {
        "read": confident_share(classifier, fakes, confidence),
        "reals_read": confident_share(classifier, images[held_out], confidence),
    }


COLUMNS = {
    "swd": "SWD x1e3",
    "swd_floor": "floor (reals vs reals)",
    "swd_ratio": "SWD / floor",
    "read": "samples read >= {confidence}",
    "reals_read": "held-out reals read >= {confidence}",
    "read_ratio": "samples / reals",
    "class_accuracy": "class accuracy",
    "reals_accuracy": "classifier on held-out reals",
    "per_class": "class accuracy per class",
}


def table(results: Sequence[dict[str, Any]], confidence: float = 0.9) -> str:
    """One markdown table: a row per run, then the median of every column over the runs."""
    rows = [
        r
        | {"swd_ratio": r["swd"] / r["swd_floor"]}
        | ({"read_ratio": r["read"] / r["reals_read"]} if "read" in r and r["reals_read"] else {})
        for r in results
    ]
    keys = [k for k in COLUMNS if any(k in r for r in rows)]
    header = ["run", *(COLUMNS[k].format(confidence=confidence) for k in keys)]

    def cell(value: float | dict[str, float]) -> str:
        if isinstance(value, dict):  # per class: "0 0.91, 1 0.12, ..."
            return ", ".join(f"{name} {v:.2f}" for name, v in value.items())
        return f"{value:.3g}"

    def cells(values: dict[str, Any]) -> list[str]:
        return [cell(values[k]) if k in values else "" for k in keys]

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join([r["run"], *cells(r)]) + " |" for r in rows]
    if len(rows) > 1:
        median = {
            k: statistics.median(r[k] for r in rows if k in r)
            for k in keys
            if k != "per_class" and any(k in r for r in rows)
        }
        lines.append("| " + " | ".join([f"median of {len(rows)}", *cells(median)]) + " |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> str:
    """Command line: measure every run given, print (and write) the table."""
    parser = argparse.ArgumentParser(
        description="How many samples a classifier trained on the reals reads clearly (or, "
        "for a conditional generator, as the class asked for), beside SWD and its floor."
    )
    parser.add_argument("runs", type=Path, nargs="+", help="run dirs or exports")
    parser.add_argument("--num-images", type=int, default=2048)
    parser.add_argument("--labels", default="digit", help="data.labels of the reals' classes")
    parser.add_argument("--confidence", type=float, default=0.9)
    parser.add_argument("--steps", type=int, default=1500, help="classifier training steps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=None, help="also write the table here")
    args = parser.parse_args(argv)
    results = [
        measure(
            run,
            args.num_images,
            args.labels,
            args.confidence,
            args.steps,
            args.seed,
            args.cache_dir,
        )
        for run in args.runs
    ]
    text = table(results, args.confidence)
    print(text, end="")
    if args.out is not None:
        args.out.write_text(text)
    return text


if __name__ == "__main__":
    main()
