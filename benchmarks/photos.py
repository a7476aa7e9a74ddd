"""A folder of small colour photo crops: a held-out data set of another kind than the built-in
shapes, made offline from the colour photographs that scikit-image ships in its wheel.

    python -m benchmarks.photos DIR [--count 6000] [--resolution 32] [--seed 0] [--by-photo]

Each image is a square crop of random side (a quarter to the whole of the photo's shorter
side) at a random place of a random photo, flipped left-right half the time, box-filtered
down to ``resolution`` (Pillow's ``reduce`` then a Lanczos resize). scikit-image is needed
only here (``pip install -r benchmarks/requirements.txt``); the images are written as PNG, so
training and the peer comparison read them as any user folder. ``--by-photo`` writes each
crop into a folder named for its photo (``DIR/astronaut/000000.png`` ...): eight classes for a
conditional run, ``data=folder data.labels=folders``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "motorcycle_left.png",
    "retina.jpg",
    "rocket.jpg",
)
"""Colour photographs bundled in scikit-image's wheel (no download)."""


def load_photos() -> list[Image.Image]:
    """The bundled colour photos as RGB images.

    Raises:
        ModuleNotFoundError: scikit-image is not installed, with the command that installs it.
    """
    try:
        import skimage
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "the photo crops are cut from scikit-image's bundled photos: "
            "pip install -r benchmarks/requirements.txt"
        ) from err
    folder = Path(skimage.__file__).parent / "data"
    return [Image.open(folder / name).convert("RGB") for name in PHOTOS]


def write_crops(
    out: str | Path, count: int, resolution: int = 32, seed: int = 0, by_photo: bool = False
) -> Path:
    """Write ``count`` crops of ``resolution`` x ``resolution`` as ``out/000000.png`` ...
    (``by_photo``: ``out/<photo>/000000.png`` ..., the photo's file name without suffix).

    Deterministic by ``seed``; ``by_photo`` changes only where each crop is written. Returns
    ``out``.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    photos = load_photos()
    rng = np.random.default_rng(seed)
    for i in range(count):
        index = int(rng.integers(len(photos)))
        photo = photos[index]
        short = min(photo.size)
        side = int(rng.integers(max(resolution, short // 4), short + 1))
        left = int(rng.integers(photo.width - side + 1))
        top = int(rng.integers(photo.height - side + 1))
        crop = photo.crop((left, top, left + side, top + side))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        factor = max(side // (2 * resolution), 1)
        crop = crop.reduce(factor).resize((resolution, resolution), Image.Resampling.LANCZOS)
        folder = out / Path(PHOTOS[index]).stem if by_photo else out
        folder.mkdir(exist_ok=True)
        crop.save(folder / f"{i:06d}.png")
    return out


def main(argv: list[str] | None = None) -> None:
    """Command line: ``python -m benchmarks.photos DIR``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="folder to write the PNG crops into")
    parser.add_argument("--count", type=int, default=6000)
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--by-photo", action="store_true", help="a folder per photo (data.labels=folders)"
    )
    args = parser.parse_args(argv)
    path = write_crops(args.out, args.count, args.resolution, args.seed, args.by_photo)
    print(f"{args.count} crops of {args.resolution}x{args.resolution} -> {path}")


if __name__ == "__main__":
    main()
