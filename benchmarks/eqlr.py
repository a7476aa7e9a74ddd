"""Equalized-lr forms: the three ways of applying the equalized-lr constant, timed forward +
backward on every layer shape of the model (the design study behind ``layers.py``'s choice).

    python -m benchmarks.eqlr [progan-bench overrides ...]

The model, batches and timing settings are ``progan-bench``'s (``conf/bench.yaml``). The
markdown section goes into ``benchmarks/results.md`` of this checkout (``bench.notes=PATH``
picks another file), the rows into ``bench.out`` when it names a file.
"""

from __future__ import annotations

import json
import logging
import statistics
from collections.abc import Callable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, open_dict
from torch import Tensor, nn

from benchmarks.notes import notes_path
from progan_lightning.bench.plan import stage_batches
from progan_lightning.bench.report import command_line, update_notes
from progan_lightning.bench.step import set_stage
from progan_lightning.bench.timing import device_name, time_calls
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.cli.errors import user_errors
from progan_lightning.devices import resolve_device
from progan_lightning.layers import EqualizedConv2d, EqualizedLinear, scale_output, scale_weight
from progan_lightning.module import ProGAN

log = logging.getLogger(__name__)

RESULTS = "benchmarks/results.md"
"""Where the study's section goes, relative to the checkout."""


def _scale_input(op: Callable, x: Tensor, w: Tensor, b: Tensor | None, c: float) -> Tensor:
    return op(x * c, w, b)


EQLR_FORMS: dict[str, Callable[..., Tensor]] = {
    "weight": scale_weight,  # op(x, w * c) + b: a weight-sized multiply (the convolutions)
    "output": scale_output,  # b + c * op(x, w): an output-sized multiply-add (dense layers)
    "input": _scale_input,  # op(x * c, w) + b: an input-sized multiply
}
"""The ways of applying the equalized-lr constant ``c``: ``form(op, x, w, b, c)``."""


def layer_inputs(
    module: ProGAN, resolution: int, batch: int
) -> list[tuple[EqualizedConv2d | EqualizedLinear, torch.Size, int]]:
    """Every distinct (layer shape, input shape) of G and D at ``resolution`` with ``batch``,
    and how often one G forward plus one D forward calls it."""
    uses: dict[tuple, list] = {}

    def record(layer: nn.Module, args: tuple) -> None:
        key = (type(layer), tuple(layer.weight.shape), tuple(args[0].shape))
        uses.setdefault(key, [layer, args[0].shape, 0])[2] += 1

    layers = [m for m in module.modules() if isinstance(m, EqualizedConv2d | EqualizedLinear)]
    handles = [m.register_forward_pre_hook(record) for m in layers]
    set_stage(module, resolution, 1.0)
    try:
        with torch.no_grad():
            z = torch.randn(batch, module.G.z_dim, device=module.device)
            module.D(module.G(z, module.stage), module.stage)
    finally:
        for handle in handles:
            handle.remove()
    return [tuple(v) for v in uses.values()]


def layer_shape(layer: EqualizedConv2d | EqualizedLinear) -> str:
    """``in->out`` channels or features, with ``kxk`` for a convolution."""
    out_ch, in_ch, *kernel = layer.weight.shape
    return f"{in_ch}->{out_ch}" + (f" {kernel[0]}x{kernel[1]}" if kernel else "")


def time_eqlr_forms(
    layer: EqualizedConv2d | EqualizedLinear, shape: torch.Size, bench: DictConfig
) -> dict[str, float]:
    """Median seconds of forward + backward of each :data:`EQLR_FORMS` entry on ``layer``'s
    weights and an input of ``shape``, the forms timed in turn within each repeat."""
    device = layer.weight.device
    op, c = layer.op, layer.scale
    x = torch.randn(shape, device=device, requires_grad=True)
    w = layer.weight.detach().clone().requires_grad_(True)
    b = None if layer.bias is None else layer.bias.detach().clone().requires_grad_(True)
    grad = torch.randn_like(scale_weight(op, x, w, b, c))

    def call(form: Callable[..., Tensor]) -> None:
        form(op, x, w, b, c).backward(grad)

    times: dict[str, list[float]] = {name: [] for name in EQLR_FORMS}
    for r in range(bench.repeats):
        for name, form in EQLR_FORMS.items():
            warmup = bench.warmup if r == 0 else 0
            seconds, _ = time_calls(partial(call, form), device, warmup, 1, bench.min_repeat_s)
            times[name] += seconds
    return {name: statistics.median(t) for name, t in times.items()}


def eqlr_compare(module: ProGAN, batches: dict[int, int], bench: DictConfig) -> list[dict]:
    """Forward + backward time of each :data:`EQLR_FORMS` entry on every layer shape of the
    model (gradients for input, weight and bias, as in training).

    Returns:
        One row per (resolution, layer shape): milliseconds per call of each form (median of
        ``bench.repeats``) and the uses per G + D forward.
    """
    rows = []
    for resolution, batch in batches.items():
        for layer, shape, uses in layer_inputs(module, resolution, batch):
            seconds = time_eqlr_forms(layer, shape, bench)
            row = {
                "resolution": resolution,
                "layer": f"{type(layer).__name__.removeprefix('Equalized')} {layer_shape(layer)}",
                "input": list(shape),
                "uses": uses,
                **{f"{name}_ms": t * 1e3 for name, t in seconds.items()},
            }
            log.info("eqlr %s", row)
            rows.append(row)
    return rows


def format_eqlr_section(rows: list[dict[str, Any]], device: torch.device, command: str) -> str:
    """The equalized-lr comparison as a markdown section, with use-weighted totals."""
    forms = list(EQLR_FORMS)
    lines = [
        f"### Equalized-lr forms, {device.type.upper()}: {device_name(device)}",
        "",
        f"{date.today().isoformat()}, torch {torch.__version__}, {torch.get_num_threads()} "
        "threads. Forward + backward (grads for input, weight and bias), ms per call, "
        "median of the repeats; the forms run in turn within each repeat.",
        "",
        f"```\n{command}\n```",
        "",
        "| res | layer | input | uses | " + " | ".join(f"{f} ms" for f in forms) + " |",
        "|---:|---|---|---:|" + "---:|" * len(forms),
    ]
    totals = dict.fromkeys(forms, 0.0)
    for r in rows:
        for f in forms:
            totals[f] += r[f"{f}_ms"] * r["uses"]
        cells = " | ".join(f"{r[f + '_ms']:.3f}" for f in forms)
        shape = "x".join(map(str, r["input"]))
        lines.append(f"| {r['resolution']} | {r['layer']} | {shape} | {r['uses']} | {cells} |")
    cells = " | ".join(f"**{totals[f]:.1f}**" for f in forms)
    lines.append(f"| all | sum of ms x uses | | | {cells} |")
    return "\n".join(lines) + "\n"


def run_study(cfg: DictConfig) -> list[dict[str, Any]]:
    """Time the forms on the composed ``bench`` config's model; write the rows to
    ``bench.out`` and the section to ``bench.notes`` where they name a file.

    Returns:
        The rows of :func:`eqlr_compare`.
    """
    bench = cfg.bench
    device = resolve_device(str(bench.device), "bench.device")
    threads = torch.get_num_threads()
    if bench.threads is not None:
        torch.set_num_threads(int(bench.threads))
    try:
        module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
        rows = eqlr_compare(module, stage_batches(cfg), bench)
    finally:
        torch.set_num_threads(threads)
    section = format_eqlr_section(
        rows, device, command_line().replace("progan_lightning.bench", "benchmarks.eqlr")
    )
    log.info("\n%s", section)
    if bench.out:
        out = Path(str(bench.out))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")
    if bench.notes:
        update_notes(Path(str(bench.notes)), f"eqlr-{device.type}", section)
    return rows


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
@user_errors
def main(cfg: DictConfig) -> None:
    """``python -m benchmarks.eqlr``: the study, its section into ``benchmarks/results.md``."""
    with open_dict(cfg):
        cfg.bench.notes = str(notes_path(cfg.bench.notes or RESULTS))
    run_study(cfg)


if __name__ == "__main__":
    main()
