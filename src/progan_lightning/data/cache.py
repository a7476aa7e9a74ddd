"""The multi-resolution cache: one uint8 copy of the dataset per resolution 4, 8, ..., R.

Like the official code's one record per level of detail, low-resolution phases read small
arrays and never decode full-size images. A cache lives in ``cache_root/<key>/``::

    manifest.json   written last: settings, num_images, levels, level_format, skipped files,
                    and ``files``: the size and SHA-256 of every other file
    4.npy           uint8 [N, C, 4, 4]
    8.npy           uint8 [N, C, 8, 8]
    ...
    R.npy           uint8 [N, C, R, R]   (R = the requested resolution)
    labels.npy      int64 [N] class indices, when the source is labelled (``data.labels``)

Levels above ``compress_above`` are stored compressed instead (``R.pack``: the encoded
images back to back, ``R.offsets.npy``: int64 [N + 1] byte offsets) and decoded when
read (:class:`EncodedLevel`), in the DataLoader's workers during training: 30k CelebA-HQ
images need 94 GB as raw 1024x1024 arrays, about half that as PNG and a seventh as JPEG.

``<key>`` is a short SHA-1 of the source fingerprint, resolution, channels, storage and
format version (:func:`cache_key`), so any change of data or settings gets its own folder.
This module reads a cache and checks it; ``data/cache_build.py`` builds one
(:func:`~progan_lightning.data.cache_build.prepare_cache`). The manifest of a labelled cache
also holds ``class_names`` and ``class_counts``.

Each time a cache is opened the sizes of its files are checked against the manifest (a
truncated level), and their SHA-256 too when the cache is small (``FULL_CHECK_BYTES``) or
when asked (``verify=True``, ``progan-prepare verify=true``); a build checks them all once
written. A damaged cache is rebuilt, with a warning that names the damage.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from progan_lightning.data.sources import ImageSource
from progan_lightning.faults import DamagedFile
from progan_lightning.schedule import check_resolution, resolution_stage, stage_resolution

log = logging.getLogger(__name__)

FORMAT_VERSION = 3  # 3: the manifest records each file's size and SHA-256
MANIFEST = "manifest.json"
LABELS = "labels.npy"
# Encoder settings per compressed format, and the fraction of the raw size to expect.
COMPRESSED_FORMATS = {
    "png": ({"format": "PNG", "compress_level": 1}, 0.6),  # lossless
    "jpeg": ({"format": "JPEG", "quality": 95, "subsampling": 0}, 0.15),  # lossy, 4:4:4
}
FULL_CHECK_BYTES = 2**30  # Caches up to this size check every checksum when opened.


class DamagedCacheWarning(UserWarning):
    """A cache's files differ from its manifest (truncated, overwritten); it is rebuilt."""


@dataclasses.dataclass(frozen=True)
class Storage:
    """How the levels are stored: raw arrays up to ``compress_above``, encoded above it.

    Args:
        compress_above: Levels above this resolution are stored compressed; None = none.
        compress_format: ``png`` (lossless) or ``jpeg`` (quality 95, no chroma subsampling).
    """

    compress_above: int | None = None
    compress_format: str = "png"

    def __post_init__(self) -> None:
        if self.compress_above is not None:
            check_resolution(self.compress_above, "data.compress_above")
        if self.compress_format not in COMPRESSED_FORMATS:
            raise ValueError(
                f"data.compress_format={self.compress_format!r} is not supported; "
                f"use one of {sorted(COMPRESSED_FORMATS)}"
            )

    def compressed(self, resolution: int) -> bool:
        return self.compress_above is not None and resolution > self.compress_above

    def settings(self) -> dict[str, Any]:
        """What goes into the cache key: the format only matters when something is compressed."""
        if self.compress_above is None:
            return {"compress_above": None}
        return dataclasses.asdict(self)


def cache_key(
    source: ImageSource, resolution: int, channels: int, storage: Storage = Storage()
) -> tuple[str, dict[str, Any]]:
    """The cache folder name and the settings it stands for (as stored in the manifest).

    Args:
        source: The data source.
        resolution: Final resolution.
        channels: 3 (RGB) or 1 (grayscale).
        storage: Which levels are compressed, and how.

    Returns:
        ``(key, settings)``: a 16-hex-digit key and the JSON-normalised settings.
    """
    settings = {
        "format_version": FORMAT_VERSION,
        "source": source.fingerprint(),
        "resolution": resolution,
        "channels": channels,
        "storage": storage.settings(),
    }
    text = json.dumps(settings, sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16], json.loads(text)


def read_manifest(cache_dir: str | Path) -> dict[str, Any]:
    """The manifest of a complete cache (see the module docstring)."""
    return json.loads((Path(cache_dir) / MANIFEST).read_text())


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(16 * 2**20):
            digest.update(block)
    return digest.hexdigest()


def cache_problems(cache_dir: str | Path, full: bool | None = None) -> list[str]:
    """What is wrong with the files of a complete cache, against its manifest's ``files``.

    Args:
        cache_dir: A folder returned by :func:`prepare_cache`.
        full: Also compare every file's SHA-256 (True), only sizes (False), or the checksums
            when the files add up to at most ``FULL_CHECK_BYTES`` (None).

    Returns:
        One line per damaged file (missing, another size, another checksum); empty when
        the cache is intact.
    """
    cache_dir = Path(cache_dir)
    files: dict[str, dict[str, Any]] = read_manifest(cache_dir)["files"]
    if full is None:
        full = sum(record["bytes"] for record in files.values()) <= FULL_CHECK_BYTES
    problems = []
    for name, record in files.items():
        path = cache_dir / name
        size = path.stat().st_size if path.is_file() else None
        if size is None:
            problems.append(f"{name} is missing")
        elif size != record["bytes"]:
            problems.append(f"{name} has {size} bytes, {record['bytes']} when it was written")
        elif full and file_sha256(path) != record["sha256"]:
            problems.append(f"{name} differs from its SHA-256 when it was written")
    return problems


class EncodedLevel:
    """A compressed cache level that reads like a uint8 array [N, C, R, R].

    Indexing with an int gives [C, R, R]; with an integer array, [B, C, R, R]. Images are
    decoded on each access. Pickles as its paths, so DataLoader workers reopen the files
    instead of copying them.

    Args:
        cache_dir: The cache folder.
        resolution: The level.
        channels: 3 or 1.
    """

    dtype = np.dtype(np.uint8)

    def __init__(self, cache_dir: Path, resolution: int, channels: int) -> None:
        self.cache_dir = Path(cache_dir)
        self.resolution = resolution
        self.offsets = np.load(self.cache_dir / f"{resolution}.offsets.npy")  # int64 [N + 1]
        self.shape = (len(self.offsets) - 1, channels, resolution, resolution)
        self._pack: np.ndarray | None = None

    def __len__(self) -> int:
        return self.shape[0]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_pack": None}

    @property
    def nbytes(self) -> int:
        """Bytes on disk (not the decoded size)."""
        return int(self.offsets[-1])

    def _decode(self, index: int) -> np.ndarray:
        if self._pack is None:
            self._pack = np.memmap(self.cache_dir / f"{self.resolution}.pack", mode="r")
        data = self._pack[self.offsets[index] : self.offsets[index + 1]]
        with Image.open(io.BytesIO(data.tobytes())) as image:
            array = np.asarray(image)  # [R, R, C] or [R, R]
        return array.reshape(self.resolution, self.resolution, -1).transpose(2, 0, 1)

    def __getitem__(self, index: int | np.ndarray) -> np.ndarray:
        if np.ndim(index) == 0:
            return self._decode(int(index))
        out = np.empty((len(index), *self.shape[1:]), dtype=np.uint8)
        for i, j in enumerate(np.asarray(index).tolist()):
            out[i] = self._decode(j)
        return out


def load_labels(cache_dir: str | Path) -> np.ndarray | None:
    """The class index of every image of a prepared cache.

    Args:
        cache_dir: A folder returned by :func:`prepare_cache`.

    Returns:
        int64 [N], aligned with every level; None for a cache of an unlabelled source.
    """
    cache_dir = Path(cache_dir)
    if "class_names" not in read_manifest(cache_dir):
        return None
    return np.load(cache_dir / LABELS)


def load_level(
    cache_dir: str | Path, resolution: int, mmap: bool = True
) -> np.ndarray | EncodedLevel:
    """One level of a prepared cache.

    Args:
        cache_dir: A folder returned by :func:`prepare_cache`.
        resolution: The level to load.
        mmap: Memory-map a raw level (read-only) instead of reading it into RAM.

    Returns:
        uint8 [N, C, resolution, resolution], or an :class:`EncodedLevel` for a
        compressed level (decoded when indexed).
    """
    cache_dir = Path(cache_dir)
    try:
        manifest = read_manifest(cache_dir)
    except (OSError, ValueError):
        manifest = {"levels": []}
    if resolution not in manifest["levels"]:
        raise FileNotFoundError(
            f"no complete {resolution}x{resolution} level in cache {cache_dir!s} "
            f"(levels present: {manifest['levels']}); "
            f"prepare it with prepare_cache(resolution>={resolution})"
        )
    try:
        if manifest["level_format"].get(str(resolution)) != "npy":
            return EncodedLevel(cache_dir, resolution, manifest["channels"])
        return np.load(cache_dir / f"{resolution}.npy", mmap_mode="r" if mmap else None)
    except (OSError, ValueError) as error:  # A damaged header, a truncated file.
        raise DamagedFile(
            cache_dir / f"{resolution}.npy",
            f"damaged data cache level ({str(error).splitlines()[0]})",
            f"delete the folder {cache_dir} and run again: the cache is rebuilt",
        ) from None


def levels_of(resolution: int) -> list[int]:
    """4, 8, ..., resolution."""
    return [stage_resolution(s) for s in range(resolution_stage(resolution) + 1)]


def level_files(resolution: int, storage: str) -> list[str]:
    if storage == "npy":
        return [f"{resolution}.npy"]
    return [f"{resolution}.pack", f"{resolution}.offsets.npy"]


def is_complete(folder: Path, settings: dict[str, Any]) -> bool:
    """Whether ``folder`` holds a finished cache built with exactly ``settings``."""
    try:
        manifest = read_manifest(folder)
        if any(manifest[name] != value for name, value in settings.items()):
            return False
        files = [
            name
            for res in manifest["levels"]
            for name in level_files(res, manifest["level_format"][str(res)])
        ]
        if "class_names" in manifest:
            files.append(LABELS)
        recorded = manifest["files"]
    except (OSError, ValueError, KeyError):
        return False
    return set(files) <= set(recorded)
