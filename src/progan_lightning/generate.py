"""Images, a grid and a latent interpolation from an export or a checkpoint.

progan-generate source=outputs/.../generator.safetensors
progan-generate source=outputs/.../checkpoints/last.ckpt num_images=64
progan-generate source=outputs/quickstart/runs/<run>   # a run's newest checkpoint
progan-generate source=... resolution=16 device=cuda
progan-generate source=... class=star          # conditional generators
progan-generate source=... class=[star,3]      # names or indices
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import torch
from torch import Tensor, nn

from progan_lightning.checkpoint import (
    find_last_checkpoint,
    generator_from_checkpoint,
    load_checkpoint,
)
from progan_lightning.export import check_checkpoint_file, load_generator
from progan_lightning.fs import check_folder, expand_path
from progan_lightning.imaging import label_rows, make_grid, save_gif, save_png, view_tile
from progan_lightning.networks import seeded_latents, slerp
from progan_lightning.official import example_latents
from progan_lightning.run_paths import CHECKPOINT_DIR
from progan_lightning.schedule import resolution_stage, stage_resolution

log = logging.getLogger(__name__)


def load_any(
    source: str | Path, device: str | torch.device = "cpu", allow_pickle: bool = False
) -> nn.Module:
    """G_ema from an export (``.safetensors``/``.json``), an official ProGAN pickle (``.pkl``:
    its ``Gs``), a training checkpoint (``.ckpt``) or a training run's folder (its newest
    checkpoint, :func:`run_checkpoint`)."""
    path = expand_path(source, "source")
    if path.is_dir():
        path = run_checkpoint(path)
    if path.suffix in (".safetensors", ".json", ".pkl"):
        return load_generator(path, device)
    check_checkpoint_file(path)
    checkpoint = load_checkpoint(path, allow_pickle=allow_pickle)
    return generator_from_checkpoint(checkpoint, device, source=path)


def run_checkpoint(run: Path) -> Path:
    """The newest checkpoint of a training run's folder (``last.ckpt``, as ``ckpt_path=last``
    finds it): G_ema where training ended or stopped, newer than an export that an earlier
    end of the run wrote.

    Raises:
        FileNotFoundError: The folder has no ``checkpoints/``, or no readable checkpoint in it.
    """
    checkpoints = run / CHECKPOINT_DIR
    if not checkpoints.is_dir():
        raise FileNotFoundError(
            f"source={run} is a folder without {CHECKPOINT_DIR}/; give a training run's folder, "
            "an export's .safetensors, a .ckpt or an official .pkl"
        )
    try:
        path = find_last_checkpoint(checkpoints)
    except FileNotFoundError:
        raise FileNotFoundError(
            f"source={run}: no readable checkpoint in {checkpoints} (the run wrote none yet)"
        ) from None
    log.info(f"source={run}: its newest checkpoint, {path}")
    return path


def stage_for(G: nn.Module, resolution: int | None) -> tuple[int, float]:
    """Stage and alpha to render at ``resolution`` (default: the last trained stage)."""
    trained = getattr(G, "trained_stage", G.num_stages - 1)
    if resolution is None:
        return trained, getattr(G, "trained_alpha", 1.0)
    stage = resolution_stage(resolution)
    if stage_resolution(stage) != resolution or not 0 <= stage <= trained:
        raise ValueError(
            f"resolution={resolution} is not a trained stage; use one of "
            f"{[stage_resolution(s) for s in range(trained + 1)]}"
        )
    return stage, getattr(G, "trained_alpha", 1.0) if stage == trained else 1.0


def check_settings(
    num_images: int, batch_size: int, interp_keyframes: int, interp_steps: int, fps: int
) -> None:
    """Raise one clear error, naming the ``conf/generate.yaml`` key, for a bad count.

    Raises:
        ValueError: a count below its minimum.
    """
    for key, value, minimum, meaning in (
        ("num_images", num_images, 1, "images to write"),
        ("batch_size", batch_size, 1, "images rendered at once"),
        ("interp.keyframes", interp_keyframes, 0, "latents of the animation, 0 = none"),
        ("interp.steps", interp_steps, 1, "frames between two keyframes"),
        ("interp.fps", fps, 1, "frames per second of the animation"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"{key}={value!r} is out of range; set {key} to an integer >= {minimum} "
                f"({meaning})"
            )


def class_names_of(G: nn.Module) -> list[str]:
    """The names of G's classes (index = class; ``"0" .. "C-1"`` when G carries none), ``[]``
    for an unconditional G."""
    num_classes = getattr(G, "num_classes", 0)
    names = list(getattr(G, "class_names", None) or [])
    return names if len(names) == num_classes else [str(c) for c in range(num_classes)]


def select_classes(G: nn.Module, class_: str | int | Sequence[str | int] | None) -> list[int]:
    """Class indices that ``class_`` (the ``class`` key) asks for, in the order given.

    Args:
        G: The generator.
        class_: A class name or index, a list of them, or None (every class).

    Returns:
        The indices (duplicates dropped); every class for None; ``[]`` for an unconditional G
        (with ``class_`` None).

    Raises:
        ValueError: ``class_`` given for an unconditional G; a name or index that is not one
            of G's classes (the message lists them); an empty list.
    """
    names = class_names_of(G)
    if not names:
        if class_ is not None:
            raise ValueError(
                f"class={class_!r} given, but this generator has no classes (it was trained "
                "without labels); drop class"
            )
        return []
    if class_ is None:
        return list(range(len(names)))
    wanted = [class_] if isinstance(class_, str | int | float) else list(class_)
    if not wanted:
        raise ValueError("class=[] selects no class; give names or indices, or class=null (all)")
    indices: list[int] = []
    for item in wanted:
        if isinstance(item, str) and item in names:
            index = names.index(item)
        elif isinstance(item, str) and re.fullmatch(r"\d+", item):
            index = int(item)
        elif isinstance(item, int) and not isinstance(item, bool):
            index = item
        else:
            index = -1
        if not 0 <= index < len(names):
            listing = ", ".join(f"{i}={name}" for i, name in enumerate(names[:20]))
            more = f", ... ({len(names)} in all)" if len(names) > 20 else ""
            raise ValueError(
                f"class={item!r} is not a class of this generator; use a name or an index "
                f"0..{len(names) - 1}: {listing}{more}"
            )
        if index not in indices:
            indices.append(index)
    return indices


def file_tokens(names: Sequence[str]) -> list[str]:
    """Class names made safe for file names (other characters become ``_``); a name whose
    token another class also gets is suffixed with its index."""
    tokens = [re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "_" for name in names]
    return [f"{token}-{i}" if tokens.count(token) > 1 else token for i, token in enumerate(tokens)]


@torch.no_grad()
def render(
    G: nn.Module,
    z: torch.Tensor,
    stage: int,
    alpha: float,
    batch_size: int = 64,
    labels: torch.Tensor | None = None,
) -> torch.Tensor:
    """G on ``z`` (with class ``labels`` [N] for a conditional G) in batches, on G's device;
    returns images on the CPU. [NCHW]"""
    device = next(G.parameters()).device
    parts = []
    for i in range(0, len(z), batch_size):
        extra = {} if labels is None else {"labels": labels[i : i + batch_size].to(device)}
        parts.append(G(z[i : i + batch_size].to(device), stage, alpha, **extra).cpu())
    return torch.cat(parts)


LATENT_CHUNK = 1024
"""Latents drawn (and images rendered) at once: memory is bounded by this, not by
``num_images``. A multiple of 16, so that the chunks of one seed's stream are the latents of
one draw (``torch.randn`` fills in blocks of 16); counts up to it are one draw."""

GRID_IMAGES = 256
"""Images in ``grid.png`` (the first ones): a 16 x 16 grid at most."""


def latent_chunks(count: int, z_dim: int, seed: int, chunk: int | None = None) -> Iterator[Tensor]:
    """The latents of :func:`~progan_lightning.networks.seeded_latents` ``((count, z_dim),
    seed)``, drawn ``chunk`` rows at a time from one generator. [<= chunk, z_dim] each"""
    chunk = chunk or LATENT_CHUNK
    stream = torch.Generator().manual_seed(seed)
    for start in range(0, count, chunk):
        yield torch.randn((min(chunk, count - start), z_dim), generator=stream)


class ImagePaths(Sequence[Path]):
    """The paths of numbered images (``<folder>/<tag>_<i:04d>.png``), computed when asked
    for: a billion images take no memory to list. ``a + b`` lists both.

    Args:
        parts: ``(folder, tag, count)`` of each run of images, in order.
    """

    def __init__(self, parts: list[tuple[Path, str, int]]) -> None:
        self.parts = parts

    def __len__(self) -> int:
        return sum(count for _, _, count in self.parts)

    @overload
    def __getitem__(self, index: int) -> Path: ...

    @overload
    def __getitem__(self, index: slice) -> list[Path]: ...

    def __getitem__(self, index: int | slice) -> Path | list[Path]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        for folder, tag, count in self.parts:
            if 0 <= index < count:
                return folder / f"{tag}_{index:04d}.png"
            index -= count
        raise IndexError("image index out of range")

    def __add__(self, other: ImagePaths) -> ImagePaths:
        return ImagePaths(self.parts + other.parts)


def interpolation_latents(keyframes: int, steps: int, z_dim: int, seed: int) -> torch.Tensor:
    """Latents of a looping spherical interpolation through ``keyframes`` seeded latents,
    ``steps`` frames from one to the next. [keyframes * steps, z_dim]"""
    keys = seeded_latents((keyframes, z_dim), seed)
    keys = torch.cat([keys, keys[:1]])  # Loop back to the start.
    return torch.cat(
        [
            slerp(keys[k : k + 1], keys[k + 1 : k + 2], t / steps)
            for k in range(keyframes)
            for t in range(steps)
        ]
    )


def check_seeds(seeds: str | None) -> None:
    """Refuse a ``seeds`` setting other than None and ``official``.

    Raises:
        ValueError: names the setting and its two values.
    """
    if seeds not in (None, "official"):
        raise ValueError(
            f"seeds={seeds!r}; use seeds=official (the latents of the official "
            "import_example.py) or seeds=null (num_images latents from seed)"
        )


@dataclass(frozen=True)
class Job:
    """What :func:`generate` renders and writes, settled from its arguments (see there).

    Attributes:
        out_dir: The checked output folder.
        stage: Stage to render at.
        alpha: Fade-in weight at ``stage``.
        batch_size: Images rendered at once.
        tile: Side of one image in the grid and the animation (upscaled, see
            :func:`~progan_lightning.imaging.view_tile`).
        tag: File name prefix of the images (``seed<seed>`` or ``official``).
        num_images: Images per class (ten for the official latents).
        seed: Seed of the latents.
        official: Render the official example latents in place of seeded ones.
        grid: Write the grids.
        z_interp: Latents of the animation, or None for none. [frames, z_dim]
        fps: Frames per second of the animation.
    """

    out_dir: Path
    stage: int
    alpha: float
    batch_size: int
    tile: int
    tag: str
    num_images: int
    seed: int
    official: bool
    grid: bool
    z_interp: Tensor | None
    fps: int


def class_labels(label: int | None, count: int) -> Tensor | None:
    """``count`` copies of class ``label`` (None for an unconditional G). [count]"""
    return None if label is None else torch.full((count,), label, dtype=torch.long)


def image_latents(G: nn.Module, job: Job) -> Iterable[Tensor]:
    """The latents of the images, in chunks: the official example latents (one chunk), or
    :func:`latent_chunks` of ``job.seed``. [<= LATENT_CHUNK, z_dim] each"""
    if job.official:
        return [example_latents(G.z_dim)]
    return latent_chunks(job.num_images, G.z_dim, job.seed)


def write_images(G: nn.Module, job: Job, label: int | None, folder: Path) -> Tensor:
    """Render and write the images of class ``label`` (or of an unconditional G) into
    ``folder``, a chunk at a time; returns the first :data:`GRID_IMAGES` (those of the
    grid). [<= GRID_IMAGES, C, H, W]"""
    shown = []
    start = 0
    for z in image_latents(G, job):  # [chunk, z_dim]
        images = render(G, z, job.stage, job.alpha, job.batch_size, class_labels(label, len(z)))
        for i, image in enumerate(images, start):
            save_png(folder / f"{job.tag}_{i:04d}.png", make_grid(image[None]))
        shown.append(images[: max(0, GRID_IMAGES - start)])
        start += len(z)
    return torch.cat(shown)


def write_interp(G: nn.Module, job: Job, z: Tensor, label: int | None, path: Path) -> Path:
    """Render the animation's latents ``z`` [frames, z_dim] (class ``label``) and write them
    as a GIF at ``path``."""
    frames = render(G, z, job.stage, job.alpha, job.batch_size, class_labels(label, len(z)))
    return save_gif(path, [make_grid(f[None], job.tile) for f in frames], job.fps)


def write_class(
    G: nn.Module, job: Job, label: int | None, folder: Path, suffix: str
) -> tuple[dict[str, Any], Tensor]:
    """Images, grid and animation of class ``label`` (or of an unconditional G, None).

    Args:
        G: The generator.
        job: What to render and write.
        label: The class, or None.
        folder: Folder of the images.
        suffix: Ending of the grid's and the animation's names (``""`` or ``_<name>``).

    Returns:
        ``{"images": paths, "grid": path | None, "interp": path | None}`` and the first
        :data:`GRID_IMAGES` images (those of the grid).
    """
    first = write_images(G, job, label, folder)
    files: dict[str, Any] = {
        "images": ImagePaths([(folder, job.tag, job.num_images)]),
        "grid": None,
        "interp": None,
    }
    if job.grid:
        files["grid"] = save_png(job.out_dir / f"grid{suffix}.png", make_grid(first, job.tile))
    if job.z_interp is not None:
        path = job.out_dir / f"interp{suffix}.gif"
        files["interp"] = write_interp(G, job, job.z_interp, label, path)
    return files, first


def write_classes(G: nn.Module, job: Job, classes: list[int], overview: bool) -> dict[str, Any]:
    """The files of each class of ``classes`` (see :func:`write_class`), in
    ``class<name>/`` folders, and, with ``overview`` and ``job.grid``, ``grid.png`` with one
    row per class (the same latent in each column), named in a left margin.

    Returns:
        The result of :func:`generate` for a conditional G.
    """
    names = class_names_of(G)
    tokens = file_tokens(names)
    result: dict[str, Any] = {"images": ImagePaths([]), "grid": None, "interp": None}
    result["classes"] = {}
    rows = []
    for c in classes:
        files, images = write_class(G, job, c, job.out_dir / f"class{tokens[c]}", f"_{tokens[c]}")
        result["classes"][names[c]] = files
        result["images"] += files["images"]
        rows.append(images)
    if job.grid and overview:
        grid = make_grid(torch.cat(rows), job.tile, cols=len(rows[0]))
        result["grid"] = save_png(job.out_dir / "grid.png", label_rows(grid, names))
    return result


def generate(
    G: nn.Module,
    out_dir: str | Path,
    num_images: int = 16,
    seed: int = 0,
    resolution: int | None = None,
    grid: bool = True,
    interp_keyframes: int = 4,
    interp_steps: int = 12,
    fps: int = 12,
    batch_size: int = 64,
    class_: str | int | Sequence[str | int] | None = None,
    seeds: str | None = None,
) -> dict[str, Any]:
    """Write ``num_images`` PNGs, a grid and a looping interpolation GIF into ``out_dir``.

    A conditional G writes these per class, for each class of ``class_`` (every class when
    None): ``class<name>/seed<seed>_<i>.png``, ``grid_<name>.png`` and ``interp_<name>.gif``
    (the label fixed). Every class uses the same latents, so image ``i`` of two classes shares
    its latent. With ``class_`` None, ``grid.png`` shows them all: one row per class, named in
    a left margin. Names are made file-safe (see :func:`file_tokens`).

    Args:
        G: A generator (see :func:`load_any`).
        out_dir: Output folder.
        num_images: Images to write (``seed<seed>_<i>.png``), per class for a conditional G;
            drawn and rendered :data:`LATENT_CHUNK` at a time.
        seed: Seed of the latents.
        resolution: Render at this trained resolution (default: the last trained one).
        grid: Also write ``grid.png`` of the first :data:`GRID_IMAGES` images (and
            ``grid_<name>.png`` per class). The grid and the animation show images smaller
            than :data:`~progan_lightning.imaging.VIEW_TILE` upscaled (nearest) by a whole
            factor; the image files keep G's resolution.
        interp_keyframes: Latents the animation passes through (0 = no ``interp.gif``).
        interp_steps: Frames between two keyframes.
        fps: Frames per second of the GIF.
        batch_size: Images rendered at once.
        class_: Classes of a conditional G: a name or index, or a list of them; None = all.
        seeds: ``official``: the ten latents of the official ``import_example.py`` in place
            of ``num_images`` latents from ``seed`` (images ``official_<i>.png``); None: from
            ``seed``.

    Returns:
        ``{"images": paths, "grid": path | None, "interp": path | None, "classes":
        {name: {"images": paths, "grid": path | None, "interp": path | None}}}``
        (``classes`` is empty for an unconditional G; then the top level holds its files;
        ``paths`` is an :class:`ImagePaths`, a sequence of the images' paths).

    Raises:
        ValueError: a count is out of range (see :func:`check_settings`), ``resolution``
            is not a trained stage, ``class_`` does not fit G (see :func:`select_classes`),
            or ``seeds`` is neither None nor ``official``.
    """
    check_settings(num_images, batch_size, interp_keyframes, interp_steps, fps)
    check_seeds(seeds)
    classes = select_classes(G, class_)
    out_dir = check_folder(expand_path(out_dir, "out_dir"), "out_dir")
    stage, alpha = stage_for(G, resolution)
    z_interp = None
    if interp_keyframes > 1:
        z_interp = interpolation_latents(interp_keyframes, interp_steps, G.z_dim, seed + 1)
    job = Job(
        out_dir=out_dir,
        stage=stage,
        alpha=alpha,
        batch_size=batch_size,
        tile=view_tile(stage_resolution(stage)),
        tag=f"seed{seed}" if seeds is None else "official",
        num_images=num_images if seeds is None else len(example_latents(G.z_dim)),
        seed=seed,
        official=seeds is not None,
        grid=grid,
        z_interp=z_interp,
        fps=fps,
    )
    if not classes:
        return {**write_class(G, job, None, out_dir, "")[0], "classes": {}}
    return write_classes(G, job, classes, overview=class_ is None)
