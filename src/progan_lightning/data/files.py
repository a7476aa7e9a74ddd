"""Images from files: a folder (recursively) or a ``.zip`` archive of image files.

:class:`FolderSource` is an :class:`~progan_lightning.data.sources.ImageSource`. It lists
the images once (sorted, so the order is the same on every machine) and decodes one on
each :meth:`~FolderSource.load`. A file that cannot be decoded, or has more pixels than
``data.max_image_pixels``, raises :class:`UnreadableImageError`; an image smaller than the
target warns with :class:`SmallImageWarning`. The cache builder (``data/cache_build.py``) turns
both into one summary for the whole dataset. Files in image formats that are not read
(HEIC, PSD, ...) are left out with one :class:`IgnoredFilesWarning`.

With ``data.labels=folders`` or ``json`` each image has a class (see
:mod:`progan_lightning.data.labels`). Every label problem is found when the source is
made, before anything is decoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import warnings
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from PIL import Image, ImageColor, ImageOps

from progan_lightning.data.labels import (
    LABELS,
    LABELS_FILE,
    LABELS_FORMAT,
    check_every_class_used,
    folder_labels,
    json_labels,
)
from progan_lightning.data.sources import check_labels, check_load_args, to_array
from progan_lightning.fs import expand_path, file_kind

# Read with PIL's own decoders (a GIF gives its first frame).
IMAGE_EXTENSIONS = (
    *(".png", ".jpg", ".jpeg", ".jpe", ".jfif", ".webp", ".bmp", ".tif", ".tiff", ".gif"),
    *(".ppm", ".pgm", ".pbm", ".pnm", ".tga"),
)
# Image formats that are not read: their files are counted in one warning, not skipped silently.
IGNORED_IMAGE_EXTENSIONS = (
    *(".heic", ".heif", ".avif", ".jp2", ".j2k", ".jpx", ".jxl", ".psd", ".ico", ".icns"),
    *(".svg", ".exr", ".hdr", ".dng", ".cr2", ".nef", ".arw", ".raw", ".pcx", ".qoi"),
)
# PIL refuses images above 2 x Image.MAX_IMAGE_PIXELS as "decompression bombs"; the same
# default keeps every cache built before data.max_image_pixels existed valid.
DEFAULT_MAX_IMAGE_PIXELS = 2 * (1024 * 1024 * 1024 // 4 // 3)  # 178956970, ~179 megapixels
FITS = ("crop", "pad")


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, empty, not an image) or is
    larger than ``data.max_image_pixels``; ``fix`` (None: the reason says it) ends the message."""

    def __init__(self, name: str, reason: str, fix: str | None = "fix or remove the file") -> None:
        super().__init__(f"cannot read image {name} ({reason})" + (f"; {fix}" if fix else ""))
        self.name = name
        self.reason = reason


class SmallImageWarning(UserWarning):
    """An image smaller than the target resolution was upscaled."""


class IgnoredFilesWarning(UserWarning):
    """Files in an image format that is not read were left out of the dataset."""


def parse_background(value: str | list[int] | tuple[int, ...]) -> tuple[int, int, int]:
    """A colour as an RGB triple: a name or ``#rrggbb`` (any PIL colour) or three ints 0-255.

    Raises:
        ValueError: naming ``data.background`` and the accepted forms.
    """
    hint = "use a colour name ('white'), '#rrggbb' or [r, g, b] with values 0-255"
    if isinstance(value, str):
        try:
            return ImageColor.getrgb(value)[:3]
        except ValueError as error:
            raise ValueError(f"data.background={value!r} is not a colour; {hint}") from error
    rgb = tuple(value)
    if len(rgb) != 3 or not all(isinstance(v, int) and 0 <= v <= 255 for v in rgb):
        raise ValueError(f"data.background={list(rgb)!r} is not a colour; {hint}")
    return rgb  # type: ignore[return-value]


class FolderSource:
    """Every image file under a folder (recursively) or inside a ``.zip``, in sorted order.

    Files with the extensions in ``IMAGE_EXTENSIONS`` (any case) count, a GIF with its first
    frame; files in the formats of ``IGNORED_IMAGE_EXTENSIONS`` are left out with one
    :class:`IgnoredFilesWarning`; hidden files and folders (names starting with ".", e.g.
    macOS ``._*`` forks) and ``__MACOSX`` are skipped. Each image is rotated by its EXIF
    orientation, composited on ``background`` where transparent, converted to RGB (or
    luma), made square (centre-cropped or padded with ``background``) and resized with
    Lanczos (box-reduced first when much larger).

    Args:
        path: Folder of images or a ``.zip`` of images (``~`` is expanded).
        background: Colour under transparent pixels and of the padding.
        fit: ``crop`` (centre square) or ``pad`` (whole image, padded to a square).
        max_image_pixels: Images with more pixels (width x height) are unreadable, and so
            skipped (PIL's decompression-bomb guard); None = no limit.
        labels: ``none``, ``folders`` (class = first folder under ``path``, names sorted)
            or ``json`` (``path/dataset.json``, see the module docstring).
    """

    def __init__(
        self,
        path: str | Path,
        background: str | list[int] | tuple[int, ...] = (0, 0, 0),
        fit: Literal["crop", "pad"] = "crop",
        max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
        labels: str = "none",
    ) -> None:
        self.path = expand_path(path, "data.path")
        self.background = parse_background(background)
        if fit not in FITS:
            raise ValueError(f"data.fit={fit!r} is not supported; use one of {FITS}")
        self.fit = fit
        self.labels = check_labels(labels, LABELS, "folder")
        if max_image_pixels is not None and (
            isinstance(max_image_pixels, bool)
            or not isinstance(max_image_pixels, int)
            or max_image_pixels < 1
        ):
            raise ValueError(
                f"data.max_image_pixels={max_image_pixels!r} is not a pixel count; use a "
                f"positive integer (default {DEFAULT_MAX_IMAGE_PIXELS}) or null for no limit"
            )
        self.max_image_pixels = max_image_pixels
        accepted = " ".join(IMAGE_EXTENSIONS)
        if not self.path.exists():
            raise FileNotFoundError(
                f"data.path={self.path!s} does not exist; "
                "set data.path to a folder (or .zip) of images"
            )
        self.is_zip = self.path.is_file() and zipfile.is_zipfile(self.path)
        if not self.path.is_dir() and not self.is_zip:
            kind = file_kind(self.path)
            if kind == "a zip archive" or _suffix(self.path.name) == ".zip":
                raise ValueError(
                    f"data.path={self.path!s} is a damaged .zip ({_zip_problem(self.path)}); "
                    "download or pack it again"
                )
            raise ValueError(
                f"data.path={self.path!s} is {kind}, not a folder or a .zip; "
                f"set data.path to a folder (or .zip) of images ({accepted})"
            )
        self._zip: zipfile.ZipFile | None = None
        names = [
            name
            for name in (self._list_zip() if self.is_zip else self._list_folder())
            if not any(_hidden(part) for part in name.split("/"))
        ]
        self.files = sorted(name for name in names if _suffix(name) in IMAGE_EXTENSIONS)
        ignored = Counter(
            _suffix(name) for name in names if _suffix(name) in IGNORED_IMAGE_EXTENSIONS
        )
        if ignored:
            counts = ", ".join(f"{suffix}: {count}" for suffix, count in sorted(ignored.items()))
            total = ignored.total()
            warnings.warn(
                f"data.path={self.path!s}: left out {total} file{'s' * (total != 1)} in image "
                f"formats that are not read ({counts}); convert them to one of {accepted} to "
                "use them",
                IgnoredFilesWarning,
                stacklevel=2,
            )
        if not self.files:
            raise ValueError(
                f"data.path={self.path!s} holds no image files; "
                f"set data.path to a folder (or .zip) of images ({accepted})"
            )
        # Class names and the class index of each file, int64 [N] aligned with self.files.
        self.class_names: list[str] = []
        self._labels: np.ndarray | None = None
        if self.labels == "folders":
            self.class_names, self._labels = self._folder_labels()
        elif self.labels == "json":
            self.class_names, self._labels = self._json_labels()
        if self._labels is not None:
            where = (
                f"the class folders of data.path={self.path!s}"
                if self.labels == "folders"
                else self._labels_file()
            )
            check_every_class_used(self._labels, self.class_names, self.labels, where)

    def _labels_file(self) -> str:
        """Where ``dataset.json`` is looked for, for messages."""
        separator = ":" if self.is_zip else "/"
        return f"{self.path}{separator}{LABELS_FILE}"

    def _folder_labels(self) -> tuple[list[str], np.ndarray]:
        """Classes from the first folder level: sorted folder names, and each file's index."""
        if self.is_zip:
            with zipfile.ZipFile(self.path) as archive:
                folders = {name.split("/")[0] for name in archive.namelist() if "/" in name}
        else:
            folders = {entry.name for entry in self.path.iterdir() if entry.is_dir()}
        visible = {folder for folder in folders if not _hidden(folder)}
        return folder_labels(self.files, visible, self.name)

    def _json_labels(self) -> tuple[list[str], np.ndarray]:
        """Classes from ``dataset.json``: its (or numbered) class names, each file's index."""
        where = self._labels_file()
        try:
            if self.is_zip:
                with zipfile.ZipFile(self.path) as archive:
                    text = archive.read(LABELS_FILE)
            else:
                text = (self.path / LABELS_FILE).read_bytes()
        except (KeyError, FileNotFoundError) as error:
            raise ValueError(
                f"data.labels=json needs {where}, which does not exist; {LABELS_FORMAT}, "
                "or set data.labels=folders (a folder per class) or none"
            ) from error
        return json_labels(text, self.files, where, self.path, self.name)

    def _list_folder(self) -> list[str]:
        """Every file under the folder, as POSIX paths relative to it; a symbolic link whose
        target is gone too (it is then counted with the unreadable files)."""
        return [
            file.relative_to(self.path).as_posix()
            for file in self.path.rglob("*")
            if file.is_file() or (file.is_symlink() and not file.exists())
        ]

    def _list_zip(self) -> list[str]:
        """Every file in the archive."""
        with zipfile.ZipFile(self.path) as archive:
            return [info.filename for info in archive.infolist() if not info.is_dir()]

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict[str, Any]:
        # An open zip handle cannot cross into worker processes; each opens its own.
        return {**self.__dict__, "_zip": None}

    def name(self, index: int) -> str:
        """Where image ``index`` lives, for messages: ``folder/a.png`` or ``data.zip:a.png``."""
        separator = ":" if self.is_zip else "/"
        return f"{self.path}{separator}{self.files[index]}"

    def label(self, index: int) -> int:
        """Class index of image ``index`` (``data.labels`` folders or json only)."""
        if self._labels is None:
            raise ValueError(
                f"data.path={self.path!s} is read unlabelled; set data.labels=folders or json"
            )
        return int(self._labels[index])

    def fingerprint(self) -> dict[str, Any]:
        digest = hashlib.sha1()
        total_bytes = 0
        if self.is_zip:
            stat = self.path.stat()
            with zipfile.ZipFile(self.path) as archive:
                for name in self.files:
                    info = archive.getinfo(name)
                    total_bytes += info.file_size
                    digest.update(f"{name}\0{info.file_size}\0{info.CRC}\n".encode())
            digest.update(f"zip\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
        else:
            for name in self.files:
                file = self.path / name
                stat = file.stat() if file.exists() else file.lstat()  # a dangling link
                total_bytes += stat.st_size
                digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        fingerprint = {
            "kind": "zip" if self.is_zip else "folder",
            "path": str(self.path.resolve()),
            "num_files": len(self.files),
            "total_bytes": total_bytes,
            "files_sha1": digest.hexdigest(),
            "background": list(self.background),
            "fit": self.fit,
        }
        # Another limit may skip other files; the default adds nothing, so that caches built
        # before the setting existed (with the same limit, PIL's) keep their key.
        if self.max_image_pixels != DEFAULT_MAX_IMAGE_PIXELS:
            fingerprint["max_image_pixels"] = self.max_image_pixels
        # Likewise unlabelled adds nothing; labels add the classes and every file's class.
        if self._labels is not None:
            fingerprint |= {
                "labels": self.labels,
                "class_names": self.class_names,
                "labels_sha1": hashlib.sha1(self._labels.tobytes()).hexdigest(),
            }
        return fingerprint

    def _open(self, index: int) -> IO[bytes]:
        if not self.is_zip:
            return open(self.path / self.files[index], "rb")
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return io.BytesIO(self._zip.read(self.files[index]))

    def load(self, index: int, resolution: int, channels: int) -> np.ndarray:
        """Image ``index`` as uint8 [resolution, resolution, channels].

        Raises:
            UnreadableImageError: the file cannot be read or decoded, or has more pixels
                than ``max_image_pixels``.

        Warns:
            SmallImageWarning: the image (its square part) is smaller than ``resolution``.
        """
        check_load_args(index, len(self.files), resolution, channels)
        try:
            with self._open(index) as handle, _pil_pixel_limit_off(), Image.open(handle) as opened:
                self._check_pixels(index, *opened.size)
                # Let JPEG decode at a reduced scale (still >= 2x the target) when it can.
                opened.draft("RGB" if channels == 3 else "L", (2 * resolution, 2 * resolution))
                image = _flatten(ImageOps.exif_transpose(opened), self.background)
                image = _square(image, self.fit, self.background, channels)
                side = image.size[0]
                image = image.resize(
                    (resolution, resolution),
                    Image.LANCZOS,
                    reducing_gap=3.0,  # Box-reduce huge images first, then Lanczos.
                )
        except UnreadableImageError:
            raise
        except Exception as error:  # PIL raises many types for bad files.
            reason = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            raise UnreadableImageError(self.name(index), reason) from error
        if side < resolution:
            warnings.warn(
                f"{self.name(index)} is {side}x{side} after {self.fit}, upscaled to {resolution}",
                SmallImageWarning,
                stacklevel=2,
            )
        return to_array(image, channels)

    def _check_pixels(self, index: int, width: int, height: int) -> None:
        """Raise :class:`UnreadableImageError` for an image above ``max_image_pixels``."""
        limit = self.max_image_pixels
        if limit is not None and width * height > limit:
            reason = (
                f"{width}x{height} = {width * height} pixels, more than "
                f"data.max_image_pixels={limit}; raise that setting, or set it to null for no "
                "limit, to read it"
            )
            raise UnreadableImageError(self.name(index), reason, fix=None)


def _hidden(part: str) -> bool:
    """Whether a file or folder name is left out: hidden (``.*``) or macOS ``__MACOSX``."""
    return part.startswith(".") or part == "__MACOSX"


def _zip_problem(path: Path) -> str:
    """Why ``zipfile`` cannot open ``path``, for a message."""
    try:
        with zipfile.ZipFile(path):
            return "it opens, but is not a zip archive Python reads"
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        return f"{type(error).__name__}: {error}"


def _suffix(name: str) -> str:
    """The lower-case extension of a file name: ``.png``."""
    return Path(name).suffix.lower()


@contextlib.contextmanager
def _pil_pixel_limit_off() -> Iterator[None]:
    """Switch off PIL's own decompression-bomb guard, which ``max_image_pixels`` replaces.

    ``Image.MAX_IMAGE_PIXELS`` is a process-wide setting; it is restored on exit. Sources
    load in one thread per process (the cache builder uses processes), so nothing else
    opens an image meanwhile.
    """
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _square(
    image: Image.Image, fit: str, background: tuple[int, int, int], channels: int
) -> Image.Image:
    """The centre square of ``image`` (crop) or ``image`` centred on a square (pad)."""
    width, height = image.size
    if width == height:
        return image
    if fit == "crop":
        side = min(width, height)
        left, top = (width - side) // 2, (height - side) // 2
        return image.crop((left, top, left + side, top + side))
    side = max(width, height)
    fill = background if image.mode == "RGB" else _luma(background)
    canvas = Image.new(image.mode, (side, side), fill)
    canvas.paste(image, ((side - width) // 2, (side - height) // 2))
    return canvas


def _luma(rgb: tuple[int, int, int]) -> int:
    """ITU-R 601 luma of an RGB colour, as PIL's ``convert("L")`` computes it."""
    return Image.new("RGB", (1, 1), rgb).convert("L").getpixel((0, 0))  # type: ignore[return-value]


def _flatten(image: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    """Composite transparency on ``background`` and map 16-bit gray to 8 bits; RGB or L out."""
    image.load()  # Decode now: truncated or corrupt data fails here, inside the caller's try.
    if image.mode.startswith("I;16"):
        image = image.convert("I")
    if image.mode == "I":
        # PIL would clip 16-bit values at 255 (a white image); scale them instead.
        image = image.point(lambda v: v * (1 / 256)).convert("L")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.alpha_composite(Image.new("RGBA", rgba.size, (*background, 255)), rgba)
    return image if image.mode in ("RGB", "L") else image.convert("RGB")
