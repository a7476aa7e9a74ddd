"""The frequency view of a project run's G_ema at each of its checkpoints, against its reals.

    python -m benchmarks.plaid.checkpoints RUN [--num-images 1024]

Shows when a texture appears and whether it fades: for every checkpoint at the final stage
(the fade-in's included, at its alpha), ``--num-images`` G_ema samples of fixed latents
(``seeded_latents(..., 0)``) against the first 2048 of the run's reals, scored as
:func:`benchmarks.plaid.study.spectrum_scores` scores a run's end (the peaks the reals lack,
the strongest one, the 0.5 ring). Prints a markdown table, a row per checkpoint in the order
they were written.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from benchmarks.plaid.study import spectrum_scores
from benchmarks.run_folder import final_stage_checkpoints, run_config, run_images
from progan_lightning.checkpoint import images_seen
from progan_lightning.imaging import to_uint8
from progan_lightning.networks import seeded_latents


def table(run: str | Path, num_images: int = 1024, num_reals: int = 2048) -> str:
    """The markdown table of the module docstring for the run folder ``run``."""
    reals = run_images(run_config(run))[:num_reals]
    lines = [
        "| checkpoint | kimg | alpha | peaks | strongest peak | 0.5 ring |",
        "|---|---|---|---|---|---|",
    ]
    for path, checkpoint, G in final_stage_checkpoints(run):
        with torch.no_grad():
            z = seeded_latents((num_images, G.z_dim), 0)
            fakes = to_uint8(G(z, G.trained_stage, G.trained_alpha)).numpy()
        scores = spectrum_scores(reals, fakes)
        top = scores["top_peaks"][0] if scores["top_peaks"] else None
        strongest = f"({top[0]:.3f}, {top[1]:.3f}): {top[2]:.1f}x" if top else ""
        kimg = images_seen(checkpoint) / 1000
        cells = [path.name, f"{kimg:g}", f"{G.trained_alpha:.3f}", str(scores["peaks"])]
        cells += [strongest, f"{scores['ring_0.5_ratio']:.2f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a project training run's folder")
    parser.add_argument("--num-images", type=int, default=1024)
    args = parser.parse_args(argv)
    print(table(args.run, args.num_images))


if __name__ == "__main__":
    main()
