"""The evaluate command: the floor (reals vs reals) is small, an untrained generator large."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import FIXTURES, run_command
from progan_lightning.data.sources import ShapesSource
from progan_lightning.evaluate import fake_labels
from progan_lightning.export import export_generator
from progan_lightning.metrics.offline import disjoint_subsets
from progan_lightning.networks import Generator

# The shapes (RGB, 8 kinds): the generators below draw 3 channels.
DATA = [
    "data=shapes",
    "data.resolution=16",
    "data.source.num_images=1024",
    "num_images=512",
    "metrics=swd",
]


def evaluate(tmp_path: Path, cache_dir: Path, *args: str) -> dict:
    run = tmp_path / f"run{len(list(tmp_path.glob('run*')))}"
    where = [f"hydra.run.dir={run}", f"paths.cache_dir={cache_dir}", "device=cpu"]
    proc = run_command("evaluate", *DATA, *args, *where, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((run / "evaluate.json").read_text())


@pytest.mark.slow
def test_floor_is_small_and_an_untrained_generator_large(tmp_path: Path, cache_dir: Path):
    floor = evaluate(tmp_path, cache_dir)  # source=reals
    assert floor["source"] == "reals" and floor["resolution"] == 16
    export = tmp_path / "untrained.safetensors"
    export_generator(Generator(16, z_dim=16, fmap_base=64, fmap_max=16), export)
    untrained = evaluate(tmp_path, cache_dir, f"source={export}")
    assert 0 < floor["metrics/swd_avg"] < untrained["metrics/swd_avg"] / 4


def test_disjoint_subsets_are_disjoint_and_checked():
    a, b = disjoint_subsets(100, 40, 2, seed=1)
    assert len(set(a) | set(b)) == 80 and np.all(np.diff(a) > 0)
    with pytest.raises(ValueError, match=r"num_images=60 needs 120 images .* holds 100"):
        disjoint_subsets(100, 60, 2, seed=1)


def test_a_conditional_generator_is_scored_with_the_reals_class_mix(
    tmp_path: Path, cache_dir: Path
):
    kinds = list(ShapesSource.KINDS)
    export = tmp_path / "conditional.safetensors"
    G = Generator(16, z_dim=16, fmap_base=64, fmap_max=16, num_classes=len(kinds))
    export_generator(G, export, class_names=kinds)
    scored = evaluate(
        tmp_path,
        cache_dir,
        f"source={export}",
        "data.labels=kind",
        "class_accuracy.steps=20",
        "class_accuracy.per_class=8",
    )
    assert np.isfinite(scored["metrics/swd_avg"])
    per_class = [scored[f"class_accuracy/{kind}"] for kind in kinds]
    assert scored["class_accuracy/fakes"] == pytest.approx(np.mean(per_class))
    assert 0 <= scored["class_accuracy/reals_held_out"] <= 1


def test_fake_labels_are_the_reals_and_need_the_same_classes():
    G = Generator(8, z_dim=8, fmap_base=32, fmap_max=8, num_classes=2)
    G.class_names = ["a", "b"]
    data = SimpleNamespace(class_names=["a", "b"], labels=np.array([1, 0, 1, 1, 0]))
    assert fake_labels(G, data, np.array([4, 0, 2])).tolist() == [0, 1, 1]
    G.class_names = []
    assert fake_labels(G, data, np.array([4])) is None
    G.class_names = ["a", "b"]
    unlabelled = SimpleNamespace(class_names=[], labels=None)
    with pytest.raises(ValueError, match=r"the data has no labels; .* data\.labels=kind"):
        fake_labels(G, unlabelled, np.array([0]))


def refused_evaluate(tmp_path: Path, *args: str) -> str:
    """``progan-evaluate ARGS``: refused in one line with exit status 2; that line."""
    proc = run_command("evaluate", *args, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    errors = [line for line in proc.stderr.splitlines() if line.startswith("Error:")]
    assert proc.returncode == 2 and len(errors) == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return errors[0]


@pytest.mark.parametrize(
    ("data", "fix"),
    [
        (["data.channels=1"], "data.channels=3"),  # an RGB generator on grayscale data
        (["data.resolution=16"], "data.resolution=32"),  # above the data's resolution
    ],
)
def test_a_generator_that_does_not_fit_the_data_names_the_setting(
    tmp_path: Path, data: list[str], fix: str
):
    pickle = FIXTURES / "official-progan" / "tiny32.pkl"  # RGB, 32 x 32
    args = [f"source={pickle}", "data=shapes", "data.resolution=32", *data]
    line = refused_evaluate(tmp_path, *args, f"paths.cache_dir={tmp_path / 'cache'}")
    assert fix in line and "prepare_cache" not in line
    assert not (tmp_path / "cache").exists()  # refused before the data is prepared


@pytest.mark.skipif(
    importlib.util.find_spec("torch_fidelity") is not None, reason="torch-fidelity installed"
)
def test_fid_without_its_extra_names_the_install_command(tmp_path: Path):
    args = ["metrics=fid", "data=shapes", "data.source.num_images=64", "num_images=16"]
    line = refused_evaluate(tmp_path, *args, f"paths.cache_dir={tmp_path / 'cache'}")
    assert 'pip install -e ".[fid]"' in line
