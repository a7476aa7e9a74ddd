"""The multi-resolution cache: one uint8 copy of the dataset per resolution 4, 8, ..., R.

Like the official code's one record per level of detail, low-resolution phases read small
arrays and never decode full-size images. A cache lives in ``cache_root/<key>/``::

    manifest.json   written last: {format_version, source, resolution, channels,
                    num_images, levels, created}
    4.npy           uint8 [N, C, 4, 4]
    8.npy           uint8 [N, C, 8, 8]
    ...
    R.npy           uint8 [N, C, R, R]   (R = the requested resolution)

``<key>`` is a short SHA-1 of the source fingerprint, resolution, channels and format
version, so any change of data or settings gets its own folder. Each level is the 2x2 box
mean of the level above (:func:`box_downsample`); the top level comes from the source.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from progan_lightning.data.sources import ImageSource
from progan_lightning.schedule import check_resolution

try:
    import fcntl
except ImportError:  # Windows: no advisory locks; concurrent builds stay safe, only wasteful.
    fcntl = None  # type: ignore[assignment]

try:
    from tqdm.auto import tqdm
except ImportError:
    tqdm = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
CHUNK_BYTES = 64 * 2**20  # Full-resolution images held in RAM at once, per chunk.
MANIFEST = "manifest.json"


def box_downsample(images: np.ndarray) -> np.ndarray:
    """Halve the resolution by the mean of each 2x2 block.

    The mean is rounded half to even (``np.rint``), so repeated halving does not drift
    brighter; the float32 mean of four uint8 values is exact, so this is deterministic.

    Args:
        images: uint8 [N, C, H, W] with even H and W.

    Returns:
        uint8 [N, C, H/2, W/2].
    """
    if images.ndim != 4 or images.dtype != np.uint8 or images.shape[2] % 2 or images.shape[3] % 2:
        raise ValueError(
            f"box_downsample needs uint8 [N, C, H, W] with even H and W, "
            f"got {images.dtype} {list(images.shape)}"
        )
    n, c, h, w = images.shape
    blocks = images.reshape(n, c, h // 2, 2, w // 2, 2)
    sums = blocks.sum(axis=(3, 5), dtype=np.uint16)  # [N, C, H/2, W/2] in [0, 1020]
    return np.rint(sums * np.float32(0.25)).astype(np.uint8)


def cache_key(source: ImageSource, resolution: int, channels: int) -> tuple[str, dict[str, Any]]:
    """The cache folder name and the settings it stands for (as stored in the manifest).

    Args:
        source: The data source.
        resolution: Final resolution.
        channels: 3 (RGB) or 1 (grayscale).

    Returns:
        ``(key, settings)``: a 16-hex-digit key and the JSON-normalised settings.
    """
    settings = {
        "format_version": FORMAT_VERSION,
        "source": source.fingerprint(),
        "resolution": resolution,
        "channels": channels,
    }
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16], json.loads(text)


def prepare_cache(
    source: ImageSource,
    resolution: int,
    channels: int,
    cache_root: str | Path,
    num_workers: int = 0,
    progress: bool = True,
) -> Path:
    """Build (once) and return the multi-resolution cache of ``source``.

    A complete cache with a matching manifest is returned as is, without decoding anything.
    Otherwise the cache is built under a process lock into ``<key>.tmp-<pid>`` and renamed
    into place after its manifest is written, so an interrupted build never leaves a folder
    that looks complete; a second process preparing the same cache waits, then reuses it.

    Args:
        source: Where images come from.
        resolution: Final resolution (a power of two >= 4); levels 4, 8, ..., resolution.
        channels: 3 (RGB) or 1 (grayscale).
        cache_root: Folder holding the caches (created if missing).
        num_workers: Processes that load images; 0 loads in this process.
        progress: Show a progress bar while building.

    Returns:
        The cache folder, ``cache_root / key``.
    """
    check_resolution(resolution, "data.resolution")
    if channels not in (1, 3):
        raise ValueError(f"data.channels={channels} is not supported; use 3 (RGB) or 1")
    root = Path(cache_root).expanduser()
    root.mkdir(parents=True, exist_ok=True)
    key, settings = cache_key(source, resolution, channels)
    final = root / key
    if _is_complete(final, settings):
        return final
    with _locked(root / f"{key}.lock"):
        # Another process may have finished the build while this one waited.
        if _is_complete(final, settings):
            return final
        for stale in [*root.glob(f"{key}.tmp-*"), final]:
            shutil.rmtree(stale, ignore_errors=True)
        tmp = root / f"{key}.tmp-{os.getpid()}"
        try:
            _build(tmp, source, settings, num_workers, progress)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def load_level(cache_dir: str | Path, resolution: int, mmap: bool = True) -> np.ndarray:
    """One level of a prepared cache.

    Args:
        cache_dir: A folder returned by :func:`prepare_cache`.
        resolution: The level to load.
        mmap: Memory-map the file (read-only) instead of reading it into RAM.

    Returns:
        uint8 [N, C, resolution, resolution].
    """
    cache_dir = Path(cache_dir)
    file = cache_dir / f"{resolution}.npy"
    if not (cache_dir / MANIFEST).is_file() or not file.is_file():
        present = sorted(int(p.stem) for p in cache_dir.glob("*.npy") if p.stem.isdigit())
        raise FileNotFoundError(
            f"no complete {resolution}x{resolution} level in cache {cache_dir!s} "
            f"(levels present: {present}); prepare it with prepare_cache(resolution>={resolution})"
        )
    return np.load(file, mmap_mode="r" if mmap else None)


def _levels(resolution: int) -> list[int]:
    """4, 8, ..., resolution."""
    return [2**k for k in range(2, int(math.log2(resolution)) + 1)]


def _is_complete(folder: Path, settings: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a finished cache built with exactly ``settings``."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if any(manifest.get(name) != value for name, value in settings.items()):
        return False
    return all((folder / f"{res}.npy").is_file() for res in manifest.get("levels", [None]))


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock (``fcntl.flock``) on ``lock_file``."""
    with open(lock_file, "a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _build(
    folder: Path, source: ImageSource, settings: dict[str, Any], num_workers: int, progress: bool
) -> None:
    """Fill ``folder`` with every level, chunk by chunk, then write the manifest."""
    resolution, channels = settings["resolution"], settings["channels"]
    num_images = len(source)
    levels = _levels(resolution)
    footprint = sum(num_images * channels * res * res for res in levels)
    log.info(
        "Preparing data cache %s: %d images, levels %s, %.2f GB on disk",
        folder.with_name(folder.name.split(".tmp-")[0]),
        num_images,
        levels,
        footprint / 1e9,
    )
    free = shutil.disk_usage(folder.parent).free
    if footprint > free:
        raise OSError(
            f"the data cache needs {footprint / 1e9:.2f} GB but {folder.parent!s} has "
            f"{free / 1e9:.2f} GB free; set data.cache_dir to a larger disk"
        )
    folder.mkdir()
    arrays = {
        res: np.lib.format.open_memmap(
            folder / f"{res}.npy",
            mode="w+",
            dtype=np.uint8,
            shape=(num_images, channels, res, res),
        )
        for res in levels
    }

    # Chunks small enough for RAM, and several per worker so that the pool stays busy.
    chunk = max(1, CHUNK_BYTES // (channels * resolution * resolution))
    if num_workers > 0:
        chunk = min(chunk, math.ceil(num_images / (4 * num_workers)))
    bounds = [(start, min(start + chunk, num_images)) for start in range(0, num_images, chunk)]
    bar = (
        tqdm(total=num_images, desc="prepare data", unit="img", disable=not progress)
        if tqdm
        else None
    )
    chunks = _load_chunks(source, bounds, resolution, channels, num_workers)
    try:
        for (start, stop), images in zip(bounds, chunks, strict=True):
            # Each level is the box mean of the level above, written chunk by chunk.
            level = images  # [B, C, R, R]
            for res in reversed(levels):
                if res != resolution:
                    level = box_downsample(level)
                arrays[res][start:stop] = level
            if bar is not None:
                bar.update(stop - start)
    finally:
        chunks.close()  # Stops the worker pool now, also when a load failed.
        if bar is not None:
            bar.close()
    for array in arrays.values():
        array.flush()
    del arrays

    # The manifest goes last: its presence marks a finished build.
    manifest = {
        **settings,
        "num_images": num_images,
        "levels": levels,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _load_chunks(
    source: ImageSource,
    bounds: list[tuple[int, int]],
    resolution: int,
    channels: int,
    num_workers: int,
) -> Generator[np.ndarray, None, None]:
    """Yield the images of each ``(start, stop)`` chunk in order, uint8 [B, C, R, R].

    With workers, at most ``2 * num_workers`` chunks are in flight, which bounds the RAM used.
    """
    if num_workers <= 0:
        for start, stop in bounds:
            yield _load_chunk(source, start, stop, resolution, channels)
        return
    pool = ProcessPoolExecutor(num_workers)
    pending: deque[Future[np.ndarray]] = deque()
    try:
        for start, stop in bounds:
            pending.append(pool.submit(_load_chunk, source, start, stop, resolution, channels))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _load_chunk(
    source: ImageSource, start: int, stop: int, resolution: int, channels: int
) -> np.ndarray:
    """Images ``start..stop-1`` of ``source`` as uint8 [B, C, R, R]."""
    images = np.empty((stop - start, channels, resolution, resolution), dtype=np.uint8)
    expected = (resolution, resolution, channels)
    for i, index in enumerate(range(start, stop)):
        image = source.load(index, resolution, channels)  # [H, W, C]
        if image.shape != expected or image.dtype != np.uint8:
            raise ValueError(
                f"{type(source).__name__}.load({index}) gave {image.dtype} {list(image.shape)}, "
                f"expected uint8 {list(expected)}"
            )
        images[i] = image.transpose(2, 0, 1)
    return images
