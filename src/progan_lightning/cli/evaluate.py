"""``progan-evaluate``: the training metrics of a generator, or of the reals against
themselves (the floor).

    progan-evaluate source=reals num_images=2048                 # the floor of the data
    progan-evaluate source=outputs/.../generator.safetensors     # a generator against it
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from progan_lightning.callbacks.metrics import SETTINGS
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.generate import load_any, stage_for
from progan_lightning.metrics.offline import disjoint_subsets, score_sets
from progan_lightning.metrics.registry import prepare_metrics
from progan_lightning.networks import seeded_latents

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Score ``cfg.source`` (``reals`` or a generator) against the prepared real images."""
    options = prepare_metrics({k: v for k, v in cfg.metrics.items() if k not in SETTINGS})
    if not options:
        raise ValueError("metrics=none selects no metric; use metrics=default or metrics=swd")
    n, batch = int(cfg.num_images), int(cfg.metrics.get("batch_size", 64))
    if n < 2:
        raise ValueError(f"num_images={n} must be >= 2")
    device = torch.device(
        ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device
    )
    G = None if cfg.source == "reals" else load_any(cfg.source, device)
    stage, alpha = stage_for(G, None) if G is not None else (None, 1.0)
    resolution = int(cfg.data.resolution) if G is None else 4 * 2**stage
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.prepare_data()
    images = datamodule.images(resolution)  # uint8 [N, C, res, res]
    sets = disjoint_subsets(len(images), n, 2 if G is None else 1, int(cfg.seed))

    def batches(index: np.ndarray):
        for start in range(0, len(index), batch):
            yield torch.from_numpy(np.asarray(images[index[start : start + batch]]))

    if G is None:
        fakes = batches(sets[1])
    else:
        z = seeded_latents((n, G.z_dim), int(cfg.seed))
        fakes = (G(z[i : i + batch].to(device), stage, alpha) for i in range(0, n, batch))
    values = score_sets(options, resolution, batches(sets[0]), fakes, device)
    result = {"source": str(cfg.source), "resolution": resolution, "num_images": n, **values}
    out = Path(cfg.paths.output_dir) / "evaluate.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    log.info(f"{json.dumps(result)} -> {out}")
    return values


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="evaluate")
def main(cfg: DictConfig) -> None:
    """Hydra entry point (``conf/evaluate.yaml``)."""
    evaluate(cfg)


if __name__ == "__main__":
    main()
