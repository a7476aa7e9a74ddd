"""Weights-only export of G_ema and safe loading of generators and training checkpoints.

An export is two files side by side: ``<name>.safetensors`` (G_ema's tensors, no pickle)
and ``<name>.json`` (the generator's constructor arguments, the last trained stage and, for a
class-conditional generator, its ``class_names``).
Both carry the same ``export_id`` (the SHA-256 of the tensors), so a pair put together from
different runs is refused, and tensors changed on disk are found when loaded (the id is
recomputed). :func:`load_generator` rebuilds the generator from them without unpickling
anything, after checking the architecture against the tensors' shapes, and refuses
non-finite weights. A file that is foreign or damaged is refused with one
:class:`~progan_lightning.faults.DamagedFile` message naming it.

    progan-export CHECKPOINT.ckpt [OUT.safetensors]
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from progan_lightning.faults import DamagedFile
from progan_lightning.fs import atomic_write_all, expand_path, file_kind
from progan_lightning.networks import Generator
from progan_lightning.official import load_official_generator
from progan_lightning.schedule import stage_resolution

FORMAT = "progan-lightning/generator"
FORMAT_VERSION = 1


def export_paths(path: str | Path) -> tuple[Path, Path]:
    """The weights file and the architecture JSON of an export named by either of them."""
    path = expand_path(path)
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

    Raises:
        WriteError: a file could not be written; neither file was replaced.
    """
    if class_names is None:
        class_names = getattr(G, "class_names", None)
    class_names = check_class_names(class_names, getattr(G, "num_classes", 0))
    weights, arch = export_paths(path)
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
        "resolution": stage_resolution(stage),
        "weights": weights.name,
    }
    if class_names:
        meta["class_names"] = class_names
    weights_meta = {"format": FORMAT, "export_id": identity}
    atomic_write_all(
        {
            weights: lambda p: save_file(tensors, str(p), metadata=weights_meta),
            arch: lambda p: p.write_text(json.dumps(meta, indent=2) + "\n"),
        }
    )
    return weights, arch


def mark_trained(
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


EXPORT_AGAIN = (
    "export it again from its checkpoint: progan-export CHECKPOINT.ckpt (the .safetensors "
    "and the .json that were written together)"
)


def _read_json(arch: Path) -> dict[str, Any]:
    """The architecture JSON of an export.

    Raises:
        DamagedFile: not JSON, or not a progan-lightning generator export.
    """
    try:
        meta = json.loads(arch.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DamagedFile(arch, f"damaged: not valid JSON ({error})", EXPORT_AGAIN) from None
    if (
        not isinstance(meta, dict)
        or meta.get("format") != FORMAT
        or meta.get("class") != "Generator"
    ):
        raise DamagedFile(arch, "not a progan-lightning generator export (no such format record)")
    return meta


def _shapes(weights: Path) -> tuple[dict[str, list[int]], str | None]:
    """The tensor shapes and the ``export_id`` in a safetensors file's header (no data read).

    Raises:
        DamagedFile: not a readable safetensors file (truncated, overwritten, foreign).
    """
    try:
        with safe_open(str(weights), "pt") as handle:
            shapes = {name: list(handle.get_slice(name).get_shape()) for name in handle.keys()}  # noqa: SIM118
            return shapes, (handle.metadata() or {}).get("export_id")
    except Exception as error:  # SafetensorError, OSError: the library names neither file.
        raise DamagedFile(
            weights, f"damaged: not a readable safetensors file ({error})", EXPORT_AGAIN
        ) from None


def check_checkpoint_file(path: Path) -> None:
    """Refuse a file that is not a zip archive (as every ``.ckpt`` of training is) before a
    loader reads it, naming what it is (a pickle, an image, a safetensors file, ...).

    Raises:
        DamagedFile: it is another kind of file.
    """
    if not path.is_file():
        return  # The loader names the missing file.
    kind = file_kind(path)
    if kind != "a zip archive":
        fix = (
            "for an export give its .safetensors (or .json)"
            if kind == "a safetensors file"
            else "give a .ckpt from the checkpoints/ folder of a progan-train run"
        )
        raise DamagedFile(path, f"is {kind}, not a training checkpoint (a zip archive)", fix)


def check_finite(tensors: dict[str, torch.Tensor], path: str | Path) -> None:
    """Refuse weights that hold NaN or inf.

    Raises:
        DamagedFile: names the file and the first non-finite tensor.
    """
    bad = [name for name, t in tensors.items() if t.is_floating_point() and not t.isfinite().all()]
    if bad:
        raise DamagedFile(
            path,
            f"damaged: non-finite weights (NaN or inf) in {len(bad)} tensors, e.g. {bad[0]}",
            "use a checkpoint from before training diverged",
        )


def _meta_generator(meta: dict[str, Any], arch: Path) -> Generator:
    """The generator ``meta`` describes, built on the meta device (no memory allocated).

    Raises:
        DamagedFile: ``init_kwargs`` that no generator takes.
    """
    try:
        with torch.device("meta"):
            return Generator(**meta["init_kwargs"])
    except (KeyError, TypeError, ValueError) as error:
        raise DamagedFile(
            arch, f"damaged: its init_kwargs build no generator ({error})", EXPORT_AGAIN
        ) from None


KEEP_TOGETHER = (
    "keep the .safetensors and the .json that were written together, or export again "
    "with `progan-export CHECKPOINT`"
)


def _existing_export(path: str | Path) -> tuple[Path, Path]:
    """The weights file and the architecture JSON of the export at ``path`` (see
    :func:`export_paths`).

    Raises:
        FileNotFoundError: either file is missing.
    """
    weights, arch = export_paths(path)
    for p in (weights, arch):
        if not p.is_file():
            raise FileNotFoundError(
                f"{p} not found: an export is a .safetensors file plus a .json beside it "
                "(write one with `progan-export CHECKPOINT`)"
            )
    return weights, arch


def _check_same_export(
    weights: Path, arch: Path, weights_id: str | None, meta: dict[str, Any]
) -> None:
    """Refuse a weights file and a JSON whose ``export_id`` differs (exports that predate
    the id have none in either file and pass).

    Raises:
        ValueError: names both files and both ids.
    """
    if weights_id != meta.get("export_id"):
        raise ValueError(
            f"{weights} and {arch} come from different exports (export_id {weights_id} in "
            f"the weights, {meta.get('export_id')} in the JSON); {KEEP_TOGETHER}"
        )


def _checked_skeleton(
    meta: dict[str, Any], arch: Path, weights: Path, shapes: dict[str, list[int]]
) -> Generator:
    """The generator ``meta`` describes on the meta device, checked against the tensors'
    ``shapes`` before any memory is allocated for it.

    Raises:
        DamagedFile: ``init_kwargs`` that build no generator, or one whose tensors' shapes
            differ from ``shapes`` (names how many and the first few).
    """
    skeleton = _meta_generator(meta, arch)
    expected = {name: list(tensor.shape) for name, tensor in skeleton.state_dict().items()}
    if expected != shapes:
        differ = sorted(
            k for k in expected.keys() | shapes.keys() if expected.get(k) != shapes.get(k)
        )
        raise DamagedFile(
            arch,
            f"damaged: its architecture does not fit the tensors of {weights.name} "
            f"({len(differ)} differ, e.g. {', '.join(differ[:3])})",
            KEEP_TOGETHER,
        )
    return skeleton


def _trained_stage(meta: dict[str, Any], arch: Path, num_stages: int) -> int:
    """The last trained stage the JSON records (default: the full depth).

    Raises:
        DamagedFile: not a stage of a generator of ``num_stages`` stages.
    """
    stage = meta.get("stage", num_stages - 1)
    if not isinstance(stage, int) or not 0 <= stage < num_stages:
        raise DamagedFile(
            arch,
            f"damaged: its trained stage {stage!r} is not one of the generator's "
            f"0..{num_stages - 1}",
            EXPORT_AGAIN,
        )
    return stage


def _read_tensors(weights: Path, weights_id: str | None, verify: bool) -> dict[str, torch.Tensor]:
    """The tensors of ``weights``, checked against ``weights_id`` (with ``verify``; an
    export without an id is not checked) and for non-finite values.

    Raises:
        DamagedFile: the data does not read, differs from its ``export_id``, or holds NaN
            or inf.
    """
    try:
        tensors = load_file(str(weights))
    except Exception as error:  # A header that reads, data that does not.
        raise DamagedFile(
            weights, f"damaged: its tensors do not read ({error})", EXPORT_AGAIN
        ) from None
    if verify and weights_id is not None and export_id(tensors) != weights_id:
        raise DamagedFile(
            weights,
            "damaged: its tensors differ from the SHA-256 recorded when it was exported "
            f"(export_id {weights_id[:12]}...)",
            EXPORT_AGAIN,
        )
    check_finite(tensors, weights)
    return tensors


def load_generator(
    path: str | Path, map_location: str | torch.device = "cpu", verify: bool = True
) -> Generator:
    """Rebuild an exported generator from its ``.safetensors`` and ``.json`` (no unpickling),
    or ``Gs`` of an official ProGAN ``.pkl`` (read safely, see :mod:`progan_lightning.official`).

    The returned generator is in eval mode and carries ``trained_stage`` and
    ``trained_alpha`` (how far training got) and ``class_names`` (``[]`` when unconditional;
    a conditional one takes ``labels`` in its forward).

    Args:
        path: The export's ``.safetensors`` or ``.json`` file (the other one sits beside it),
            or an official ``.pkl``.
        map_location: Device for the weights.
        verify: Recompute the tensors' SHA-256 and compare it with the ``export_id`` (off
            saves one pass over a very large file).

    Raises:
        ValueError: the two files come from different exports (their ``export_id`` differs;
            exports that predate the id have none in either file and load as before), or the
            class names do not fit the classes.
        DamagedFile: a file is foreign or damaged: not JSON, not safetensors, an architecture
            that does not fit the tensors' shapes, a trained stage out of range, tensors that
            differ from their ``export_id``, non-finite weights.
    """
    if Path(path).suffix == ".pkl":
        return load_official_generator(path, map_location)
    weights, arch = _existing_export(path)
    meta = _read_json(arch)
    shapes, weights_id = _shapes(weights)
    _check_same_export(weights, arch, weights_id, meta)
    skeleton = _checked_skeleton(meta, arch, weights, shapes)
    stage = _trained_stage(meta, arch, skeleton.num_stages)
    tensors = _read_tensors(weights, weights_id, verify)
    G = Generator(**meta["init_kwargs"])
    G.load_state_dict(tensors)
    names = check_class_names(meta.get("class_names"), G.num_classes, str(arch))
    return mark_trained(G, stage, meta.get("alpha"), names, map_location)
