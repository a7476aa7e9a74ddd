"""Memory: peak memory of the timed steps and the largest per-device batch per budget.

- :class:`PeakMemory`: the ``peak MB`` column of the stages table (CUDA: peak allocated;
  CPU: peak RSS above the RSS after building the model).
- :class:`SavedTensorMeter` and the ``memory`` part: the step's memory split into a fixed
  part and a part per image, from two batch sizes; measured CUDA peaks on a GPU, on the
  CPU computed from the bytes autograd saves for backward (a shape-only trace on ``meta``).
"""

from __future__ import annotations

import gc
import logging
import math
import re
import weakref
from collections.abc import Iterable
from datetime import date
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig
from torch import Tensor
from torch.utils._python_dispatch import TorchDispatchMode

from progan_lightning.bench.step import fake_reals, make_train_step, set_stage
from progan_lightning.module import ProGAN
from progan_lightning.precision import resolve_precision

log = logging.getLogger(__name__)


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


class MetaValues(TorchDispatchMode):
    """Host reads of ``meta`` tensors (``.item()``, ``bool()``) answer 1 / True.

    A ``meta`` tensor holds shapes, not values, so the step's own checks that read one back
    (its loss and gradients are finite) cannot run on it; under this mode they read a finite
    step, and the traced step runs exactly the code of a real one.
    """

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default and args[0].is_meta:
            return True if args[0].dtype == torch.bool else 1
        return func(*args, **(kwargs or {}))


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
    with SavedTensorMeter(exclude=module.parameters()) as meter, MetaValues():
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
    if resolve_precision(module.precision, "cpu") != "fp32":  # this table is the CPU's
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
