"""Image sources: square uint8 images at any requested resolution.

A source is indexable (``len`` and ``load``), names its images for messages (``name``)
and describes itself with a JSON ``fingerprint`` that changes whenever the images it
produces would change; the multi-resolution cache (``data/cache.py``) is keyed by it.
A labelled source (``data.labels``) also names its classes (``class_names``) and gives
each image's class index (``label``). This module holds the protocol, the checks every
source shares and the built-in procedural shapes; ``data/digits.py`` draws digits and
``data/files.py`` reads folders and zips of image files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
from PIL import Image, ImageDraw


@runtime_checkable
class ImageSource(Protocol):
    """What the cache needs from a data source."""

    class_names: list[str]
    """The C class names (index = class index), known at construction; [] when unlabelled."""

    def __len__(self) -> int:
        """Number of images."""
        ...

    def load(self, index: int, resolution: int, channels: int) -> np.ndarray:
        """Image ``index`` as uint8 [H, W, C] with H = W = ``resolution``, C = ``channels``.

        A source of files raises ``ValueError`` (``UnreadableImageError``) for a file it
        cannot decode and warns (``SmallImageWarning``) when it upscales; the cache
        builder skips or stops on the first and counts both.
        """
        ...

    def name(self, index: int) -> str:
        """Where image ``index`` comes from, for messages."""
        ...

    def label(self, index: int) -> int:
        """Class index in [0, C) of image ``index``; only called when ``class_names``."""
        ...

    def fingerprint(self) -> dict[str, Any]:
        """JSON-serialisable description that changes whenever the images (or their labels)
        would change."""
        ...


def check_labels(labels: str, accepted: tuple[str, ...], source: str) -> str:
    """Return ``labels`` if ``source`` accepts it, else raise one error naming the choices.

    Args:
        labels: The ``data.labels`` setting.
        accepted: The settings this source knows; the first, ``none``, means unlabelled.
        source: The source's name for the message (``shapes``, ``folder``).
    """
    if labels not in accepted:
        raise ValueError(
            f"data.labels={labels} is not supported by the {source} source; "
            f"set data.labels to one of {', '.join(accepted)}"
        )
    return labels


def check_load_args(index: int, length: int, resolution: int, channels: int) -> None:
    """Raise one clear error for an out-of-range index, resolution or channel count."""
    if not 0 <= index < length:
        raise IndexError(f"image index {index} is out of range for {length} images")
    if resolution < 1:
        raise ValueError(f"resolution={resolution} must be >= 1")
    if channels not in (1, 3):
        raise ValueError(f"channels={channels} is not supported; use 3 (RGB) or 1 (grayscale)")


def check_every_class_drawn(source: ImageSource, labels: str, name: str) -> None:
    """Raise one error when some class of a procedural ``source`` has no image (too few
    images); ``labels`` (its ``data.labels``) and ``name`` (``shapes``) are for the message.

    Stops at the first image that completes the set (about 20 for 8 classes).
    """
    missing = set(range(len(source.class_names)))
    for index in range(len(source)):
        missing.discard(source.label(index))
        if not missing:
            return
    names = [source.class_names[index] for index in sorted(missing)]
    raise ValueError(
        f"data.labels={labels}: the {len(source)} {name} images (data.source.num_images) have no "
        f"{', '.join(names)}, so those classes would be empty; use more images "
        "(e.g. data.source.num_images=100) or another data.source.seed"
    )


def check_seed(seed: object) -> int:
    """``data.source.seed`` as an int.

    Raises:
        ValueError: not an integer >= 0 (numpy's generators take no negative seed).
    """
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(
            f"data.source.seed={seed!r} is not a seed; use an integer >= 0 (e.g. "
            "data.source.seed=1)"
        )
    return seed


def listing(items: Sequence[str], limit: int = 10) -> str:
    """The first ``limit`` of ``items`` for a message, and how many more there are."""
    more = f"; and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def to_array(image: Image.Image, channels: int) -> np.ndarray:
    """PIL image -> uint8 [H, W, C] in RGB (C = 3) or luma (C = 1)."""
    array = np.asarray(image.convert("RGB" if channels == 3 else "L"), dtype=np.uint8)
    return array.reshape(array.shape[0], array.shape[1], channels)


class ShapesSource:
    """Built-in procedural dataset: 1-3 clean, antialiased shapes on a plain background.

    Image ``i`` depends only on ``(seed, i)`` (drawn from ``np.random.default_rng([seed, i])``),
    so any image can be produced on its own and in any process. Shapes are circles, ellipses,
    squares, rectangles, triangles, stars, crosses and rings, 25-60% of the image wide, at
    random positions and rotations. Backgrounds are a flat colour or a two-colour linear
    gradient, dark with bright shapes or light with dark shapes, so that the shapes stand
    out in RGB and in grayscale even at 32x32. Shapes are drawn as masks at 4x the
    resolution and box-filtered down (exact area coverage); there is no noise or texture.

    ``kinds`` picks which of ``KINDS`` are drawn (all by default). With ``labels="kind"``
    image ``i`` first draws one kind (uniform over ``kinds``), every
    shape of the image is of that kind, and the kind is the image's class; with ``"none"``
    each shape draws its own kind (the unlabelled images are the same as ever).

    Args:
        num_images: Number of images in the dataset.
        seed: Seed of the dataset; the same seed always gives the same images.
        labels: ``none`` (unlabelled) or ``kind`` (class = the one shape kind of an image).
        kinds: The shape kinds drawn (and the classes, in this order), a subset of ``KINDS``;
            None = all of them. Fewer, more distinct kinds make an easier class problem.
        shapes_per_image: ``[low, high]``: each image draws ``low`` to ``high`` shapes
            (inclusive, uniform); default ``[1, 3]``.
        shape_size: ``[low, high]``: each shape's width as a share of the image's, uniform;
            default ``[0.25, 0.6]``. Fewer, larger shapes make an easier image problem.
    """

    KINDS = ("circle", "ellipse", "square", "rectangle", "triangle", "star", "cross", "ring")
    LABELS = ("none", "kind")
    VERSION = 1  # Bump whenever the drawing code changes: it invalidates cached copies.
    SUPERSAMPLE = 4
    SHAPES_PER_IMAGE = (1, 3)
    SHAPE_SIZE = (0.25, 0.6)

    def __init__(
        self,
        num_images: int = 10000,
        seed: int = 0,
        labels: str = "none",
        kinds: Sequence[str] | None = None,
        shapes_per_image: Sequence[int] = SHAPES_PER_IMAGE,
        shape_size: Sequence[float] = SHAPE_SIZE,
    ) -> None:
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"data.source.num_images={num_images!r} must be an integer >= 1")
        self.num_images = num_images
        self.seed = check_seed(seed)
        self.labels = check_labels(labels, self.LABELS, "shapes")
        self.kinds = self._check_kinds(kinds)
        self.shapes_per_image = check_range(
            "shapes_per_image", shapes_per_image, self.SHAPES_PER_IMAGE, 1, None
        )
        self.shape_size = check_range("shape_size", shape_size, self.SHAPE_SIZE, 0.0, 1.0)
        self.class_names = list(self.kinds) if self.labels == "kind" else []
        if self.class_names:
            check_every_class_drawn(self, "kind", "shapes")

    def __len__(self) -> int:
        return self.num_images

    def fingerprint(self) -> dict[str, Any]:
        fingerprint = {
            "kind": "shapes",
            "num_images": self.num_images,
            "seed": self.seed,
            "version": self.VERSION,
        }
        # Unlabelled adds nothing, so that caches built before labels existed keep their key.
        if self.kinds != self.KINDS:
            fingerprint["kinds"] = list(self.kinds)
        if self.shapes_per_image != self.SHAPES_PER_IMAGE:
            fingerprint["shapes_per_image"] = list(self.shapes_per_image)
        if self.shape_size != self.SHAPE_SIZE:
            fingerprint["shape_size"] = list(self.shape_size)
        if self.class_names:
            fingerprint |= {"labels": self.labels, "class_names": self.class_names}
        return fingerprint

    def name(self, index: int) -> str:
        return f"shapes[{index}]"

    def label(self, index: int) -> int:
        """The index in ``kinds`` of image ``index``'s shapes (``labels="kind"`` only)."""
        if not self.class_names:
            raise ValueError("the shapes source is unlabelled; set data.labels=kind for labels")
        check_load_args(index, self.num_images, 1, 1)
        return self._kind(np.random.default_rng([self.seed, index]))

    def _kind(self, rng: np.random.Generator) -> int:
        """Draw one index into ``kinds``."""
        return int(rng.integers(len(self.kinds)))

    def _check_kinds(self, kinds: Sequence[str] | None) -> tuple[str, ...]:
        """``kinds`` as a tuple (all of ``KINDS`` for None); one error for an unknown or
        repeated kind, or fewer than one."""
        if kinds is None:
            return self.KINDS
        kinds = tuple(str(kind) for kind in kinds)
        unknown = [kind for kind in kinds if kind not in self.KINDS]
        if unknown or not kinds or len(set(kinds)) != len(kinds):
            raise ValueError(
                f"data.source.kinds={list(kinds)}: use distinct kinds from "
                f"{', '.join(self.KINDS)} (at least one), or null for all"
            )
        return kinds

    def load(self, index: int, resolution: int, channels: int) -> np.ndarray:
        check_load_args(index, self.num_images, resolution, channels)
        rng = np.random.default_rng([self.seed, index])
        kind = self._kind(rng) if self.class_names else None  # The label comes first.
        dark = rng.random() < 0.6
        image = self._background(rng, resolution, dark)  # [H, W, 3] float32 in [0, 255]
        low, high = self.shapes_per_image
        for _ in range(rng.integers(low, high + 1)):
            alpha = self._shape_mask(rng, resolution, kind)[..., None]  # [H, W, 1] in [0, 1]
            colour = _contrasting_colour(rng, dark)  # [3]
            image += alpha * (colour - image)
        rgb = Image.fromarray(np.rint(image).clip(0, 255).astype(np.uint8), "RGB")
        return to_array(rgb, channels)

    @staticmethod
    def _background(rng: np.random.Generator, resolution: int, dark: bool) -> np.ndarray:
        """Flat colour or a two-colour linear gradient at a random angle, [H, W, 3] float32."""
        first = _background_colour(rng, dark)
        if rng.random() < 0.5:
            return np.broadcast_to(first, (resolution, resolution, 3)).copy()
        second = _background_colour(rng, dark)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        coords = (np.arange(resolution, dtype=np.float32) + 0.5) / resolution - 0.5
        ramp = coords[None, :] * math.cos(angle) + coords[:, None] * math.sin(angle)  # [H, W]
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        return first + ramp[..., None] * (second - first)

    def _shape_mask(
        self, rng: np.random.Generator, resolution: int, kind: int | None = None
    ) -> np.ndarray:
        """Coverage in [0, 1] of one random shape (of ``kinds[kind]``, drawn when None),
        [H, W] float32."""
        name = self.kinds[self._kind(rng) if kind is None else kind]
        radius = rng.uniform(*self.shape_size) / 2  # Half the shape's width, in image units.
        centre = rng.uniform(radius, 1.0 - radius, size=2)
        angle = rng.uniform(0.0, 2.0 * math.pi)
        aspect = rng.uniform(0.4, 0.7)

        # Draw at SUPERSAMPLE x the resolution; polygons are in unit coordinates around 0.
        size = resolution * self.SUPERSAMPLE
        mask = Image.new("L", (size, size), 0)
        draw = ImageDraw.Draw(mask)
        outline, hole = _outline(name, aspect)

        def place(points: np.ndarray) -> list[tuple[float, float]]:
            rotation = np.array(
                [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
            )
            xy = (points * radius) @ rotation.T + centre  # [P, 2] in [0, 1]
            return [tuple(p) for p in (xy * size - 0.5).tolist()]

        draw.polygon(place(outline), fill=255)
        if hole is not None:
            draw.polygon(place(hole), fill=0)
        small = mask.resize((resolution, resolution), Image.BOX)
        return np.asarray(small, dtype=np.float32) / 255.0


def check_range(
    name: str,
    value: Sequence[Any],
    default: tuple,
    minimum: float,
    maximum: float | None,
    closed: bool = False,
) -> tuple[Any, Any]:
    """``value`` as a ``(low, high)`` tuple of the type of ``default``'s numbers; one error
    unless it is two such numbers with ``minimum <= low`` (``minimum < low`` for floats unless
    ``closed``), ``low <= high`` and ``high <= maximum`` (None: no maximum)."""
    kind = type(default[0])
    pair = tuple(value) if isinstance(value, Sequence) and not isinstance(value, str) else ()
    numbers = len(pair) == 2 and all(
        isinstance(x, int | float) and not isinstance(x, bool) and (kind is float or x == int(x))
        for x in pair
    )
    if numbers:
        low, high = (kind(x) for x in pair)
        above = low > minimum if kind is float and not closed else low >= minimum
        if above and low <= high and (maximum is None or high <= maximum):
            return low, high
    bounds = f"{minimum:g} {'<' if kind is float and not closed else '<='} low <= high"
    bounds += f" <= {maximum:g}" if maximum is not None else ""
    raise ValueError(
        f"data.source.{name}={list(value) if pair else value!r}: use [low, high] with {bounds} "
        f"(default {list(default)})"
    )


def _polygon(count: int, radii: tuple[float, ...] = (1.0,), phase: float = 0.0) -> np.ndarray:
    """Regular polygon (or star, alternating ``radii``) with ``count`` vertices, [P, 2]."""
    theta = phase + 2.0 * math.pi * np.arange(count) / count
    r = np.resize(np.asarray(radii, dtype=np.float64), count)
    return np.stack([r * np.cos(theta), r * np.sin(theta)], axis=1)


def _box(half_width: float, half_height: float) -> np.ndarray:
    """Axis-aligned rectangle around 0, [4, 2]."""
    return np.array([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]) * [
        half_width,
        half_height,
    ]


def _outline(kind: str, aspect: float) -> tuple[np.ndarray, np.ndarray | None]:
    """Unit-size outline of ``kind`` (and the hole of a ring), each [P, 2] around 0."""
    circle = _polygon(96)
    if kind == "circle":
        return circle, None
    if kind == "ellipse":
        return circle * [1.0, aspect], None
    if kind == "square":
        return _box(0.85, 0.85), None
    if kind == "rectangle":
        return _box(1.0, aspect), None
    if kind == "triangle":
        return _polygon(3, phase=-math.pi / 2), None
    if kind == "star":
        return _polygon(10, radii=(1.0, 0.45), phase=-math.pi / 2), None
    if kind == "cross":
        w = 0.3
        arm = [[w, -1], [w, -w], [1, -w], [1, w], [w, w], [w, 1]]
        return np.array(arm + [[-x, -y] for x, y in arm], dtype=np.float64), None
    if kind == "ring":
        return circle, circle * (0.45 + 0.25 * aspect)
    raise ValueError(f"unknown shape kind {kind!r}; use one of {ShapesSource.KINDS}")


def _background_colour(rng: np.random.Generator, dark: bool) -> np.ndarray:
    """A dull background colour with luma <= 70 (dark) or >= 185 (light), [3] float32."""
    colour = _hsv(rng.random(), rng.uniform(0.0, 0.6), rng.uniform(0.0, 0.3) if dark else 1.0)
    return _clamp_luma(colour, 185.0, 255.0) if not dark else _clamp_luma(colour, 0.0, 70.0)


def _contrasting_colour(rng: np.random.Generator, dark: bool) -> np.ndarray:
    """A saturated shape colour with luma >= 150 on dark or <= 90 on light backgrounds."""
    colour = _hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.8, 1.0))
    return _clamp_luma(colour, 150.0, 255.0) if dark else _clamp_luma(colour, 0.0, 90.0)


def _clamp_luma(colour: np.ndarray, low: float, high: float) -> np.ndarray:
    """Mix ``colour`` with white (or scale it towards black) until its luma is in [low, high].

    Keeps shapes and backgrounds apart in grayscale too (pure blue has a luma of 29).
    """
    luma = float(colour @ np.array([0.299, 0.587, 0.114], dtype=np.float32))
    if luma < low:
        return colour + (low - luma) / (255.0 - luma) * (255.0 - colour)
    if luma > high:
        return colour * (high / luma)
    return colour


def _hsv(hue: float, saturation: float, value: float) -> np.ndarray:
    """HSV in [0, 1] -> RGB [3] float32 in [0, 255]."""
    k = (np.array([5.0, 3.0, 1.0]) + hue * 6.0) % 6.0
    rgb = value - value * saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)
    return (rgb * 255.0).astype(np.float32)
