"""Training-speed benchmark: ``python -m progan_lightning.bench [key=value ...]``.

For each stage resolution of the configured model it measures, on synthetic data:

- the training step (D step with its gradient penalty, G step, EMA update) in images/second,
- G_ema inference in images/second,
- the step's FLOPs, counted at the dispatch level with torch's formulas (``flops.py``),
- utilization: step FLOPs / median step time / the dense matmul peak measured in the same run,
- peak memory (CUDA: peak allocated; CPU: peak RSS above the RSS after building the model).

``bench.parts`` adds three more measurements:

- ``eqlr``: the three ways of applying the equalized-lr constant (scale the weight, the
  output or the input) timed forward + backward on every layer shape of the model,
- ``memory``: the largest per-device batch for each memory budget: measured CUDA peaks on a
  GPU; on the CPU computed from the bytes autograd saves for backward (a shape-only trace),
- ``data``: images/second of the training DataLoader per stage from the prepared cache, and
  of decoding the source files on the fly, against the step (``data/benchmark.py``).

The model is built from the same Hydra config as training (``conf/bench.yaml`` includes
``conf/train.yaml``), so ``model/precision``, ``model.channels_last``, ``trainer.benchmark``
and ``backend`` apply as in training, and the step is ``ProGAN.train_step`` itself, without
a Trainer. Results go to JSON files and, as markdown tables, into marked sections of
``docs/benchmarks.md`` (one section per part and device kind).
"""

from __future__ import annotations

import gc
import json
import logging
import math
import platform
import re
import statistics
import sys
import time
import weakref
from collections.abc import Callable, Iterable
from datetime import date
from functools import partial
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig
from torch import Tensor, nn

from progan_lightning.flops import count_flops
from progan_lightning.layers import EqualizedConv2d, EqualizedLinear, scale_output, scale_weight
from progan_lightning.module import ProGAN, float32_matmul_precision
from progan_lightning.schedule import check_resolution

log = logging.getLogger(__name__)

# The repository root; a relative ``bench.notes`` path is taken from here.
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = str(PROJECT_ROOT / "conf")

# Matmul side used for the peak when ``bench.matmul_size`` is null.
DEFAULT_MATMUL_SIZE = {"cpu": 4096, "cuda": 8192}

# Columns of the markdown table: (header, row key, format).
TABLE_COLUMNS = [
    ("res", "resolution", "{}"),
    ("batch", "batch", "{}"),
    ("train img/s", "train_img_s", "{:.1f}"),
    ("IQR", "train_img_s_iqr", "{:.1f}"),
    ("min-max", None, "{train_img_s_min:.1f}-{train_img_s_max:.1f}"),
    ("step ms", "train_step_ms", "{:.1f}"),
    ("GFLOP/img", "gflop_per_img", "{:.3f}"),
    ("GFLOP/s", "train_gflop_s", "{:.1f}"),
    ("util", "utilization", "{:.1%}"),
    ("G infer img/s", "g_infer_img_s", "{:.0f}"),
    ("peak MB", "peak_mem_mb", "{:.0f}"),
]

PARTS = ("stages", "eqlr", "memory", "data")
"""What ``bench.parts`` may list."""


def summarize(values: list[float]) -> dict[str, float]:
    """Median, interquartile range, min and max of repeated measurements."""
    ordered = sorted(values)
    if len(ordered) >= 2:
        q1, _, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    else:
        q1 = q3 = ordered[0]
    return {
        "median": statistics.median(ordered),
        "iqr": q3 - q1,
        "min": ordered[0],
        "max": ordered[-1],
    }


def pick_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else is passed to torch."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"bench.device={name} but CUDA is not available; use cpu or auto")
    return device


def device_name(device: torch.device) -> str:
    """A human-readable name of the processor behind ``device``."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_calls(
    fn: Callable[[], Any],
    device: torch.device,
    warmup: int,
    repeats: int,
    min_repeat_s: float,
) -> tuple[list[float], int]:
    """Seconds per call of ``fn``, one value per repeat.

    After ``warmup`` calls, one timed call sets how many calls a repeat makes so that each
    repeat lasts at least ``min_repeat_s`` (short steps are timed in bunches).

    Returns:
        Seconds per call for each repeat, and the calls per repeat.
    """
    for _ in range(warmup):
        fn()
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    once = time.perf_counter() - start
    calls = max(1, math.ceil(min_repeat_s / max(once, 1e-9)))
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        _sync(device)
        seconds.append((time.perf_counter() - start) / calls)
    return seconds, calls


def matmul_peak(
    device: torch.device,
    size: int,
    dtype: torch.dtype,
    repeats: int,
    min_repeat_s: float,
    allow_tf32: bool = False,
) -> float:
    """Median FLOP/s of a dense ``size x size`` matmul (``2 * size**3`` FLOPs per call).

    Args:
        device: Where to multiply.
        size: Side of the square matrices.
        dtype: Element type (float32, bfloat16, ...).
        repeats: Timed repeats; the median is returned.
        min_repeat_s: Shortest repeat; fast matmuls are timed in bunches.
        allow_tf32: On CUDA, let float32 matmuls use TF32 tensor cores.
    """
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    previous = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = allow_tf32
    try:
        seconds, _ = time_calls(lambda: a @ b, device, 1, repeats, min_repeat_s)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = previous
    return 2 * size**3 / statistics.median(seconds)


class PeakMemory:
    """Peak memory of the code between ``reset()`` and ``peak_mb()``.

    CUDA: ``torch.cuda.max_memory_allocated`` (model, optimizer state and activations).
    CPU: the process's peak resident set (``VmHWM``, reset through ``/proc/self/clear_refs``)
    minus its resident set when this object was made, i.e. after the model was built: it
    covers activations, optimizer state and whatever the allocator keeps cached. Where the
    peak cannot be reset, the process-lifetime peak (``ru_maxrss``) is used instead.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        if device.type == "cuda":
            self.kind = "peak CUDA memory allocated (model + optimizer state + activations)"
            self.baseline = 0.0
        else:
            self.kind = "peak RSS above the RSS after building the model (CPU)"
            self.baseline = self._status_mb("VmRSS")
            if not self._reset_hwm():
                self.kind = "process-lifetime peak RSS above the RSS after building the model"

    @staticmethod
    def _status_mb(field: str) -> float:
        try:
            text = Path("/proc/self/status").read_text()
        except OSError:
            import resource

            # No /proc: the process-lifetime peak (KiB on Linux) for both fields.
            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        match = re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE)
        return int(match.group(1)) / 1024 if match else 0.0

    @staticmethod
    def _reset_hwm() -> bool:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            return False
        return True

    def reset(self) -> None:
        """Start a new measurement window."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self._reset_hwm()

    def peak_mb(self) -> float:
        """Peak since ``reset()`` in MiB (see the class docstring for what it counts)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        return max(0.0, self._status_mb("VmHWM") - self.baseline)


def make_train_step(module: ProGAN, reals: Tensor) -> Callable[[], None]:
    """One training step, ``ProGAN.train_step`` itself (with the module's precision and
    memory format), with fresh optimizers (as after a phase change).

    Args:
        module: The LightningModule with ``stage`` and ``alpha`` already set.
        reals: A real batch at the stage resolution. [NCHW]

    Returns:
        A function running D step, G step and EMA update once.
    """
    opt_g = module.optimizer_factory(module.G.parameters())
    opt_d = module.optimizer_factory(module.D.parameters())
    return lambda: module.train_step(reals, opt_g, opt_d)


def set_stage(module: ProGAN, resolution: int, alpha: float) -> None:
    """Put ``module`` at the stage of ``resolution`` with fade weight ``alpha``."""
    module.stage = int(math.log2(resolution)) - 2
    module.alpha = float(alpha)


def fake_reals(module: ProGAN, resolution: int, batch: int, device: torch.device) -> Tensor:
    """Uniform noise in [-1, 1] shaped like a real batch. [NCHW]"""
    shape = (batch, module.G.img_channels, resolution, resolution)
    return torch.rand(shape, device=device) * 2 - 1


def stage_batches(cfg: DictConfig) -> dict[int, int]:
    """Resolution -> batch size to benchmark, from ``bench`` keys or the growth schedule."""
    schedule = hydra.utils.instantiate(cfg.growth).schedule
    batches = {p.resolution: p.batch_size for p in schedule.phases}
    resolutions = cfg.bench.resolutions
    if resolutions is None:
        resolutions = schedule.resolutions
    elif isinstance(resolutions, int):
        resolutions = [resolutions]
    for res in resolutions:
        check_resolution(res, "bench.resolutions[]")
        if res not in batches:
            raise ValueError(
                f"bench.resolutions has {res}, which the model config does not train "
                f"(resolutions: {schedule.resolutions}); pick from those or set data.resolution"
            )
    size = cfg.bench.batch_size
    if size is not None and (not isinstance(size, int) or size < 1):
        raise ValueError(f"bench.batch_size={size!r}; use a positive integer or null")
    return {res: batches[res] if size is None else size for res in resolutions}


def bench_stage(
    module: ProGAN,
    resolution: int,
    batch: int,
    bench: DictConfig,
    device: torch.device,
    memory: PeakMemory,
) -> dict[str, Any]:
    """Measure the training step and G inference at one resolution.

    Returns:
        A row of results (speeds, FLOPs, peak memory) without the device-wide fields.
    """
    set_stage(module, resolution, bench.alpha)
    step = make_train_step(module, fake_reals(module, resolution, batch, device))

    # Count the FLOPs once (this also creates the optimizer state), then time.
    flops = count_flops(step)
    _sync(device)
    memory.reset()
    step_s, calls = time_calls(step, device, bench.warmup, bench.repeats, bench.min_repeat_s)
    peak_mb = memory.peak_mb()

    z = torch.randn(batch, module.G.z_dim, device=device)
    with torch.inference_mode(), module.autocast():
        infer_s, _ = time_calls(
            lambda: module(z), device, bench.warmup, bench.repeats, bench.min_repeat_s
        )

    train = summarize([batch / s for s in step_s])
    infer = summarize([batch / s for s in infer_s])
    median_step = statistics.median(step_s)
    log.info(
        "%dx%d batch %d: %.1f img/s train (%.1f GFLOP/s), %.0f img/s G inference",
        resolution,
        resolution,
        batch,
        train["median"],
        flops / median_step / 1e9,
        infer["median"],
    )
    return {
        "resolution": resolution,
        "stage": module.stage,
        "alpha": module.alpha,
        "batch": batch,
        "train_img_s": train["median"],
        "train_img_s_iqr": train["iqr"],
        "train_img_s_min": train["min"],
        "train_img_s_max": train["max"],
        "train_step_ms": median_step * 1e3,
        "steps_per_repeat": calls,
        "g_infer_img_s": infer["median"],
        "g_infer_img_s_iqr": infer["iqr"],
        "g_infer_img_s_min": infer["min"],
        "g_infer_img_s_max": infer["max"],
        "gflop_per_img": flops / batch / 1e9,
        "train_gflop_s": flops / median_step / 1e9,
        "peak_mem_mb": peak_mb,
        "precision": module.precision,
        "channels_last": module.channels_last,
        "cudnn_benchmark": torch.backends.cudnn.benchmark,
    }


class SavedTensorMeter:
    """Live and peak bytes of the distinct storages autograd holds for backward.

    A context manager: every tensor saved for backward inside it (through
    ``torch.autograd.graph.saved_tensors_hooks``) counts once per storage, from when it is
    first saved until autograd lets go of its last reference (after the backward that used
    it). Storages of ``exclude`` (the parameters: fixed cost) are not counted. Works on every
    device, the shape-only ``meta`` device included.

    Attributes:
        bytes: Bytes held now.
        peak: Highest ``bytes`` so far.
    """

    def __init__(self, exclude: Iterable[Tensor] = ()) -> None:
        self._exclude = {_storage_key(t) for t in exclude}
        self._refs: dict[int, int] = {}  # storage -> saved references alive
        self.bytes = 0
        self.peak = 0
        self._hooks = torch.autograd.graph.saved_tensors_hooks(self._pack, _unpack)

    def __enter__(self) -> SavedTensorMeter:
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._hooks.__exit__(*exc)

    def _pack(self, tensor: Tensor) -> Any:
        key = _storage_key(tensor)
        if key in self._exclude:
            return tensor
        nbytes = tensor.untyped_storage().nbytes()
        if key not in self._refs:
            self._refs[key] = 0
            self.bytes += nbytes
            self.peak = max(self.peak, self.bytes)
        self._refs[key] += 1
        saved = _Saved(tensor)
        weakref.finalize(saved, self._release, key, nbytes)
        return saved

    def _release(self, key: int, nbytes: int) -> None:
        self._refs[key] -= 1
        if not self._refs[key]:
            del self._refs[key]
            self.bytes -= nbytes


class _Saved:
    """What autograd keeps for a counted tensor; its death marks the tensor released."""

    __slots__ = ("__weakref__", "tensor")

    def __init__(self, tensor: Tensor) -> None:
        self.tensor = tensor


def _unpack(saved: Any) -> Tensor:
    return saved.tensor if isinstance(saved, _Saved) else saved


def _storage_key(tensor: Tensor) -> int:
    # The storage's own address: views share it, and it also works on the meta device.
    return tensor.untyped_storage()._cdata


def step_memory(module: ProGAN, resolution: int, batch: int) -> tuple[int, int]:
    """Bytes of one training step at ``batch`` images, on the module's device.

    Returns:
        The peak of the activations saved for backward (D step with gradient penalty, then G
        step; parameters excluded), and the training state: G, D and G_ema weights plus, for
        every weight the step trained, its gradient and Adam's two moments.
    """
    set_stage(module, resolution, 1.0)
    module.zero_grad(set_to_none=True)
    step = make_train_step(module, fake_reals(module, resolution, batch, module.device))
    with SavedTensorMeter(exclude=module.parameters()) as meter:
        step()
    trained = [p for p in module.parameters() if p.grad is not None]
    state = sum(p.numel() * p.element_size() for p in [*module.parameters(), *trained * 3])
    return meter.peak, state


def max_batches(
    fixed: float, per_image: float, budgets_gb: Iterable[float], reserve: float
) -> dict[str, int]:
    """Largest batch with ``fixed + per_image * batch <= (1 - reserve) * budget`` per budget."""
    return {
        f"max_batch_{gb:g}gb": max(0, math.floor(((1 - reserve) * gb * 2**30 - fixed) / per_image))
        for gb in budgets_gb
    }


def memory_row(
    resolution: int, batch: int, fixed: float, per_image: float, bench: DictConfig
) -> dict[str, Any]:
    """One row of the memory table from the fixed and per-image bytes."""
    row = {
        "resolution": resolution,
        "batch": batch,
        "fixed_mb": fixed / 2**20,
        "per_image_mb": per_image / 2**20,
        **max_batches(fixed, per_image, bench.memory_budgets_gb, bench.memory_reserve),
    }
    log.info("memory %dx%d: %s", resolution, resolution, row)
    return row


def computed_memory_table(cfg: DictConfig, batches: dict[int, int]) -> list[dict[str, Any]]:
    """Largest per-device batch per budget, computed from the activations saved for backward.

    The step runs on the ``meta`` device (shapes only, no arithmetic; the saved tensors are
    those of any device: autograd decides them above the kernels). Its peak of saved bytes
    is taken at ``b`` and ``2b`` images, which separates a per-image cost from a fixed one;
    the fixed cost adds the training state (see :func:`step_memory`). Not counted: the
    transient gradients of the backward pass, the CUDA context and allocator slack, which is
    what ``bench.memory_reserve`` leaves free.
    """
    module: ProGAN = hydra.utils.instantiate(cfg.model).to("meta")
    if module.precision != "fp32":
        raise ValueError(
            f"model.precision={module.precision}: the computed memory table traces float32 "
            "only (autocast needs a real device); use model/precision=fp32 or a GPU"
        )
    rows = []
    for resolution, batch in batches.items():
        (small, state), (large, _) = (
            step_memory(module, resolution, n) for n in (batch, 2 * batch)
        )
        per_image = (large - small) / batch
        fixed = state + small - per_image * batch
        rows.append(memory_row(resolution, batch, fixed, per_image, cfg.bench))
    return rows


def measured_memory_table(
    cfg: DictConfig, batches: dict[int, int], device: torch.device
) -> list[dict[str, Any]]:
    """Largest per-device batch per budget, from CUDA peaks measured at ``b`` and ``2b`` images.

    Measured on a fresh model after freeing everything else, with cuDNN autotuning off (its
    workspaces change with the batch), so that the peak is ``fixed + per_image * batch``. A
    batch that runs out of memory is halved.
    """
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = False
    gc.collect()
    torch.cuda.empty_cache()
    module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
    rows = []
    try:
        for resolution, batch in batches.items():
            peaks = None
            while peaks is None:
                try:
                    peaks = [_cuda_step_peak(module, resolution, n) for n in (batch, 2 * batch)]
                except torch.cuda.OutOfMemoryError:
                    if batch == 1:
                        raise
                    batch //= 2
                finally:
                    gc.collect()
                    torch.cuda.empty_cache()
            per_image = (peaks[1] - peaks[0]) / batch
            fixed = peaks[0] - per_image * batch
            rows.append(memory_row(resolution, batch, fixed, per_image, cfg.bench))
    finally:
        torch.backends.cudnn.benchmark = benchmark
    return rows


def _cuda_step_peak(module: ProGAN, resolution: int, batch: int) -> int:
    """Peak CUDA memory allocated during the second of two training steps (the first one
    creates the optimizer state and the gradients)."""
    set_stage(module, resolution, 1.0)
    module.zero_grad(set_to_none=True)
    step = make_train_step(module, fake_reals(module, resolution, batch, module.device))
    step()
    torch.cuda.synchronize(module.device)
    torch.cuda.reset_peak_memory_stats(module.device)
    step()
    torch.cuda.synchronize(module.device)
    return torch.cuda.max_memory_allocated(module.device)


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


# Device kind -> (how the memory table was obtained, the details).
MEMORY_SOURCES = {
    "cuda": (
        "measured on a GPU",
        "Peak CUDA memory allocated (`torch.cuda.max_memory_allocated`) in a training step at "
        "batch b and 2b, on a fresh model with cuDNN autotuning off.",
    ),
    "cpu": (
        "computed from CPU-measured saved activations, not measured on a GPU",
        "Bytes that autograd saves for backward during one training step (D step with "
        "gradient penalty, G step) at batch b and 2b, traced on the meta device (shapes only; "
        "the same tensors as on the CPU), plus weights, gradients, Adam moments and G_ema.",
    ),
}


def format_memory_section(
    rows: list[dict[str, Any]], bench: DictConfig, device_kind: str, command: str
) -> str:
    """The memory table as a markdown section, labelled with how it was obtained."""
    budgets = list(bench.memory_budgets_gb)
    title, details = MEMORY_SOURCES[device_kind]
    head = "| res | b | fixed MB | MB per image | " + " | ".join(f"{gb:g} GB" for gb in budgets)
    lines = [
        f"### Largest per-device batch, {device_kind.upper()}: {title}",
        "",
        f"{date.today().isoformat()}, torch {torch.__version__}. {details} A batch fits when "
        f"fixed + per image x batch <= {1 - bench.memory_reserve:.0%} of the budget.",
        "",
        f"```\n{command}\n```",
        "",
        head + " |",
        "|" + "---:|" * (4 + len(budgets)),
    ]
    for r in rows:
        cells = [str(r[f"max_batch_{gb:g}gb"]) for gb in budgets]
        lines.append(
            f"| {r['resolution']} | {r['batch']} | {r['fixed_mb']:.0f} | "
            f"{r['per_image_mb']:.1f} | " + " | ".join(cells) + " |"
        )
    return "\n".join(lines) + "\n"


def format_rate(flop_s: float) -> str:
    """A FLOP rate in GFLOP/s or, from 1000 GFLOP/s on, TFLOP/s."""
    return f"{flop_s / 1e12:.1f} TFLOP/s" if flop_s >= 1e12 else f"{flop_s / 1e9:.1f} GFLOP/s"


def format_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| " + " | ".join(h for h, _, _ in TABLE_COLUMNS) + " |",
        "|" + "|".join("---:" for _ in TABLE_COLUMNS) + "|",
    ]
    for row in rows:
        cells = [
            fmt.format(row[key]) if key else fmt.format(**row) for _, key, fmt in TABLE_COLUMNS
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def format_section(rows: list[dict[str, Any]], command: str) -> str:
    """The notes section for one device kind: header, command, peak, table."""
    first = rows[0]
    peaks = ", ".join(
        f"{dtype} {format_rate(tflop_s * 1e12)}"
        for dtype, tflop_s in first["matmul_tflop_s"].items()
    )
    return "\n".join(
        [
            f"### {first['device_kind'].upper()}: {first['device']}",
            "",
            f"{date.today().isoformat()}, torch {first['torch']}, {first['threads']} threads, "
            f"alpha {first['alpha']:g}.",
            "",
            "```",
            command,
            "```",
            "",
            f"Dense matmul peak ({first['matmul_size']}x{first['matmul_size']}, median of the "
            f"repeats, higher of before and after the stages): {peaks}."
            f" Utilization is against {first['matmul_peak_dtype']}."
            f" Memory: {first['peak_mem_kind']}.",
            "",
            format_table(rows),
        ]
    )


def update_notes(path: Path, kind: str, section: str) -> None:
    """Replace the ``<!-- bench:KIND -->`` section of ``path`` (appended when missing)."""
    start, end = f"<!-- bench:{kind} -->", f"<!-- /bench:{kind} -->"
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    block = f"{start}\n{section}\n{end}"
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def command_line() -> str:
    """The command that reproduces this run."""
    overrides = (
        list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else sys.argv[1:]
    )
    return " ".join(["python -m progan_lightning.bench", *overrides])


# Matmul peak name -> (dtype, TF32 allowed).
PEAK_DTYPES: dict[str, tuple[torch.dtype, bool]] = {
    "fp32": (torch.float32, False),
    "tf32": (torch.float32, True),
    "bf16": (torch.bfloat16, False),
    "fp16": (torch.float16, False),
}


def peak_reference(device: torch.device, precision: str) -> str:
    """The matmul peak the step is compared with: its compute dtype (on CUDA TF32 for
    float32 when cuDNN allows it). fp16 on the CPU is compared with fp32: CPU fp16 matmuls
    are not a reference (hundreds of times slower than fp32 where no fp16 units exist)."""
    if device.type == "cuda":
        if precision != "fp32":
            return precision
        return "tf32" if torch.backends.cudnn.allow_tf32 else "fp32"
    return "bf16" if precision == "bf16" else "fp32"


def measure_peaks(
    device: torch.device, size: int, bench: DictConfig, reference: str
) -> dict[str, float]:
    """Dense ``size x size`` matmul peaks in FLOP/s: fp32, on CUDA also TF32 and bf16, and
    the ``reference`` one."""
    names = ["fp32", "tf32", "bf16"] if device.type == "cuda" else ["fp32"]
    names += [] if reference in names else [reference]
    timing = (bench.repeats, bench.min_repeat_s)
    peaks = {}
    for name in names:
        dtype, tf32 = PEAK_DTYPES[name]
        peaks[name] = matmul_peak(device, size, dtype, *timing, allow_tf32=tf32)
    log.info(
        "Matmul peak (%dx%d): %s",
        size,
        size,
        ", ".join(f"{k} {format_rate(v)}" for k, v in peaks.items()),
    )
    return peaks


def measure(cfg: DictConfig, device: torch.device, batches: dict[int, int]) -> list[dict]:
    """Every stage between two matmul-peak measurements: the rows of the ``stages`` part.

    The peak is timed before and after the stages and the higher of the two is used, so that
    a burst of load from other processes lowers the utilization rather than inflating it.
    """
    bench = cfg.bench
    size = bench.matmul_size or DEFAULT_MATMUL_SIZE.get(device.type, 4096)
    reference = peak_reference(device, cfg.model.get("precision", "fp32"))
    before = measure_peaks(device, size, bench, reference)
    module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
    memory = PeakMemory(device)
    stages = [
        bench_stage(module, resolution, batch, bench, device, memory)
        for resolution, batch in batches.items()
    ]
    after = measure_peaks(device, size, bench, reference)
    peaks = {k: max(before[k], after[k]) for k in before}
    common = {
        "device_kind": device.type,
        "device": device_name(device),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul_size": size,
        "matmul_tflop_s": {k: v / 1e12 for k, v in peaks.items()},
        "matmul_tflop_s_before": {k: v / 1e12 for k, v in before.items()},
        "matmul_tflop_s_after": {k: v / 1e12 for k, v in after.items()},
        "matmul_peak_dtype": reference,
        "peak_mem_kind": memory.kind,
        "warmup": bench.warmup,
        "repeats": bench.repeats,
    }
    return [
        {**common, **stage, "utilization": stage["train_gflop_s"] * 1e9 / peaks[reference]}
        for stage in stages
    ]


def check_bench(bench: DictConfig) -> list[str]:
    """Fail early on bench settings that cannot work; return the parts to run."""
    if bench.repeats < 1 or bench.warmup < 0:
        raise ValueError(
            f"bench.repeats={bench.repeats} / bench.warmup={bench.warmup}; "
            "use repeats >= 1 and warmup >= 0"
        )
    parts = [bench.parts] if isinstance(bench.parts, str) else list(bench.parts)
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ValueError(f"bench.parts={parts}; use a non-empty list of {', '.join(PARTS)}")
    if "memory" in parts and not (0 <= bench.memory_reserve < 1 and bench.memory_budgets_gb):
        raise ValueError(
            f"bench.memory_budgets_gb={bench.memory_budgets_gb} / bench.memory_reserve="
            f"{bench.memory_reserve}; give budgets in GB (e.g. [16, 24, 40, 80]) and a "
            "reserve in [0, 1)"
        )
    return parts


def run(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """Run the parts of ``bench.parts``; write their JSON files and notes sections.

    Args:
        cfg: The composed ``bench`` config (``train`` plus the ``bench`` keys).

    Returns:
        The rows of each part that ran: ``stages`` (one per resolution), ``eqlr`` (one per
        layer shape), ``memory`` (one per resolution).
    """
    bench = cfg.bench
    parts = check_bench(bench)
    device = pick_device(str(bench.device))
    # The training switches, as train() applies them.
    torch.backends.cudnn.benchmark = bool(cfg.trainer.get("benchmark"))
    setting = (cfg.get("backend") or {}).get("float32_matmul_precision")
    torch.set_float32_matmul_precision(float32_matmul_precision(setting, device.type))
    batches = stage_batches(cfg)
    if cfg.get("seed") is not None:
        torch.manual_seed(cfg.seed)
    threads = torch.get_num_threads()
    if bench.threads is not None:
        torch.set_num_threads(int(bench.threads))
    results: dict[str, list[dict[str, Any]]] = {}
    sections: dict[str, str] = {}
    command = command_line()
    try:
        if "stages" in parts:
            results["stages"] = measure(cfg, device, batches)
            log.info("\n%s", format_table(results["stages"]))
            sections[device.type] = format_section(results["stages"], command)
        if "eqlr" in parts:
            module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
            results["eqlr"] = eqlr_compare(module, batches, bench)
            sections[f"eqlr-{device.type}"] = format_eqlr_section(results["eqlr"], device, command)
            del module
        if "memory" in parts:
            if device.type == "cuda":
                results["memory"] = measured_memory_table(cfg, batches, device)
            else:
                results["memory"] = computed_memory_table(cfg, batches)
            sections[f"memory-{device.type}"] = format_memory_section(
                results["memory"], bench, device.type, command
            )
        if "data" in parts:
            from progan_lightning.data.benchmark import data_section

            steps = {row["resolution"]: row["train_img_s"] for row in results.get("stages", [])}
            results["data"], section = data_section(cfg, device, batches, steps)
            kind = f"data-{device.type}-{cfg.data.resolution}"
            sections[kind] = f"{section}\n\n```\n{command}\n```"
    finally:
        torch.set_num_threads(threads)

    if bench.out:
        out = Path(bench.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        for part, rows in results.items():
            path = out if part == "stages" else out.with_suffix(f".{part}.json")
            path.write_text(json.dumps(rows, indent=2) + "\n")
            log.info("Wrote %s", path)
    if bench.notes:
        notes = Path(bench.notes)
        notes = notes if notes.is_absolute() else PROJECT_ROOT / notes
        for kind, section in sections.items():
            update_notes(notes, kind, section)
        log.info("Updated %s", notes)
    return results


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of the benchmark."""
    run(cfg)


if __name__ == "__main__":
    main()
