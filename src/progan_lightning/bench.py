"""Training-speed benchmark: ``python -m progan_lightning.bench [key=value ...]``.

For each stage resolution of the configured model it measures, on synthetic data:

- the training step (D step with its gradient penalty, G step, EMA update) in images/second,
- G_ema inference in images/second,
- the step's FLOPs, counted at the dispatch level with torch's formulas (``flops.py``),
- utilization: step FLOPs / median step time / the dense matmul peak measured in the same run,
- peak memory (CUDA: peak allocated; CPU: peak RSS above the RSS after building the model).

The model is built from the same Hydra config as training (``conf/bench.yaml`` includes
``conf/train.yaml``) and the step reuses the module's own pieces (``discriminator_loss``,
``generator_loss``, ``update_ema``, ``optimizer_factory``) in the order of
``ProGAN.training_step``, without a Trainer. Results go to a JSON file and, as a markdown
table, into a marked section of ``docs/benchmarks.md`` (one section per device kind).
"""

from __future__ import annotations

import json
import logging
import math
import platform
import re
import statistics
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from progan_lightning.flops import count_flops
from progan_lightning.module import ProGAN
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


# bench.precision -> autocast dtype (None: full float32, as trainer.precision=32-true).
PRECISIONS: dict[str, torch.dtype | None] = {"32": None, "bf16": torch.bfloat16}


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


def make_train_step(
    module: ProGAN, reals: torch.Tensor, dtype: torch.dtype | None = None
) -> Callable[[], None]:
    """One training step, ``ProGAN.train_step`` itself, with fresh optimizers (as after a
    phase change).

    Args:
        module: The LightningModule with ``stage`` and ``alpha`` already set.
        reals: A real batch at the stage resolution. [NCHW]
        dtype: Autocast dtype (``torch.bfloat16``) or None for full precision.

    Returns:
        A function running D step, G step and EMA update once.
    """
    opt_g = module.optimizer_factory(module.G.parameters())
    opt_d = module.optimizer_factory(module.D.parameters())

    def step() -> None:
        with autocast(reals.device, dtype):
            module.train_step(reals, opt_g, opt_d)

    return step


def autocast(device: torch.device, dtype: torch.dtype | None) -> torch.autocast:
    """Mixed precision as Lightning's ``bf16-mixed``/``16-mixed`` runs it (off for None)."""
    return torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)


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
    module.stage = int(math.log2(resolution)) - 2
    module.alpha = float(bench.alpha)
    channels = module.G.img_channels
    reals = torch.rand(batch, channels, resolution, resolution, device=device) * 2 - 1
    if bench.channels_last:
        reals = reals.contiguous(memory_format=torch.channels_last)
    dtype = PRECISIONS[str(bench.precision)]
    step = make_train_step(module, reals, dtype)

    # Count the FLOPs once (this also creates the optimizer state), then time.
    flops = count_flops(step)
    _sync(device)
    memory.reset()
    step_s, calls = time_calls(step, device, bench.warmup, bench.repeats, bench.min_repeat_s)
    peak_mb = memory.peak_mb()

    z = torch.randn(batch, module.G.z_dim, device=device)
    with torch.inference_mode(), autocast(device, dtype):
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
        "precision": str(bench.precision),
        "channels_last": bool(bench.channels_last),
    }


def memory_table(
    module: ProGAN, batches: dict[int, int], bench: DictConfig, device: torch.device
) -> list[dict[str, Any]]:
    """Largest per-device batch that fits each memory budget, from measured CUDA peaks.

    The peak of a training step is measured at batch ``b`` and ``2b``; peak memory is
    linear in the batch (weights, optimizer state and workspace fixed, activations per
    image), so ``fixed + per_image * batch <= 0.9 * budget`` gives the largest batch (10%
    is left for the CUDA context and fragmentation).
    """
    dtype = PRECISIONS[str(bench.precision)]
    rows = []
    for resolution, batch in batches.items():
        module.stage = int(math.log2(resolution)) - 2
        module.alpha = float(bench.alpha)
        peaks = []
        for size in (batch, 2 * batch):
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(device)
            shape = (size, module.G.img_channels, resolution, resolution)
            step = make_train_step(module, torch.rand(shape, device=device) * 2 - 1, dtype)
            step()
            step()
            torch.cuda.synchronize(device)
            peaks.append(torch.cuda.max_memory_allocated(device))
        per_image = (peaks[1] - peaks[0]) / batch
        fixed = peaks[0] - per_image * batch
        row = {
            "resolution": resolution,
            "fixed_mb": fixed / 2**20,
            "per_image_mb": per_image / 2**20,
        }
        for gb in bench.memory_budgets_gb:
            row[f"max_batch_{gb}gb"] = max(0, int((0.9 * gb * 2**30 - fixed) // per_image))
        rows.append(row)
        log.info("memory %dx%d: %s", resolution, resolution, row)
    return rows


def format_memory_section(rows: list[dict[str, Any]], budgets: list[int], command: str) -> str:
    """The memory table as a markdown section."""
    head = "| res | fixed MB | MB per image | " + " | ".join(f"{gb} GB" for gb in budgets) + " |"
    lines = [
        "### Largest per-device batch (measured CUDA peaks)",
        "",
        f"```\n{command}\n```",
        "",
        head,
        "|" + "---:|" * (3 + len(budgets)),
    ]
    for r in rows:
        cells = [str(r[f"max_batch_{gb}gb"]) for gb in budgets]
        lines.append(
            f"| {r['resolution']} | {r['fixed_mb']:.0f} | {r['per_image_mb']:.1f} | "
            + " | ".join(cells)
            + " |"
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


def measure_peaks(device: torch.device, size: int, bench: DictConfig) -> dict[str, float]:
    """Dense ``size x size`` matmul peaks in FLOP/s: fp32, and TF32 and bf16 on CUDA."""
    timing = (bench.repeats, bench.min_repeat_s)
    peaks = {"fp32": matmul_peak(device, size, torch.float32, *timing)}
    if device.type == "cuda":
        peaks["tf32"] = matmul_peak(device, size, torch.float32, *timing, allow_tf32=True)
        peaks["bf16"] = matmul_peak(device, size, torch.bfloat16, *timing)
    log.info(
        "Matmul peak (%dx%d): %s",
        size,
        size,
        ", ".join(f"{k} {format_rate(v)}" for k, v in peaks.items()),
    )
    return peaks


def measure(cfg: DictConfig, device: torch.device, batches: dict[int, int]) -> list[dict]:
    """Every stage between two matmul-peak measurements: the rows of ``run``.

    The peak is timed before and after the stages and the higher of the two is used, so that
    a burst of load from other processes lowers the utilization rather than inflating it.
    """
    bench = cfg.bench
    if cfg.get("seed") is not None:
        torch.manual_seed(cfg.seed)
    size = bench.matmul_size or DEFAULT_MATMUL_SIZE.get(device.type, 4096)
    before = measure_peaks(device, size, bench)
    module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
    if bench.channels_last:
        module = module.to(memory_format=torch.channels_last)
    memory = PeakMemory(device)
    stages = [
        bench_stage(module, resolution, batch, bench, device, memory)
        for resolution, batch in batches.items()
    ]
    after = measure_peaks(device, size, bench)

    # The step runs in float32; on CUDA its convolutions use TF32 when cuDNN allows it.
    reference = "tf32" if device.type == "cuda" and torch.backends.cudnn.allow_tf32 else "fp32"
    if PRECISIONS[str(bench.precision)] is not None and device.type == "cuda":
        reference = "bf16"
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


def run(cfg: DictConfig) -> list[dict[str, Any]]:
    """Benchmark every requested stage; write the JSON and the notes.

    Args:
        cfg: The composed ``bench`` config (``train`` plus the ``bench`` keys).

    Returns:
        One row per resolution.
    """
    bench = cfg.bench
    if bench.repeats < 1 or bench.warmup < 0:
        raise ValueError(
            f"bench.repeats={bench.repeats} / bench.warmup={bench.warmup}; "
            "use repeats >= 1 and warmup >= 0"
        )
    if str(bench.precision) not in PRECISIONS:
        raise ValueError(
            f"bench.precision={bench.precision!r}; use one of {', '.join(PRECISIONS)}"
        )
    device = pick_device(str(bench.device))
    torch.backends.cudnn.benchmark = bool(bench.cudnn_benchmark)
    batches = stage_batches(cfg)
    threads = torch.get_num_threads()
    if bench.threads is not None:
        torch.set_num_threads(int(bench.threads))
    try:
        rows = measure(cfg, device, batches)
    finally:
        torch.set_num_threads(threads)
    log.info("\n%s", format_table(rows))

    if bench.out:
        out = Path(bench.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(rows, indent=2) + "\n")
        log.info("Wrote %s", out)
    notes = None
    if bench.notes:
        notes = Path(bench.notes)
        notes = notes if notes.is_absolute() else PROJECT_ROOT / notes
        update_notes(notes, device.type, format_section(rows, command_line()))
        log.info("Updated %s", notes)
    if bench.memory_budgets_gb and device.type == "cuda":
        module: ProGAN = hydra.utils.instantiate(cfg.model).to(device)
        table = memory_table(module, batches, bench, device)
        if bench.out:
            Path(bench.out).with_suffix(".memory.json").write_text(json.dumps(table, indent=2))
        if notes is not None:
            section = format_memory_section(table, list(bench.memory_budgets_gb), command_line())
            update_notes(notes, "memory-cuda", section)
    return rows


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="bench")
def main(cfg: DictConfig) -> None:
    """Hydra entry point of the benchmark."""
    run(cfg)


if __name__ == "__main__":
    main()
