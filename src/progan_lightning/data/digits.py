"""The built-in procedural digits: 0-9 in the font Pillow ships, white on black.

Each image is one digit drawn with ``ImageFont.load_default(size=...)`` (no download) and
varied so that no two look alike: its height, stroke width, slant (shear), width, rotation,
position and a mild elastic warp are drawn per image. The digit is the image's class
(``data.labels=digit``, class names ``"0"`` ... ``"9"``).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import PIL
from PIL import Image, ImageDraw, ImageFont

from progan_lightning.data.sources import (
    check_every_class_drawn,
    check_labels,
    check_load_args,
    check_range,
    check_seed,
    to_array,
)


@functools.lru_cache(maxsize=64)
def digit_font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's bundled font at ``size`` pixels.

    Raises:
        ValueError: Pillow was built without FreeType, so its default font has one size.
    """
    font = ImageFont.load_default(size=size)
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise ValueError(
            "the digits source needs Pillow with FreeType (its default font at any size); "
            "install Pillow from PyPI (pip install --force-reinstall pillow) or use data=shapes"
        )
    return font


def glyph(digit: int, size: int, stroke: int) -> Image.Image:
    """The ink of ``digit`` at font ``size`` with a ``stroke`` pixels wide outline, cropped
    to its bounding box: an ``L`` image, 255 on 0."""
    font = digit_font(size)
    text = str(digit)
    left, top, right, bottom = font.getbbox(text, stroke_width=stroke)
    canvas = Image.new("L", (right - left + 2, bottom - top + 2), 0)
    draw = ImageDraw.Draw(canvas)
    draw.text((1 - left, 1 - top), text, fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    return canvas.crop(canvas.getbbox())


class DigitsSource:
    """Built-in procedural dataset: one handwriting-like digit 0-9 per image, white on black.

    Image ``i`` depends only on ``(seed, i)`` (``np.random.default_rng([seed, i])``), its
    first draw being the digit (uniform over 0-9), so labelled and unlabelled images are the
    same. The glyph is drawn at the resolution Pillow's font needs, then mapped into the
    image in one bilinear mesh transform at ``SUPERSAMPLE`` x the resolution (rotation, shear,
    width, position, and random offsets of the mesh's inner nodes: the elastic warp) and
    box-filtered down (anti-aliased). The whole digit always lies inside the image.

    Args:
        num_images: Number of images in the dataset.
        seed: Seed of the dataset; the same seed always gives the same images.
        labels: ``none`` (unlabelled) or ``digit`` (class = the digit, names "0" ... "9").
        height: ``[low, high]``: the digit's height (before rotation) as a share of the
            image's, uniform.
        stroke: ``[low, high]``: the stroke added around the font's outline, as a share of
            the digit's height, uniform (0 = the font's own weight).
        width: ``[low, high]``: horizontal stretch of the glyph, uniform (1 = the font's).
        rotation: Largest rotation in degrees, either way, uniform.
        shear: Largest slant (horizontal shift per unit of height), either way, uniform.
        warp: Standard deviation of the elastic warp's node offsets, as a share of the image.
    """

    LABELS = ("none", "digit")
    CLASS_NAMES = tuple(str(digit) for digit in range(10))
    VERSION = 1  # Bump whenever the drawing code changes: it invalidates cached copies.
    SUPERSAMPLE = 4
    MESH = 4  # The warp's mesh: MESH x MESH cells over the image.
    HEIGHT = (0.5, 0.8)
    STROKE = (0.0, 0.06)
    WIDTH = (0.8, 1.25)

    def __init__(
        self,
        num_images: int = 10000,
        seed: int = 0,
        labels: str = "none",
        height: Sequence[float] = HEIGHT,
        stroke: Sequence[float] = STROKE,
        width: Sequence[float] = WIDTH,
        rotation: float = 15.0,
        shear: float = 0.25,
        warp: float = 0.02,
    ) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"data.source.num_images={num_images!r} must be an integer >= 1")
        self.num_images = num_images
        self.seed = check_seed(seed)
        self.labels = check_labels(labels, self.LABELS, "digits")
        self.height = check_range("height", height, self.HEIGHT, 0.0, 1.0)
        self.stroke = check_range("stroke", stroke, self.STROKE, 0.0, 0.3, closed=True)
        self.width = check_range("width", width, self.WIDTH, 0.0, 3.0)
        self.rotation = _check_amount("rotation", rotation, 0.0, 90.0)
        self.shear = _check_amount("shear", shear, 0.0, 1.0)
        self.warp = _check_amount("warp", warp, 0.0, 0.1)
        self.class_names = list(self.CLASS_NAMES) if self.labels == "digit" else []
        if self.class_names:
            check_every_class_drawn(self, "digit", "digits")

    def __len__(self) -> int:
        return self.num_images

    def fingerprint(self) -> dict[str, Any]:
        fingerprint = {
            "kind": "digits",
            "num_images": self.num_images,
            "seed": self.seed,
            "version": self.VERSION,
            "height": list(self.height),
            "stroke": list(self.stroke),
            "width": list(self.width),
            "rotation": self.rotation,
            "shear": self.shear,
            "warp": self.warp,
            # The font and its rasteriser ship with Pillow: another version may draw otherwise.
            "pillow": PIL.__version__,
        }
        if self.class_names:
            fingerprint |= {"labels": self.labels, "class_names": self.class_names}
        return fingerprint

    def name(self, index: int) -> str:
        return f"digits[{index}]"

    def label(self, index: int) -> int:
        """The digit drawn in image ``index`` (``labels="digit"`` only)."""
        if not self.class_names:
            raise ValueError("the digits source is unlabelled; set data.labels=digit for labels")
        check_load_args(index, self.num_images, 1, 1)
        return self._digit(np.random.default_rng([self.seed, index]))

    @staticmethod
    def _digit(rng: np.random.Generator) -> int:
        """Draw the digit: the first draw of an image's generator."""
        return int(rng.integers(10))

    def load(self, index: int, resolution: int, channels: int) -> np.ndarray:
        check_load_args(index, self.num_images, resolution, channels)
        rng = np.random.default_rng([self.seed, index])
        digit = self._digit(rng)
        mask = self.draw(digit, rng, resolution)
        return to_array(mask, channels)

    def draw(self, digit: int, rng: np.random.Generator, resolution: int) -> Image.Image:
        """``digit`` with the variations drawn from ``rng``: an ``L`` image [R, R]."""
        size = resolution * self.SUPERSAMPLE
        height = rng.uniform(*self.height) * size  # Ink height in output pixels.
        font_size = max(8, round(height / 0.72))  # The font's digits are ~0.72 of its size.
        stroke = round(rng.uniform(*self.stroke) * font_size)
        ink = glyph(digit, font_size, stroke)
        stretch = rng.uniform(*self.width)
        shear = rng.uniform(-self.shear, self.shear)
        angle = math.radians(rng.uniform(-self.rotation, self.rotation))

        # Glyph pixels (centred) -> output pixels: rotate(shear(stretch(scale * g))) + centre.
        scale = height / ink.height
        cos, sin = math.cos(angle), math.sin(angle)
        linear = (
            np.array([[cos, -sin], [sin, cos]])
            @ np.array([[1.0, -shear], [0.0, 1.0]])  # y grows downwards: slant to the right
            @ np.diag([stretch * scale, scale])
        )  # [2, 2]
        half = np.array([ink.width, ink.height]) / 2
        corners = (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ linear.T  # [4, 2]
        # Anywhere the whole digit fits, warp included (a few sigma of it); centred if none.
        margin = 3 * self.warp * size
        low, high = margin - corners.min(axis=0), size - margin - corners.max(axis=0)  # [2]
        centre = np.where(low < high, rng.uniform(np.minimum(low, high), high), size / 2)

        # The warp: a mesh of cells over the output whose inner nodes are moved at random,
        # each node mapped back into the glyph; PIL reads every cell bilinearly from its quad.
        n = self.MESH
        ticks = np.arange(n + 1) * size // n  # [n + 1] int
        nodes = np.stack(np.meshgrid(ticks, ticks), -1).astype(np.float64)  # [n+1, n+1, 2] (x, y)
        jitter = rng.normal(0.0, self.warp * size, size=nodes.shape)
        jitter[[0, -1]] = 0.0
        jitter[:, [0, -1]] = 0.0
        source = (nodes + jitter - centre) @ np.linalg.inv(linear).T + half  # [n+1, n+1, 2]
        mesh = _mesh(ticks, source)
        big = ink.transform((size, size), Image.Transform.MESH, mesh, Image.Resampling.BILINEAR)
        return big.resize((resolution, resolution), Image.Resampling.BOX)


def _mesh(
    ticks: np.ndarray, source: np.ndarray
) -> list[tuple[tuple[int, ...], tuple[float, ...]]]:
    """PIL's ``MESH`` data: for each output cell between ``ticks`` (x and y alike), its box
    and the quad of ``source`` ([n+1, n+1, 2] points, (x, y)) it is read from, corners in
    PIL's order (upper left, lower left, lower right, upper right)."""
    mesh = []
    for row in range(len(ticks) - 1):
        for col in range(len(ticks) - 1):
            box = (int(ticks[col]), int(ticks[row]), int(ticks[col + 1]), int(ticks[row + 1]))
            corners = ((row, col), (row + 1, col), (row + 1, col + 1), (row, col + 1))
            mesh.append((box, tuple(float(v) for r, c in corners for v in source[r, c])))
    return mesh


def _check_amount(name: str, value: Any, low: float, high: float) -> float:
    """``value`` as a float in [low, high], else one error naming ``data.source.<name>``."""
    if isinstance(value, int | float) and not isinstance(value, bool) and low <= value <= high:
        return float(value)
    raise ValueError(f"data.source.{name}={value!r}: use a number from {low:g} to {high:g}")
