"""Images, a grid and a latent interpolation from an export or a checkpoint.

python -m progan_lightning.generate source=outputs/.../generator.safetensors
python -m progan_lightning.generate source=outputs/.../checkpoints/last.ckpt num_images=64
python -m progan_lightning.generate source=... resolution=16 device=cuda
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
from torch import nn

from progan_lightning.callbacks.samples import save_gif, slerp
from progan_lightning.export import generator_from_checkpoint, load_checkpoint, load_generator
from progan_lightning.imaging import make_grid, save_png
from progan_lightning.networks import seeded_latents

log = logging.getLogger(__name__)


def load_any(
    source: str | Path, device: str | torch.device = "cpu", allow_pickle: bool = False
) -> nn.Module:
    """G_ema from an export (``.safetensors``/``.json``) or a training checkpoint (``.ckpt``)."""
    path = Path(source).expanduser()
    if path.suffix in (".safetensors", ".json"):
        return load_generator(path, device)
    return generator_from_checkpoint(load_checkpoint(path, allow_pickle=allow_pickle), device)


def stage_for(G: nn.Module, resolution: int | None) -> tuple[int, float]:
    """Stage and alpha to render at ``resolution`` (default: the last trained stage)."""
    trained = getattr(G, "trained_stage", G.num_stages - 1)
    if resolution is None:
        return trained, getattr(G, "trained_alpha", 1.0)
    stage = int(resolution).bit_length() - 3
    if 4 * 2**stage != resolution or not 0 <= stage <= trained:
        raise ValueError(
            f"resolution={resolution} is not a trained stage; use one of "
            f"{[4 * 2**s for s in range(trained + 1)]}"
        )
    return stage, getattr(G, "trained_alpha", 1.0) if stage == trained else 1.0


def check_settings(
    num_images: int, batch_size: int, interp_keyframes: int, interp_steps: int, fps: int
) -> None:
    """Raise one clear error, naming the ``conf/generate.yaml`` key, for a bad count.

    Raises:
        ValueError: a count below its minimum.
    """
    for key, value, minimum, meaning in (
        ("num_images", num_images, 1, "images to write"),
        ("batch_size", batch_size, 1, "images rendered at once"),
        ("interp.keyframes", interp_keyframes, 0, "latents of the animation, 0 = none"),
        ("interp.steps", interp_steps, 1, "frames between two keyframes"),
        ("interp.fps", fps, 1, "frames per second of the animation"),
    ):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(
                f"{key}={value!r} is out of range; set {key} to an integer >= {minimum} "
                f"({meaning})"
            )


@torch.no_grad()
def render(
    G: nn.Module, z: torch.Tensor, stage: int, alpha: float, batch_size: int = 64
) -> torch.Tensor:
    """G on ``z`` in batches, on G's device; returns images on the CPU. [NCHW]"""
    device = next(G.parameters()).device
    parts = [
        G(z[i : i + batch_size].to(device), stage, alpha).cpu()
        for i in range(0, len(z), batch_size)
    ]
    return torch.cat(parts)


def generate(
    G: nn.Module,
    out_dir: str | Path,
    num_images: int = 16,
    seed: int = 0,
    resolution: int | None = None,
    grid: bool = True,
    interp_keyframes: int = 4,
    interp_steps: int = 12,
    fps: int = 12,
    batch_size: int = 64,
) -> dict[str, Any]:
    """Write ``num_images`` PNGs, a grid and a looping interpolation GIF into ``out_dir``.

    Args:
        G: A generator (see :func:`load_any`).
        out_dir: Output folder.
        num_images: Images to write (``seed<seed>_<i>.png``).
        seed: Seed of the latents.
        resolution: Render at this trained resolution (default: the last trained one).
        grid: Also write ``grid.png`` of all images.
        interp_keyframes: Latents the animation passes through (0 = no ``interp.gif``).
        interp_steps: Frames between two keyframes.
        fps: Frames per second of the GIF.
        batch_size: Images rendered at once.

    Returns:
        ``{"images": [paths], "grid": path | None, "interp": path | None}``.

    Raises:
        ValueError: a count is out of range (see :func:`check_settings`), or ``resolution``
            is not a trained stage.
    """
    check_settings(num_images, batch_size, interp_keyframes, interp_steps, fps)
    out_dir = Path(out_dir)
    stage, alpha = stage_for(G, resolution)
    images = render(G, seeded_latents((num_images, G.z_dim), seed), stage, alpha, batch_size)
    paths = [
        save_png(out_dir / f"seed{seed}_{i:04d}.png", make_grid(images[i : i + 1]))
        for i in range(num_images)
    ]
    result: dict[str, Any] = {"images": paths, "grid": None, "interp": None}
    if grid:
        result["grid"] = save_png(out_dir / "grid.png", make_grid(images))
    if interp_keyframes > 1:
        keys = seeded_latents((interp_keyframes, G.z_dim), seed + 1)
        keys = torch.cat([keys, keys[:1]])  # Loop back to the start.
        z = torch.cat(
            [
                slerp(keys[k : k + 1], keys[k + 1 : k + 2], t / interp_steps)
                for k in range(interp_keyframes)
                for t in range(interp_steps)
            ]
        )
        frames = render(G, z, stage, alpha, batch_size)
        result["interp"] = save_gif(
            out_dir / "interp.gif", [make_grid(f[None]) for f in frames], fps
        )
    return result


if __name__ == "__main__":  # the command under its old name; see cli/generate.py
    from progan_lightning.cli.generate import main

    main()
