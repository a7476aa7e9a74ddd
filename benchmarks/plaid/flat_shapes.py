"""A flat-colour data set: shapes in a few colours with sharp edges on white, as PNG files.

    python -m benchmarks.plaid.flat_shapes OUT [--count 5000] [--resolution 32] [--seed 0]

Each image is a white background with 1 to 3 shapes (the built-in shapes source's circles,
ellipses, squares, rectangles, triangles, stars, crosses and rings, drawn at 4x and
box-filtered down: one anti-aliased pixel at each edge, no texture or noise), each filled with
one of :data:`PALETTE`. Image ``i`` depends only on ``(seed, i)``. Flat areas and sharp edges
are where a regular texture of a generator shows most; photos hide it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from progan_lightning.data.sources import ShapesSource

PALETTE = np.array(
    [
        [220, 40, 40],  # red
        [40, 90, 210],  # blue
        [30, 150, 60],  # green
        [250, 190, 20],  # yellow
        [30, 30, 30],  # black
        [150, 60, 180],  # purple
    ],
    dtype=np.float32,
)
"""The shapes' colours, RGB [K, 3]."""

WHITE = 255.0


def flat_image(shapes: ShapesSource, index: int, resolution: int) -> np.ndarray:
    """Image ``index``: shapes of ``shapes`` (sizes, count per image, seed), each in one
    colour of :data:`PALETTE`, on white. uint8 [H, W, 3]"""
    rng = np.random.default_rng([shapes.seed, index])
    image = np.full((resolution, resolution, 3), WHITE, dtype=np.float32)
    low, high = shapes.shapes_per_image
    for _ in range(rng.integers(low, high + 1)):
        coverage = shapes._shape_mask(rng, resolution)[..., None]  # [H, W, 1] in [0, 1]
        colour = PALETTE[rng.integers(len(PALETTE))]  # [3]
        image += coverage * (colour - image)
    return np.rint(image).clip(0, 255).astype(np.uint8)


def write_set(out: str | Path, count: int, resolution: int = 32, seed: int = 0) -> Path:
    """Write ``count`` images as ``OUT/00000.png`` ...; returns ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shapes = ShapesSource(count, seed, shape_size=(0.3, 0.7))
    for i in range(count):
        Image.fromarray(flat_image(shapes, i, resolution), "RGB").save(out / f"{i:05d}.png")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the PNG files into")
    parser.add_argument("--count", type=int, default=5000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_set(args.out, args.count, args.resolution, args.seed)


if __name__ == "__main__":
    main()
