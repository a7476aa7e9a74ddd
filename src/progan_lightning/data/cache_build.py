"""Building the multi-resolution cache (its layout: ``data/cache.py``).

:func:`prepare_cache` finds the cache of a source and settings, or builds it under an
inter-process lock into ``<key>.tmp-<pid>`` and renames it into place, so a cache under its
final name is always complete. Each level is the 2x2 box mean of the level above
(:func:`box_downsample`); the top level comes from the source. Files the source cannot read
are skipped (and listed in the manifest), or stop the build with their list when ``strict``;
a skipped image takes its label with it, and a class left without any image stops the build.
A damaged cache (see :func:`~progan_lightning.data.cache.cache_problems`) is rebuilt with a
warning that names the damage.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import io
import json
import logging
import math
import os
import shutil
import socket
import time
import warnings
from collections import deque
from collections.abc import Generator, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np
from PIL import Image

from progan_lightning.console import Progress
from progan_lightning.data.cache import (
    COMPRESSED_FORMATS,
    LABELS,
    MANIFEST,
    DamagedCacheWarning,
    Storage,
    cache_key,
    cache_problems,
    file_sha256,
    is_complete,
    level_files,
    levels_of,
    read_manifest,
)
from progan_lightning.data.files import SmallImageWarning, UnreadableImageError
from progan_lightning.data.sources import ImageSource, listing
from progan_lightning.faults import WRITE_FIXES, WriteError
from progan_lightning.fs import Timeout, check_folder, expand_path, file_lock
from progan_lightning.schedule import check_resolution

log = logging.getLogger(__name__)

RAW = Storage()  # every level as a raw array (the default)

CHUNK_BYTES = 64 * 2**20  # Full-resolution images held in RAM at once, per chunk.
LISTED_PROBLEMS = 10  # Paths named in a warning or error; the manifest keeps up to 1000.


class BadImagesWarning(UserWarning):
    """Some files could not be read and were left out of the cache."""


class BadImagesError(ValueError):
    """Files could not be read and ``data.strict`` is set (or no file could be read)."""


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


def prepare_cache(
    source: ImageSource,
    resolution: int,
    channels: int,
    cache_root: str | Path,
    num_workers: int = 0,
    progress: bool = True,
    strict: bool = False,
    storage: Storage = RAW,
    verify: bool | None = None,
) -> Path:
    """Build (once) and return the multi-resolution cache of ``source``.

    A complete cache with a matching manifest whose files pass :func:`cache_problems` is
    returned as is, without decoding anything; a damaged one is rebuilt (with a
    :class:`DamagedCacheWarning`).
    Otherwise the cache is built under a process lock into ``<key>.tmp-<pid>`` and renamed
    into place after its manifest is written, so an interrupted or failed build never
    leaves a folder that looks complete, and never touches another complete cache; a second
    process preparing the same cache waits, then reuses it.

    Args:
        source: Where images come from.
        resolution: Final resolution (a power of two >= 4); levels 4, 8, ..., resolution.
        channels: 3 (RGB) or 1 (grayscale).
        cache_root: Folder holding the caches (created if missing).
        num_workers: Processes that load images; 0 loads in this process.
        progress: Show a progress bar while building.
        strict: Stop with the list of unreadable files instead of skipping them.
        storage: Which levels are compressed, and how.
        verify: Check the SHA-256 of every file of a finished cache (True), only their sizes
            (False), or the checksums of caches up to ``FULL_CHECK_BYTES`` (None).

    Returns:
        The cache folder, ``cache_root / key``.

    Raises:
        BadImagesError: no file could be read, or some could not and ``strict`` is set, or
            every image of a class could not.
        OSError: ``cache_root`` cannot be created or written to while a build is needed
            (a finished cache in a read-only folder is served as is).
    """
    check_resolution(resolution, "data.resolution")
    if channels not in (1, 3):
        raise ValueError(f"data.channels={channels} is not supported; use 3 (RGB) or 1")
    root = check_folder(expand_path(cache_root, "data.cache_dir"), "data.cache_dir")
    with _writable(root):
        root.mkdir(parents=True, exist_ok=True)
    key, settings = cache_key(source, resolution, channels, storage)
    final = root / key
    if _needs_build(final, settings, verify):
        with _locked(root / f"{key}.lock"):
            # Another process may have finished the build (or the repair) while this one waited.
            if _needs_build(final, settings, verify, warn=False):
                for stale in [*root.glob(f"{key}.tmp-*"), final]:
                    shutil.rmtree(stale, ignore_errors=True)
                tmp = root / f"{key}.tmp-{os.getpid()}"
                try:
                    with _writable(root, building=True):
                        _build(tmp, source, settings, storage, num_workers, progress, strict)
                        _publish(tmp, final, settings)
                except BaseException:
                    shutil.rmtree(tmp, ignore_errors=True)
                    raise
                problems = cache_problems(final, full=True)
                if problems:
                    raise OSError(
                        f"the data cache {final} was damaged while it was written: "
                        f"{'; '.join(problems)}; check the disk of data.cache_dir={root}"
                    )
                return final
    manifest = read_manifest(final)
    if strict and manifest["num_skipped"]:
        raise BadImagesError(_problems_message(manifest["skipped"], manifest["num_skipped"], True))
    log.info(
        "Using data cache %s: %d images (%d files skipped at preparation)",
        final,
        manifest["num_images"],
        manifest["num_skipped"],
    )
    return final


def _publish(tmp: Path, final: Path, settings: dict[str, Any]) -> None:
    """Rename the finished build ``tmp`` to ``final``.

    If ``final`` appeared meanwhile (another machine built it on a shared file system whose
    locks do not reach across machines), keep that complete cache and drop this copy.
    """
    try:
        os.replace(tmp, final)
    except OSError:
        if not is_complete(final, settings):
            raise
        shutil.rmtree(tmp, ignore_errors=True)


def _needs_build(
    folder: Path, settings: dict[str, Any], verify: bool | None, warn: bool = True
) -> bool:
    """Whether ``folder`` must be (re)built: not a finished cache of ``settings``, or damaged."""
    if not is_complete(folder, settings):
        return True
    problems = cache_problems(folder, verify)
    if problems and warn:
        warnings.warn(
            f"the data cache {folder} is damaged ({'; '.join(problems[:LISTED_PROBLEMS])}); "
            "rebuilding it",
            DamagedCacheWarning,
            3,
        )
    return bool(problems)


CACHE_DIR_FIX = (
    "or set data.cache_dir (or the environment variable PROGAN_CACHE_DIR) to another folder"
)


@contextlib.contextmanager
def _writable(root: Path, building: bool = False) -> Iterator[None]:
    """Turn an ``OSError`` from writing into the cache root into one that names
    ``data.cache_dir``: a :class:`WriteError` (exit status 4) for a full disk, a size limit or
    a read-only folder; the same type otherwise (a file where a folder should be).
    ``building``: around a build, which also reads the images: only errors of writes into
    ``root`` are turned, the others pass as they are."""
    try:
        yield
    except OSError as error:
        if isinstance(error, WriteError):
            raise
        where = Path(error.filename) if isinstance(error.filename, str | Path) else root
        if error.errno in WRITE_FIXES and (not building or where.is_relative_to(root)):
            raise WriteError(where, error, CACHE_DIR_FIX) from error
        if building:
            raise
        raise type(error)(
            f"data.cache_dir={root!s} cannot be written to ({type(error).__name__}: {error}); "
            "set data.cache_dir (or the environment variable PROGAN_CACHE_DIR) to a writable "
            "folder"
        ) from error


@contextlib.contextmanager
def _locked(lock_file: Path) -> Iterator[None]:
    """Hold an exclusive inter-process lock on ``lock_file`` (see ``fs.py``); while another
    process holds it, say once whom this one waits for (the holder writes its process id and
    host beside the lock: ``<lock>.holder``)."""
    lock = file_lock(lock_file)
    holder = lock_file.with_name(f"{lock_file.name}.holder")
    with _writable(lock_file.parent):
        try:
            lock.acquire(timeout=0)
        except Timeout:
            try:
                who = holder.read_text().strip() or "another process"
            except OSError:
                who = "another process"
            log.info(
                f"waiting for {who}, which prepares a data cache in {lock_file.parent} "
                f"(lock {lock_file.name}); this one goes on when that one is done"
            )
            lock.acquire()
        holder.write_text(f"process {os.getpid()} on {socket.gethostname()}\n")
    try:
        yield
    finally:
        holder.unlink(missing_ok=True)
        lock.release()


@dataclasses.dataclass
class _Chunk:
    """What one worker made of images ``start..stop-1``."""

    arrays: dict[int, np.ndarray]  # raw levels, uint8 [B, C, r, r] (B readable images)
    encoded: dict[int, list[bytes]]  # compressed levels, B encoded images each
    skipped: list[tuple[str, str]]  # (name, reason) of each unreadable file
    small: list[str]  # names of the images that were upscaled
    labels: np.ndarray  # int64 [B] class indices (empty for an unlabelled source)


def _build(
    folder: Path,
    source: ImageSource,
    settings: dict[str, Any],
    storage: Storage,
    num_workers: int,
    progress: bool,
    strict: bool,
) -> None:
    """Fill ``folder`` with every level, chunk by chunk, then write the manifest."""
    resolution, channels = settings["resolution"], settings["channels"]
    levels = levels_of(resolution)
    raw = [res for res in levels if not storage.compressed(res)]
    _check_room(folder, len(source), resolution, channels, storage)
    with _writable(folder.parent):
        folder.mkdir()
    written, skipped, small, labels = _write_levels(
        folder, source, resolution, channels, storage, num_workers, progress
    )
    if written == 0 or (skipped and strict):
        raise BadImagesError(_problems_message(skipped, len(skipped), strict, written == 0))
    classes = _store_labels(folder, source.class_names, labels, skipped)
    if skipped:
        warnings.warn(_problems_message(skipped, len(skipped), strict), BadImagesWarning, 2)
        for res in raw:
            _shrink_npy(folder / f"{res}.npy", written)
    if small:
        warnings.warn(
            f"{len(small)} of {written} images are smaller than {resolution}x{resolution} and "
            f"were upscaled, e.g. {', '.join(small[:LISTED_PROBLEMS])}",
            SmallImageWarning,
            2,
        )
    _write_manifest(folder, settings, storage, written, skipped, len(small), classes)


def _check_room(
    folder: Path, num_files: int, resolution: int, channels: int, storage: Storage
) -> None:
    """Log what the build of ``folder`` stores, and refuse it when its disk lacks the room.

    Raises:
        OSError: the levels need more than the free space of ``folder.parent``.
    """
    levels = levels_of(resolution)
    compressed = [res for res in levels if storage.compressed(res)]
    raw = [res for res in levels if res not in compressed]
    raw_bytes = sum(num_files * channels * res * res for res in raw)
    encoded_bytes = sum(num_files * channels * res * res for res in compressed)
    encoded_bytes *= COMPRESSED_FORMATS[storage.compress_format][1]
    name = folder.with_name(folder.name.split(".tmp-")[0])
    log.info(
        "Preparing data cache %s: %d images, levels %s: %.2f GB of arrays%s",
        name,
        num_files,
        levels,
        raw_bytes / 1e9,
        f" + about {encoded_bytes / 1e9:.2f} GB of {storage.compress_format.upper()} "
        f"for levels {compressed}"
        if compressed
        else "",
    )
    free = shutil.disk_usage(folder.parent).free
    if raw_bytes + encoded_bytes > free:
        raise OSError(
            f"the data cache needs about {(raw_bytes + encoded_bytes) / 1e9:.2f} GB but "
            f"{folder.parent!s} has {free / 1e9:.2f} GB free; set data.cache_dir to a larger "
            "disk, or data.compress_above to store the top levels compressed"
        )


def _store_labels(
    folder: Path, class_names: list[str], labels: np.ndarray, skipped: list[tuple[str, str]]
) -> dict[str, Any]:
    """Write the labels of a labelled source, once every class kept a readable image.

    Args:
        folder: The cache being built.
        class_names: The source's classes (empty: unlabelled, nothing is written).
        labels: int64 [written] class of each stored image.
        skipped: ``(name, reason)`` of each unreadable file, for the message.

    Returns:
        The manifest's ``class_names`` and ``class_counts``; empty when unlabelled.

    Raises:
        BadImagesError: a class has no readable image.
    """
    if not class_names:
        return {}
    counts = np.bincount(labels, minlength=len(class_names))  # [C]
    empty = [name for name, count in zip(class_names, counts, strict=True) if not count]
    if empty:
        unreadable = (
            f"; every file of theirs is among the {len(skipped)} that could not be read: "
            f"{_listed_problems(skipped, len(skipped))}"
            if skipped
            else ""
        )
        raise BadImagesError(
            f"{len(empty)} of the {len(class_names)} classes have no readable image: "
            f"{listing(empty)}{unreadable}. Fix or replace their files, or remove the classes"
        )
    np.save(folder / LABELS, labels)
    return {"class_names": class_names, "class_counts": counts.tolist()}


def _write_manifest(
    folder: Path,
    settings: dict[str, Any],
    storage: Storage,
    written: int,
    skipped: list[tuple[str, str]],
    num_upscaled: int,
    classes: dict[str, Any],
) -> None:
    """Write the manifest, last: its presence marks a finished build. It lists the settings,
    the counts, the level formats and the size and SHA-256 of every stored file."""
    levels = levels_of(settings["resolution"])
    stored = [
        name
        for res in levels
        for name in level_files(res, "" if storage.compressed(res) else "npy")
    ]
    stored += [LABELS] if classes else []
    manifest = {
        **settings,
        "num_images": written,
        "num_skipped": len(skipped),
        "skipped": [list(item) for item in skipped[:1000]],
        "num_upscaled": num_upscaled,
        "levels": levels,
        "level_format": {
            str(res): storage.compress_format if storage.compressed(res) else "npy"
            for res in levels
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "files": {
            name: {"bytes": (folder / name).stat().st_size, "sha256": file_sha256(folder / name)}
            for name in stored
        },
        **classes,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def _write_levels(
    folder: Path,
    source: ImageSource,
    resolution: int,
    channels: int,
    storage: Storage,
    num_workers: int,
    progress: bool,
) -> tuple[int, list[tuple[str, str]], list[str], np.ndarray]:
    """Load every image and write every level into ``folder``.

    Returns:
        ``(written, skipped, small, labels)``: the number of images stored, ``(name,
        reason)`` of each unreadable file, the names of the upscaled images and the class
        of each stored image (int64 [written], empty when unlabelled). Raw levels keep room
        for every file; the caller shrinks them when files were skipped.
    """
    num_files = len(source)
    levels = levels_of(resolution)
    bounds = _chunk_bounds(num_files, resolution, channels, num_workers)
    skipped: list[tuple[str, str]] = []
    small: list[str] = []
    labels: list[np.ndarray] = []
    written = 0
    with contextlib.ExitStack() as stack:
        out = _LevelFiles(
            folder,
            {
                res: _open_level(folder / f"{res}.npy", (num_files, channels, res, res))
                for res in levels
                if not storage.compressed(res)
            },
            {
                res: stack.enter_context(open(folder / f"{res}.pack", "wb"))
                for res in levels
                if storage.compressed(res)
            },
        )
        bar = stack.enter_context(Progress(num_files, "prepare data", "img", enabled=progress))
        jobs = stack.enter_context(
            contextlib.closing(
                _load_chunks(source, bounds, resolution, channels, storage, num_workers)
            )
        )  # Closing stops the worker pool at once, also when a load failed.
        for (start, stop), result in zip(bounds, jobs, strict=True):
            count = stop - start - len(result.skipped)
            out.write(result, written)
            written += count
            skipped += result.skipped
            small += result.small
            labels.append(result.labels)
            bar.update(stop - start, **({"skipped": len(skipped)} if skipped else {}))
        out.flush()
    out.write_offsets()
    return written, skipped, small, np.concatenate([np.empty(0, np.int64), *labels])


def _chunk_bounds(
    num_files: int, resolution: int, channels: int, num_workers: int
) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of images: small enough for RAM (``CHUNK_BYTES`` at
    full resolution), and several per worker so that the pool stays busy."""
    chunk = max(1, CHUNK_BYTES // (channels * resolution * resolution))
    if num_workers > 0:
        chunk = min(chunk, math.ceil(num_files / (4 * num_workers)))
    return [(start, min(start + chunk, num_files)) for start in range(0, num_files, chunk)]


class _LevelFiles:
    """The files of every level being written.

    Args:
        folder: The cache being built.
        arrays: Each raw level, memory-mapped uint8 [num_files, C, r, r] (room for every file).
        packs: Each compressed level's pack of encoded images, open for writing.
    """

    def __init__(
        self, folder: Path, arrays: dict[int, np.memmap], packs: dict[int, IO[bytes]]
    ) -> None:
        self.folder = folder
        self.arrays = arrays
        self.packs = packs
        self.offsets: dict[int, list[int]] = {res: [0] for res in packs}  # each pack's ends

    def write(self, chunk: _Chunk, at: int) -> None:
        """Store the readable images of ``chunk`` from image ``at`` on."""
        for res, array in chunk.arrays.items():
            self.arrays[res][at : at + len(array)] = array
        for res, images in chunk.encoded.items():
            for data in images:
                self.packs[res].write(data)
                self.offsets[res].append(self.offsets[res][-1] + len(data))

    def flush(self) -> None:
        """Write the raw levels' rows to their files."""
        for array in self.arrays.values():
            array.flush()

    def write_offsets(self) -> None:
        """Write each pack's end offsets, int64 [images + 1]: ``<res>.offsets.npy``."""
        for res, ends in self.offsets.items():
            np.save(self.folder / f"{res}.offsets.npy", np.asarray(ends, dtype=np.int64))


def _open_level(path: Path, shape: tuple[int, ...]) -> np.memmap:
    """A new raw level ``path`` of ``shape`` (uint8), memory-mapped, its blocks reserved on
    disk first where the file system can: a full disk then fails here with ``ENOSPC``, not
    with a ``SIGBUS`` while the images are copied in."""
    array = np.lib.format.open_memmap(path, "w+", np.uint8, shape)
    if hasattr(os, "posix_fallocate"):
        with open(path, "r+b") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
            except OSError as error:
                if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                    raise
    return array


def _problems_message(
    skipped: list[Any], count: int, strict: bool, none_read: bool = False
) -> str:
    """One message for all unreadable files: how many, the first few with reasons, the fix."""
    listed = _listed_problems(skipped, count)
    if none_read:
        return (
            f"none of the {count} image files could be read: {listed}. "
            "Point data.path at a folder (or .zip) of valid images"
        )
    what = f"{count} image files could not be read: {listed}"
    if strict:
        return f"{what}. Fix or remove them, or set data.strict=false to skip them"
    return f"{what}. Skipped them; set data.strict=true to stop instead"


def _listed_problems(skipped: list[Any], count: int) -> str:
    """The first few unreadable files with reasons: ``a (reason); b (reason); and M more``."""
    listed = "; ".join(f"{name} ({reason})" for name, reason in skipped[:LISTED_PROBLEMS])
    more = f"; and {count - LISTED_PROBLEMS} more" if count > LISTED_PROBLEMS else ""
    return listed + more


def _shrink_npy(file: Path, length: int) -> None:
    """Cut the .npy array in ``file`` to its first ``length`` rows, in place.

    numpy writes every header with room for the first axis to grow to 21 digits, so the
    header of the shorter shape, written by numpy's own ``write_array_header_*``, has the
    length of the old one: the rows stay where they are, and the file is truncated after
    the last one.
    """
    fmt = np.lib.format
    with open(file, "r+b") as handle:
        version = fmt.read_magic(handle)
        read_header, write_header = {
            (1, 0): (fmt.read_array_header_1_0, fmt.write_array_header_1_0),
            (2, 0): (fmt.read_array_header_2_0, fmt.write_array_header_2_0),
        }[version]
        shape, fortran, dtype = read_header(handle)
        data_start = handle.tell()
        header = io.BytesIO()
        write_header(
            header,
            {
                "descr": fmt.dtype_to_descr(dtype),
                "fortran_order": fortran,
                "shape": (length, *shape[1:]),
            },
        )
        if header.tell() != data_start:
            raise ValueError(
                f"cannot shrink {file} in place: its new header takes {header.tell()} bytes, "
                f"the old {data_start}"
            )
        handle.seek(0)
        handle.write(header.getvalue())
        handle.truncate(data_start + length * math.prod(shape[1:]) * dtype.itemsize)


def _load_chunks(
    source: ImageSource,
    bounds: list[tuple[int, int]],
    resolution: int,
    channels: int,
    storage: Storage,
    num_workers: int,
) -> Generator[_Chunk, None, None]:
    """Yield each ``(start, stop)`` chunk's :class:`_Chunk`, in order.

    With workers, at most ``2 * num_workers`` chunks are in flight, which bounds the RAM used.
    """
    args = (resolution, channels, storage)
    if num_workers <= 0:
        for start, stop in bounds:
            yield _load_chunk(source, start, stop, *args)
        return
    pool = ProcessPoolExecutor(num_workers)
    pending: deque[Future[_Chunk]] = deque()
    try:
        for start, stop in bounds:
            pending.append(pool.submit(_load_chunk, source, start, stop, *args))
            if len(pending) >= 2 * num_workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _load_chunk(
    source: ImageSource, start: int, stop: int, resolution: int, channels: int, storage: Storage
) -> _Chunk:
    """Load images ``start..stop-1`` (and their labels), make every level and encode the
    compressed ones."""
    images = np.empty((stop - start, channels, resolution, resolution), dtype=np.uint8)
    expected = (resolution, resolution, channels)
    num_classes = len(source.class_names)
    skipped: list[tuple[str, str]] = []
    small: list[str] = []
    labels: list[int] = []
    count = 0
    for index in range(start, stop):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", SmallImageWarning)
            try:
                image = source.load(index, resolution, channels)  # [H, W, C]
            except UnreadableImageError as error:
                skipped.append((error.name, error.reason))
                continue
        if any(issubclass(w.category, SmallImageWarning) for w in caught):
            small.append(source.name(index))
        if image.shape != expected or image.dtype != np.uint8:
            raise ValueError(
                f"{type(source).__name__}.load({index}) gave {image.dtype} {list(image.shape)}, "
                f"expected uint8 {list(expected)}"
            )
        images[count] = image.transpose(2, 0, 1)
        count += 1
        if num_classes:
            label = source.label(index)
            if not 0 <= label < num_classes:
                raise ValueError(
                    f"{type(source).__name__}.label({index}) gave {label}, expected a class "
                    f"index in [0, {num_classes})"
                )
            labels.append(label)
    level = images[:count]  # [B, C, R, R]
    arrays: dict[int, np.ndarray] = {}
    encoded: dict[int, list[bytes]] = {}
    for res in reversed(levels_of(resolution)):
        if res != resolution:
            level = box_downsample(level)
        if storage.compressed(res):
            encoded[res] = [_encode(image, storage.compress_format) for image in level]
        else:
            arrays[res] = level
    return _Chunk(arrays, encoded, skipped, small, np.asarray(labels, dtype=np.int64))


def _encode(image: np.ndarray, compress_format: str) -> bytes:
    """uint8 [C, H, W] -> the bytes of one PNG or JPEG file."""
    options = dict(COMPRESSED_FORMATS[compress_format][0])
    buffer = io.BytesIO()
    pixels = image[0] if image.shape[0] == 1 else image.transpose(1, 2, 0)
    Image.fromarray(np.ascontiguousarray(pixels)).save(buffer, **options)
    return buffer.getvalue()
