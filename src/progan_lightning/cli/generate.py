"""``progan-generate``: images, a grid and a latent interpolation from a generator.

progan-generate source=outputs/.../generator.safetensors num_images=64 seed=1
progan-generate source=... class=[star,ring]  # a conditional generator: these classes only
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from progan_lightning.cli.command import command
from progan_lightning.cli.errors import user_errors
from progan_lightning.devices import resolve_device
from progan_lightning.fs import check_folder, expand_path
from progan_lightning.generate import check_settings, generate, load_any

log = logging.getLogger(__name__)


@command("generate")
@user_errors
def main(cfg: DictConfig) -> None:
    """Hydra entry point (``conf/generate.yaml``)."""
    # Check the counts before loading anything (a checkpoint can take a while).
    check_settings(
        cfg.num_images, cfg.batch_size, cfg.interp.keyframes, cfg.interp.steps, cfg.interp.fps
    )
    check_folder(expand_path(cfg.out_dir, "out_dir"), "out_dir")
    device = resolve_device(cfg.device)
    G = load_any(cfg.source, device, cfg.allow_pickle)
    result = generate(
        G,
        cfg.out_dir,
        num_images=cfg.num_images,
        seed=cfg.seed,
        resolution=cfg.resolution,
        grid=cfg.grid,
        interp_keyframes=cfg.interp.keyframes,
        interp_steps=cfg.interp.steps,
        fps=cfg.interp.fps,
        batch_size=cfg.batch_size,
        class_=cfg["class"],  # a name, an index, a list of them, or None
        seeds=cfg.get("seeds"),
    )
    classes = f" of {len(result['classes'])} classes" if result["classes"] else ""
    log.info(f"wrote {len(result['images'])} images{classes}, grid and animation to {cfg.out_dir}")


if __name__ == "__main__":
    main()
