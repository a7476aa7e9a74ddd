"""Image helpers: tensors in [-1, 1] to uint8 grids (optionally with row names) and PNG files."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from progan_lightning.fs import atomic_write


def to_uint8(images: Tensor) -> Tensor:
    """[NCHW] float in [-1, 1] -> [NCHW] uint8 in [0, 255] (rounded, clamped); uint8 images
    pass unchanged. The inverse of :func:`to_float` on uint8 images."""
    if images.dtype == torch.uint8:
        return images
    return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_float(images: np.ndarray | Tensor) -> Tensor:
    """[NCHW] uint8 images (array or tensor) -> float32 in [-1, 1] (0 -> -1, 255 -> 1);
    float images pass unchanged. How every real image enters a network."""
    images = torch.as_tensor(np.array(images) if isinstance(images, np.ndarray) else images)
    if images.dtype != torch.uint8:
        return images
    return images.float().div_(127.5).sub_(1.0)


VIEW_TILE = 128
"""The least size at which a picture made for viewing shows one image (a grid's tile, an
animation's frame): smaller images are upscaled to it."""


def view_tile(resolution: int, least: int = VIEW_TILE) -> int:
    """The display size of an image of ``resolution`` px: upscaled by the smallest whole
    factor that reaches ``least`` (nearest, so every pixel stays a sharp square); larger
    images keep their size. ``make_grid(images, view_tile(res))`` draws it."""
    return resolution * max(1, math.ceil(least / resolution))


def make_grid(images: Tensor, tile: int | None = None, cols: int | None = None) -> np.ndarray:
    """Tile a batch into one picture, each image upscaled (nearest) to ``tile`` pixels.

    Args:
        images: [NCHW] float in [-1, 1] (C is 1 or 3).
        tile: Display size of each image; default: the images' own size.
        cols: Images per row; default: a near-square grid.

    Returns:
        [H, W, C] uint8 array (C is 1 or 3).
    """
    n, c, h, _ = images.shape
    tile = tile or h
    if tile != h:
        images = F.interpolate(images.detach().float(), size=(tile, tile), mode="nearest")
    cols = cols or math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    canvas = torch.zeros(rows * cols, c, tile, tile, dtype=torch.uint8)
    canvas[:n] = to_uint8(images).cpu()
    grid = canvas.view(rows, cols, c, tile, tile).permute(0, 3, 1, 4, 2)  # [rows,H,cols,W,C]
    return grid.reshape(rows * tile, cols * tile, c).numpy()


def label_rows(grid: np.ndarray, names: Sequence[str], pad: int = 2) -> np.ndarray:
    """Put each row's name in a left margin (white on black, PIL's default font).

    Rows too short for the text are first upscaled (nearest, by one integer factor for the
    whole grid) until every name fits its row.

    Args:
        grid: [H, W, C] uint8 (C is 1 or 3) made of ``len(names)`` rows of equal height.
        names: One name per row, top to bottom.
        pad: Pixels around the text.

    Returns:
        [H', M + W', C] uint8: the margin of width M, then the (maybe upscaled) grid.
    """
    font = ImageFont.load_default()
    boxes = [font.getbbox(name) for name in names]  # (left, top, right, bottom)
    text_h = max(bottom - top for _, top, _, bottom in boxes)
    text_w = max(right - left for left, _, right, _ in boxes)
    row_h = grid.shape[0] // len(names)
    factor = math.ceil((text_h + 2 * pad) / row_h)
    if factor > 1:
        grid = grid.repeat(factor, axis=0).repeat(factor, axis=1)
        row_h *= factor
    channels = grid.shape[-1]
    margin = Image.new("L" if channels == 1 else "RGB", (text_w + 2 * pad, grid.shape[0]))
    draw = ImageDraw.Draw(margin)
    white = 255 if channels == 1 else (255, 255, 255)
    for y, (name, (left, top, _, bottom)) in enumerate(zip(names, boxes, strict=True)):
        row_top = y * row_h + (row_h - (bottom - top)) // 2
        draw.text((pad - left, row_top - top), name, fill=white, font=font)
    margin_array = np.asarray(margin).reshape(grid.shape[0], -1, channels)
    return np.concatenate([margin_array, grid], axis=1)


def to_pil(image: np.ndarray) -> Image.Image:
    """An [H, W, C] uint8 array (C is 1 or 3) as a PIL image."""
    return Image.fromarray(image.squeeze(-1) if image.shape[-1] == 1 else image)


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Write an [H, W, C] uint8 array as PNG atomically."""
    return atomic_write(path, lambda tmp: to_pil(image).save(tmp, "PNG"))


def save_gif(path: Path, frames: list[np.ndarray], fps: int = 12) -> Path:
    """Write [H, W, C] uint8 frames as a looping GIF."""
    images = [to_pil(f) for f in frames]
    return atomic_write(
        path,
        lambda tmp: images[0].save(
            tmp,
            "GIF",
            save_all=True,
            append_images=images[1:],
            duration=round(1000 / fps),
            loop=0,
        ),
    )
