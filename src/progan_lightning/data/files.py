"""Images from files: a folder (recursively) or a ``.zip`` archive of PNG/JPEG/WebP/BMP/TIFF.

:class:`FolderSource` is an :class:`~progan_lightning.data.sources.ImageSource`. It lists
the images once (sorted, so the order is the same on every machine) and decodes one on
each :meth:`~FolderSource.load`. A file that cannot be decoded raises
:class:`UnreadableImageError`; an image smaller than the target warns with
:class:`SmallImageWarning`. The cache builder (``data/cache.py``) turns both into one
summary for the whole dataset.
"""

from __future__ import annotations

import hashlib
import io
import warnings
import zipfile
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
from PIL import Image, ImageColor, ImageOps

from progan_lightning.data.sources import check_load_args, to_array

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
FITS = ("crop", "pad")


class UnreadableImageError(ValueError):
    """An image file that cannot be decoded (corrupt, truncated, empty, not an image)."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"cannot read image {name} ({reason}); fix or remove the file")
        self.name = name
        self.reason = reason


class SmallImageWarning(UserWarning):
    """An image smaller than the target resolution was upscaled."""


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

    Files with the extensions in ``IMAGE_EXTENSIONS`` (any case) count; hidden files and
    folders (names starting with ".", e.g. macOS ``._*`` forks) and ``__MACOSX`` are
    skipped. Each image is rotated by its EXIF orientation, composited on ``background``
    where transparent, converted to RGB (or luma), made square (centre-cropped or padded
    with ``background``) and resized with Lanczos (box-reduced first when much larger).

    Args:
        path: Folder of images or a ``.zip`` of images (``~`` is expanded).
        background: Colour under transparent pixels and of the padding.
        fit: ``crop`` (centre square) or ``pad`` (whole image, padded to a square).
    """

    def __init__(
        self,
        path: str | Path,
        background: str | list[int] | tuple[int, ...] = (0, 0, 0),
        fit: Literal["crop", "pad"] = "crop",
    ) -> None:
        self.path = Path(path).expanduser()
        self.background = parse_background(background)
        if fit not in FITS:
            raise ValueError(f"data.fit={fit!r} is not supported; use one of {FITS}")
        self.fit = fit
        accepted = " ".join(IMAGE_EXTENSIONS)
        if not self.path.exists():
            raise FileNotFoundError(
                f"data.path={self.path!s} does not exist; "
                "set data.path to a folder (or .zip) of images"
            )
        self.is_zip = self.path.is_file() and zipfile.is_zipfile(self.path)
        if not self.path.is_dir() and not self.is_zip:
            raise ValueError(
                f"data.path={self.path!s} is a file, not a folder or a .zip; "
                f"set data.path to a folder (or .zip) of images ({accepted})"
            )
        self._zip: zipfile.ZipFile | None = None
        self.files = self._list_zip() if self.is_zip else self._list_folder()
        if not self.files:
            raise ValueError(
                f"data.path={self.path!s} holds no image files; "
                f"set data.path to a folder (or .zip) of images ({accepted})"
            )

    @staticmethod
    def _accepts(name: str) -> bool:
        """Whether the relative POSIX path ``name`` is an image file that counts."""
        parts = name.split("/")
        return Path(name).suffix.lower() in IMAGE_EXTENSIONS and not any(
            part.startswith(".") or part == "__MACOSX" for part in parts
        )

    def _list_folder(self) -> list[str]:
        names = (
            file.relative_to(self.path).as_posix()
            for file in self.path.rglob("*")
            if file.is_file()
        )
        return sorted(name for name in names if self._accepts(name))

    def _list_zip(self) -> list[str]:
        with zipfile.ZipFile(self.path) as archive:
            return sorted(
                info.filename
                for info in archive.infolist()
                if not info.is_dir() and self._accepts(info.filename)
            )

    def __len__(self) -> int:
        return len(self.files)

    def __getstate__(self) -> dict[str, Any]:
        # An open zip handle cannot cross into worker processes; each opens its own.
        return {**self.__dict__, "_zip": None}

    def name(self, index: int) -> str:
        """Where image ``index`` lives, for messages: ``folder/a.png`` or ``data.zip:a.png``."""
        separator = ":" if self.is_zip else "/"
        return f"{self.path}{separator}{self.files[index]}"

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
                stat = (self.path / name).stat()
                total_bytes += stat.st_size
                digest.update(f"{name}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return {
            "kind": "zip" if self.is_zip else "folder",
            "path": str(self.path.resolve()),
            "num_files": len(self.files),
            "total_bytes": total_bytes,
            "files_sha1": digest.hexdigest(),
            "background": list(self.background),
            "fit": self.fit,
        }

    def _open(self, index: int) -> IO[bytes]:
        if not self.is_zip:
            return open(self.path / self.files[index], "rb")
        if self._zip is None:
            self._zip = zipfile.ZipFile(self.path)
        return io.BytesIO(self._zip.read(self.files[index]))

    def load(self, index: int, resolution: int, channels: int) -> np.ndarray:
        """Image ``index`` as uint8 [resolution, resolution, channels].

        Raises:
            UnreadableImageError: the file cannot be read or decoded.

        Warns:
            SmallImageWarning: the image (its square part) is smaller than ``resolution``.
        """
        check_load_args(index, len(self.files), resolution, channels)
        try:
            with self._open(index) as handle, Image.open(handle) as opened:
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
