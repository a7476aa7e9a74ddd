"""One training run of the plaid study, scored per SWD level and by its spectrum.

    python -m benchmarks.plaid.study DATA --out OUT --trainer project|peer --seed 1 \
        [--peer-variant NAME ...] [--label NAME] [--floor] [override ...]
    python -m benchmarks.plaid.study --report OUT

Trains one trainer on the folder ``DATA`` with the peer comparison's recipe and Hydra
``override``s (``benchmarks.peer``: the project as ``progan-train`` runs it, or
pro-gan-pth 3.4 driven along the same schedule), then scores ``--num-images`` G_ema samples
against as many reals exactly as that comparison does (the paper's SWD, x1e3, per Laplacian
level), and adds the frequency view (``spectrum.py``): how many spectral peaks the reals lack,
and the fakes' power over the reals' in the highest ring of frequencies. ``--floor`` also
scores the reals against disjoint reals. Writes ``OUT/results.jsonl`` (one line per run),
``OUT/samples/*.npz`` (the samples, uint8 NCHW), ``OUT/grids/*.png`` and
``OUT/spectra/*.png`` (:func:`spectrum.spectrum_map`). Run it from the repository root
as a module.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks import peer
from benchmarks.plaid.spectrum import excess_peaks, power_spectrum, radial_profile, spectrum_map
from progan_lightning.imaging import save_png, to_uint8
from progan_lightning.metrics.offline import disjoint_subsets
from progan_lightning.networks import seeded_latents


def spectrum_scores(reals: np.ndarray, fakes: np.ndarray, factor: float = 2.0) -> dict[str, Any]:
    """The frequency view as numbers: the peaks the reals lack (count and the three
    strongest) and the fakes' power over the reals' in the outermost full ring (|f| = 0.5)."""
    real, fake = power_spectrum(reals), power_spectrum(fakes)
    peaks = excess_peaks(fake, real, factor)
    radii, real_rings = radial_profile(real)
    _, fake_rings = radial_profile(fake)
    nyquist = int(np.argmin(np.abs(radii - 0.5)))
    return {
        "peaks": len(peaks),
        "top_peaks": [[p.fy, p.fx, round(p.ratio, 2)] for p in peaks[:3]],
        "ring_0.5_ratio": round(float(fake_rings[nyquist] / real_rings[nyquist]), 3),
    }


@torch.no_grad()
def samples(sample: peer.Sampler, z_dim: int, count: int) -> np.ndarray:
    """``count`` G_ema images of the latents the SWD is taken on. uint8 [N, C, R, R]"""
    z = seeded_latents((count, z_dim), 0)
    device = peer._device()
    chunks = [sample(z[i : i + 256].to(device)).float().cpu() for i in range(0, count, 256)]
    return to_uint8(torch.cat(chunks)).numpy()


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Train, score and record one run (and the floor with ``--floor``)."""
    out = Path(args.out).resolve()
    cfg = peer.recipe(args.data, args.overrides, out)
    images = peer.real_images(cfg)
    reference, held_out = disjoint_subsets(len(images), args.num_images, 2, 0)
    device = peer._device()
    label = args.label or " ".join(args.overrides + [f"peer:{v}" for v in args.peer_variant])
    label = label or "recipe"
    slug = peer._slug(f"{label}-{args.trainer}-seed{args.seed}")
    records = []
    if args.floor:
        floor = peer.swd(cfg, images, reference, held_out, args.num_images, device)
        floor |= spectrum_scores(images[reference], images[held_out])
        records.append({"label": "reals vs reals", "trainer": "floor", "seed": 0, **floor})
    if args.trainer == "project":
        run_dir = out / "runs" / slug
        sample, seconds = peer.train_project(args.data, args.overrides, args.seed, run_dir)
    else:
        variants = tuple(args.peer_variant)
        sample, seconds = peer.train_peer(cfg, images, args.seed, device, variants)
    fakes = samples(sample, int(cfg.model.G.z_dim), args.num_images)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "samples" / f"{slug}.npz", images=fakes)
    scores = peer.swd(cfg, images, reference, sample, args.num_images, device)
    scores |= spectrum_scores(images[reference], fakes)
    save_png(
        out / "spectra" / f"{slug}.png",
        spectrum_map(power_spectrum(images[reference]), power_spectrum(fakes)),
    )
    peer.save_grid(cfg, sample, out / "grids" / f"{slug}.png")
    record = {"label": label, "trainer": args.trainer, "seed": args.seed, **scores}
    records.append({**record, "seconds": round(seconds, 1), "device": str(device)})
    with open(out / "results.jsonl", "a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
            print(json.dumps(r), flush=True)
    return record


def report(out: str | Path) -> str:
    """``OUT/results.jsonl`` as a markdown table, one row per run, with each run's distance
    above the floor (its swd_avg minus the floor's, when a floor was scored)."""
    records = [json.loads(line) for line in Path(out, "results.jsonl").read_text().splitlines()]
    floors = [r["swd_avg"] for r in records if r["trainer"] == "floor"]
    lines = [
        "| trainer | label | seed | swd_avg | swd_32 | swd_16 | above floor | peaks "
        "| strongest peak | 0.5 ring | wall time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        above = f"{r['swd_avg'] - floors[0]:.1f}" if floors and r["trainer"] != "floor" else ""
        cells = [r["trainer"], r["label"], str(r["seed"])]
        cells += [f"{r[k]:.1f}" for k in ("swd_avg", "swd_32", "swd_16")]
        top = r["top_peaks"][0] if r["top_peaks"] else None
        strongest = f"({top[0]:.3f}, {top[1]:.3f}): {top[2]:.1f}x" if top else ""
        cells += [above, str(r["peaks"]), strongest, f"{r['ring_0.5_ratio']:.2f}"]
        cells += [str(r.get("seconds", ""))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="folder of training images")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the recipe")
    parser.add_argument("--out", default="outputs/plaid")
    parser.add_argument("--trainer", choices=["project", "peer"], default="project")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--peer-variant", nargs="*", default=[], choices=list(peer.PEER_VARIANTS))
    parser.add_argument("--label", default=None)
    parser.add_argument("--num-images", type=int, default=2048)
    parser.add_argument("--floor", action="store_true")
    parser.add_argument("--report", metavar="OUT")
    args = parser.parse_intermixed_args(argv)
    if args.report:
        print(report(args.report))
        return
    if not args.data:
        parser.error("give the folder of training images (or --report OUT)")
    run(args)


if __name__ == "__main__":
    main()
