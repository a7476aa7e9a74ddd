"""The equalized-lr study: every form computes the same function, and the study times each form
on every layer shape of the configured model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from benchmarks.eqlr import EQLR_FORMS, run_study
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.layers import EqualizedConv2d, EqualizedLinear

TINY = [
    "model.G.z_dim=16",
    "model.G.fmap_base=32",
    "model.G.fmap_max=16",
    "data.resolution=8",
    "bench.device=cpu",
    "bench.threads=1",
    "bench.warmup=1",
    "bench.repeats=2",
    "bench.min_repeat_s=0",
]


@pytest.fixture(autouse=True)
def _clear_hydra() -> Iterator[None]:
    yield
    GlobalHydra.instance().clear()


@pytest.mark.parametrize(
    "layer",
    [EqualizedConv2d(5, 4, 3), EqualizedConv2d(5, 4, 1, bias=False), EqualizedLinear(6, 3)],
    ids=["conv", "conv1x1-no-bias", "linear"],
)
def test_eqlr_forms_compute_the_same_outputs_and_gradients(layer) -> None:
    # The benchmark compares like with like: every form is the same function.
    x = torch.randn((2, 5, 6, 6) if isinstance(layer, EqualizedConv2d) else (2, 6))
    w = torch.randn_like(layer.weight)
    b = None if layer.bias is None else torch.randn_like(layer.bias)
    results = []
    for form in EQLR_FORMS.values():
        inputs = [t.clone().requires_grad_(True) for t in (x, w, *([b] if b is not None else []))]
        out = form(layer.op, inputs[0], inputs[1], inputs[2] if b is not None else None, 0.3)
        out.square().sum().backward()
        results.append([out, *(t.grad for t in inputs)])
    for other in results[1:]:
        for a, b_ in zip(results[0], other, strict=True):
            torch.testing.assert_close(b_, a)


def test_the_study_times_every_layer_shape(tmp_path: Path) -> None:
    out, notes = tmp_path / "eqlr.json", tmp_path / "results.md"
    overrides = [*TINY, "bench.resolutions=[8]", f"bench.out={out}", f"bench.notes={notes}"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("bench", overrides=overrides)
    rows = run_study(cfg)
    layers = {r["layer"] for r in rows}
    # G: dense, 4x4 conv, 8x8 convs, toRGB; D: fromRGB, convs, dense layers.
    assert {"Linear 16->256", "Conv2d 8->3 1x1", "Conv2d 3->8 1x1", "Conv2d 8->8 3x3"} <= layers
    assert all(r[f"{form}_ms"] > 0 for r in rows for form in EQLR_FORMS)
    # One G + D forward at 8x8 runs 5 equalized layers in G and 6 in D.
    assert sum(r["uses"] for r in rows) == 11
    assert json.loads(out.read_text()) == json.loads(json.dumps(rows))
    text = notes.read_text()
    assert "<!-- bench:eqlr-cpu -->" in text and "python -m benchmarks.eqlr" in text
