"""Weights-only export of G_ema and safe loading of generators and training checkpoints.

An export is two files side by side: ``<name>.safetensors`` (G_ema's tensors, no pickle)
and ``<name>.json`` (the generator's constructor arguments, the last trained stage and, for a
class-conditional generator, its ``class_names``).
Both carry the same ``export_id`` (the SHA-256 of the tensors), so a pair put together from
different runs is refused. :func:`load_generator` rebuilds the generator from them without
unpickling anything.

    python -m progan_lightning.export CHECKPOINT.ckpt [OUT.safetensors]
"""

from __future__ import annotations

import hashlib
import json
import pickle
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from progan_lightning.imaging import atomic_write
from progan_lightning.networks import Generator
from progan_lightning.official import load_official_generator

FORMAT = "progan-lightning/generator"
FORMAT_VERSION = 1


def export_paths(path: str | Path) -> tuple[Path, Path]:
    """The weights file and the architecture JSON of an export named by either of them."""
    path = Path(path).expanduser()
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def export_id(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of the names, dtypes, shapes and bytes of ``tensors`` (contiguous, on the CPU)."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name]
        digest.update(f"{name}\0{tensor.dtype}\0{list(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def check_class_names(
    class_names: Sequence[str] | None, num_classes: int, where: str = "class_names"
) -> list[str]:
    """The class names of a G with ``num_classes`` classes: ``[]`` when it is unconditional,
    else one string per class (``"0" .. "C-1"`` when ``class_names`` is None).

    Args:
        class_names: The names (index = class), or None.
        num_classes: C (0 = unconditional).
        where: What the names came from, for the error message.

    Raises:
        ValueError: names for an unconditional generator, or not one name per class.
    """
    if not num_classes:
        if class_names:
            raise ValueError(
                f"{where} names classes {list(class_names)} but the generator is unconditional "
                "(num_classes=0); drop the class names or use a conditional generator"
            )
        return []
    if class_names is None:
        return [str(c) for c in range(num_classes)]
    if len(class_names) != num_classes:
        raise ValueError(
            f"{where} has {len(class_names)} class names {list(class_names)[:10]} for a "
            f"generator of {num_classes} classes; give one name per class (index = class)"
        )
    return [str(name) for name in class_names]


def export_generator(
    G: nn.Module,
    path: str | Path,
    stage: int | None = None,
    alpha: float = 1.0,
    class_names: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``G``'s weights (safetensors) and architecture (JSON), each atomically.

    Args:
        G: A :class:`~progan_lightning.networks.Generator` (usually G_ema).
        path: ``<name>.safetensors`` (or ``<name>.json`` / ``<name>``).
        stage: Last trained stage; default: the full depth.
        alpha: Fade-in weight reached at ``stage``.
        class_names: Names of a conditional G's classes (index = class), written to the JSON
            as ``class_names``; default: ``G.class_names``, else ``"0" .. "C-1"``. An
            unconditional G's JSON has no ``class_names`` (as before).

    Returns:
        The weights path and the JSON path.
    """
    if class_names is None:
        class_names = getattr(G, "class_names", None)
    class_names = check_class_names(class_names, getattr(G, "num_classes", 0))
    weights, arch = export_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    stage = G.num_stages - 1 if stage is None else int(stage)
    tensors = {k: v.detach().cpu().contiguous() for k, v in G.state_dict().items()}
    identity = export_id(tensors)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "export_id": identity,
        "class": "Generator",
        "init_kwargs": G.init_kwargs,
        "stage": stage,
        "alpha": float(alpha),
        "resolution": 4 * 2**stage,
        "weights": weights.name,
    }
    if class_names:
        meta["class_names"] = class_names
    weights_meta = {"format": FORMAT, "export_id": identity}
    atomic_write(weights, lambda p: save_file(tensors, str(p), metadata=weights_meta))
    atomic_write(arch, lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"))
    return weights, arch


def _trained(
    G: Generator,
    stage: int | None,
    alpha: float | None,
    class_names: list[str],
    map_location: str | torch.device,
) -> Generator:
    """``G`` in eval mode on ``map_location``, with ``trained_stage``, ``trained_alpha`` (default:
    the full depth, faded in) and ``class_names``."""
    G.trained_stage = G.num_stages - 1 if stage is None else int(stage)
    G.trained_alpha = 1.0 if alpha is None else float(alpha)
    G.class_names = class_names
    return G.to(map_location).eval().requires_grad_(False)


def load_generator(path: str | Path, map_location: str | torch.device = "cpu") -> Generator:
    """Rebuild an exported generator from its ``.safetensors`` and ``.json`` (no unpickling),
    or ``Gs`` of an official ProGAN ``.pkl`` (read safely, see :mod:`progan_lightning.official`).

    The returned generator is in eval mode and carries ``trained_stage`` and
    ``trained_alpha`` (how far training got) and ``class_names`` (``[]`` when unconditional;
    a conditional one takes ``labels`` in its forward).

    Args:
        path: The export's ``.safetensors`` or ``.json`` file (the other one sits beside it),
            or an official ``.pkl``.
        map_location: Device for the weights.

    Raises:
        ValueError: the two files come from different exports (their ``export_id`` differs;
            exports that predate the id have none in either file and load as before), or the
            weights do not fit the architecture, or the class names do not fit the classes.
    """
    if Path(path).suffix == ".pkl":
        return load_official_generator(path, map_location)
    weights, arch = export_paths(path)
    for p in (weights, arch):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} not found: an export is a .safetensors file plus a .json beside it "
                "(write one with `python -m progan_lightning.export CHECKPOINT`)"
            )
    meta = json.loads(arch.read_text())
    if meta.get("format") != FORMAT or meta.get("class") != "Generator":
        raise ValueError(f"{arch} is not a progan-lightning generator export")
    with safe_open(str(weights), "pt") as handle:
        weights_id = (handle.metadata() or {}).get("export_id")
    mismatch = f"{weights} and {arch} come from different exports"
    fix = (
        "keep the .safetensors and the .json that were written together, or export again "
        "with `python -m progan_lightning.export CHECKPOINT`"
    )
    if weights_id != meta.get("export_id"):
        raise ValueError(
            f"{mismatch} (export_id {weights_id} in the weights, {meta.get('export_id')} in "
            f"the JSON); {fix}"
        )
    G = Generator(**meta["init_kwargs"])
    try:
        G.load_state_dict(load_file(str(weights), device=str(map_location)))
    except RuntimeError as error:  # Missing, unexpected or mis-shaped tensors.
        raise ValueError(f"{mismatch}: the weights do not fit the architecture; {fix}") from error
    names = check_class_names(meta.get("class_names"), G.num_classes, str(arch))
    return _trained(G, meta.get("stage"), meta.get("alpha"), names, map_location)


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu", allow_pickle: bool = False
) -> dict[str, Any]:
    """Load a training checkpoint with ``torch.load(weights_only=True)``.

    Args:
        path: A ``.ckpt`` written by training.
        map_location: Device for the tensors.
        allow_pickle: Fall back to full unpickling (only for files you trust) when the safe
            loader refuses the file.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if not allow_pickle:
            raise ValueError(
                f"{path} holds objects that the safe (weights-only) loader refuses: {err}. "
                "If you created this file yourself, pass allow_pickle=true to load it fully."
            ) from err
    return torch.load(path, map_location=map_location, weights_only=False)


def generator_from_checkpoint(
    checkpoint: dict[str, Any], map_location: str | torch.device = "cpu"
) -> Generator:
    """G_ema from a loaded training checkpoint, with ``trained_stage``/``trained_alpha`` and
    ``class_names`` (from ``checkpoint["classes"]["names"]``; ``[]`` when unconditional)."""
    arch = checkpoint.get("architecture", {}).get("G")
    if arch is None:
        raise ValueError("this checkpoint has no architecture record; it predates export")
    G = Generator(**arch)
    prefix = "G_ema."
    state = {
        k[len(prefix) :]: v for k, v in checkpoint["state_dict"].items() if k.startswith(prefix)
    }
    G.load_state_dict(state)
    progress = checkpoint.get("progress", {})
    names = check_class_names(
        checkpoint.get("classes", {}).get("names"), G.num_classes, "the checkpoint"
    )
    return _trained(G, progress.get("stage"), progress.get("alpha"), names, map_location)


def export_checkpoint(
    ckpt_path: str | Path, out: str | Path | None = None, allow_pickle: bool = False
) -> tuple[Path, Path]:
    """Export G_ema of a training checkpoint; default output: ``<ckpt>.safetensors``."""
    G = generator_from_checkpoint(load_checkpoint(ckpt_path, allow_pickle=allow_pickle))
    out = Path(ckpt_path).with_suffix(".safetensors") if out is None else out
    return export_generator(G, out, G.trained_stage, G.trained_alpha)


if __name__ == "__main__":  # the command under its old name; see cli/export.py
    from progan_lightning.cli.export import main

    main()
