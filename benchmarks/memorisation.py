"""How far a run's critic has memorised its training images, checkpoint by checkpoint.

    python -m benchmarks.memorisation RUN --whole 10000 [--held-out 2048] [--batch 32]

For a run trained on the first ``N`` images of a larger source (``data.source.num_images=N``,
e.g. 300 of the built-in digits' 10000), each checkpoint's D scores three sets at the final
resolution: the ``N`` training images, ``--held-out`` images of the same source that it never
saw (those after the first ``N`` of ``--whole``), and as many of G_ema's samples. A critic that
generalises scores the held-out reals like the training ones; one that memorises scores its
training images higher. Printed per checkpoint (a markdown table):

- the three mean scores;
- ``memorised``: ``(train - held-out) / (held-out - fake)``, the training images' lead over
  unseen reals as a share of the unseen reals' lead over the fakes (0: none; 1: D sets its
  training images as far above unseen reals as it sets those above the fakes);
- ADA's heuristic ``r_t`` as the project computes it for WGAN-GP (``losses.real_sign`` about
  the midpoint of the batch's mean real and fake scores), in batches of ``--batch``, on the
  training images and on the held-out ones. ADA's ``p`` rises while the training images' value
  stays above ``augment.target``.

Only checkpoints at the final stage and alpha 1 are scored. The training images must be the
first ``N`` of the whole source; this is checked, image for image.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from hydra.utils import instantiate

from benchmarks.run_folder import final_stage_checkpoints, run_config, run_images
from progan_lightning.imaging import to_float
from progan_lightning.losses import real_sign
from progan_lightning.networks import Discriminator, seeded_latents


def memorised(train: float, held_out: float, fake: float) -> float:
    """The training images' lead over unseen reals as a share of the unseen reals' lead over
    the fakes: ``(train - held_out) / (held_out - fake)`` (mean critic scores)."""
    return (train - held_out) / (held_out - fake)


def midpoint_signal(reals: torch.Tensor, fakes: torch.Tensor, batch: int) -> float:
    """ADA's ``r_t`` for WGAN-GP over whole batches: the mean over batches of ``real_sign`` of
    the reals' scores about the midpoint of the batch's mean real and fake scores, as the
    training step computes it. reals, fakes: scores [N] (the first ``batch * (N // batch)``
    of each are used)."""
    count = min(len(reals), len(fakes)) // batch
    if count == 0:
        raise ValueError(f"--batch {batch} is larger than the {len(reals)} scores at hand")
    signs = []
    for i in range(0, count * batch, batch):
        real, fake = reals[i : i + batch], fakes[i : i + batch]
        signs.append(real_sign(real, (real.mean() + fake.mean()) / 2))
    return float(torch.stack(signs).mean())


@torch.no_grad()
def scores(D: Discriminator, images: torch.Tensor, stage: int, chunk: int = 256) -> torch.Tensor:
    """D's scores of ``images`` [N, C, R, R] in [-1, 1] at ``stage``, alpha 1. [N]"""
    return torch.cat(
        [D(images[i : i + chunk], stage, 1.0)[:, 0] for i in range(0, len(images), chunk)]
    )


def table(run: Path, whole: int, held_out: int, batch: int) -> str:
    """The markdown table of the module docstring for the run folder ``run``."""
    cfg = run_config(run)
    train_u8 = run_images(cfg)
    n = len(train_u8)
    if whole - n < held_out:
        raise ValueError(
            f"--whole {whole} leaves {max(whole - n, 0)} unseen images, fewer than "
            f"--held-out {held_out}"
        )
    whole_u8 = run_images(cfg, whole)
    if not np.array_equal(whole_u8[:n], train_u8):
        raise ValueError(f"the run's {n} images are not the first {n} of the {whole}")
    train = to_float(torch.from_numpy(train_u8))
    unseen = to_float(torch.from_numpy(whole_u8[n : n + held_out]))
    D = instantiate(cfg.model.D)
    lines = [
        "| checkpoint | train | held-out | fake | memorised | r_t train | r_t held-out |",
        "|---|---|---|---|---|---|---|",
    ]
    for path, checkpoint, G in final_stage_checkpoints(run, stable_only=True):
        stage = G.trained_stage
        state = checkpoint["state_dict"]
        D.load_state_dict({k[2:]: v for k, v in state.items() if k.startswith("D.")})
        D.eval()
        with torch.no_grad():
            fakes = G(seeded_latents((held_out, G.z_dim), 0), stage, 1.0)
        t, u, f = (scores(D, x, stage) for x in (train, unseen, fakes))
        cells = [path.name] + [f"{float(x.mean()):.2f}" for x in (t, u, f)]
        cells.append(f"{memorised(float(t.mean()), float(u.mean()), float(f.mean())):.2f}")
        cells += [f"{midpoint_signal(x, f, batch):.2f}" for x in (t, u)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a training run's folder")
    parser.add_argument("--whole", type=int, required=True, help="images in the whole source")
    parser.add_argument("--held-out", type=int, default=2048)
    parser.add_argument("--batch", type=int, default=32, help="the training batch, for r_t")
    args = parser.parse_args(argv)
    print(table(args.run, args.whole, args.held_out, args.batch))


if __name__ == "__main__":
    main()
