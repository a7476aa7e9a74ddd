"""Side by side with the simplest PyPI port, ``pro-gan-pth`` 3.4, under one recipe.

    pip install --no-deps pro-gan-pth==3.4   # without its 2021 pins (torch 1.10, torchvision)
    python -m benchmarks.peer DIR --out OUT [--seeds 1 2 3] [override ...]
    python -m benchmarks.peer --report OUT

Both trainers get the recipe of ``python train.py data=folder data.path=DIR`` (the quickstart's
widths, phases, batch, learning rates, D's rate ratio and EMA half-life; fp32 unless an
override says otherwise) and the same real images (the project's cache of ``DIR``). The project
trains as a user runs it (``progan-train`` in a subprocess); the peer's networks, loss and
update steps (``ProGAN.optimize_discriminator`` / ``optimize_generator``) are driven by a loop
that follows the project's growth schedule: one D and one G step per batch, its EMA between
them as in its own ``train``, its Adam never reset. Both are scored the same way: the paper's
SWD (7x7 patches, every Laplacian level down to 16x16) of ``--num-images`` G_ema samples
against as many reals, beside the reals-against-reals floor (two disjoint sets).

``override`` arguments are Hydra overrides of the recipe (e.g. ``model.G.fused_scale=false``);
the project gets all of them, the peer those of the recipe it reads. ``--peer-variant``
changes one thing in the peer toward the project (:data:`PEER_VARIANTS`), for ablations.
Each run appends one JSON line to ``OUT/results.jsonl``; ``--report`` prints the table of
medians over seeds per label. The peer imports torchvision only to save images and for data
transforms, neither used here: a stand-in is installed when torchvision is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import io
import json
import math
import os
import statistics
import subprocess
import sys
import time
import types
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf, open_dict

from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.data.datamodule import build_datamodule
from progan_lightning.export import load_generator
from progan_lightning.growth_plan import resolve_growth
from progan_lightning.imaging import make_grid, save_png, to_float
from progan_lightning.metrics.offline import disjoint_subsets, index_batches, score_sets
from progan_lightning.metrics.registry import prepare_metrics
from progan_lightning.networks import seeded_latents

Sampler = Callable[[torch.Tensor], torch.Tensor]
"""Latents [N, z_dim] -> images in [-1, 1] [N, C, R, R] at the final resolution."""


def recipe(data_dir: str | Path, overrides: list[str], out: Path) -> DictConfig:
    """The training config both trainers follow (``conf/train.yaml`` on the folder)."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("train", overrides=recipe_overrides(data_dir, overrides))
    with open_dict(cfg):
        cfg.paths.output_dir = str(out)
        cfg.paths.cache_dir = os.environ.get("PROGAN_CACHE_DIR", str(out / "cache"))
    return cfg


def recipe_overrides(data_dir: str | Path, overrides: list[str]) -> list[str]:
    """The quickstart's settings on a folder of images, fp32 unless ``overrides`` say else."""
    return [
        "data=folder",
        f"data.path={Path(data_dir).resolve()}",
        "data.resolution=32",
        "model/precision=fp32",
        *overrides,
    ]


def real_images(cfg: DictConfig) -> np.ndarray:
    """The prepared reals at the final resolution, uint8 [N, C, R, R] (builds the cache)."""
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    return np.array(datamodule.images(int(cfg.data.resolution)))  # A writable copy.


def train_project(
    data_dir: str | Path, overrides: list[str], seed: int, run_dir: Path
) -> tuple[Sampler, float]:
    """Train with ``progan-train`` as a user would; G_ema's sampler and the wall time."""
    command = [
        sys.executable,
        "-c",
        "from progan_lightning.cli.train import main; main()",  # progan-train
        *recipe_overrides(data_dir, overrides),
        f"seed={seed}",
        f"hydra.run.dir={run_dir}",
        "logger=none",
        "~callbacks.metrics",
        "~callbacks.rates",
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"progan-train failed ({run_dir}):\n{done.stderr[-3000:]}")
    seconds = time.perf_counter() - start
    G = load_generator(run_dir / "generator.safetensors", _device())
    stage = G.num_stages - 1
    return (lambda z: G(z, stage, 1.0)), seconds


def _torchvision_stand_in() -> None:
    """Register an empty ``torchvision`` where none is installed: the peer's ``gan.py``
    imports ``save_image`` and four transforms at import time and uses none of them here."""
    if "torchvision" in sys.modules or importlib.util.find_spec("torchvision") is not None:
        return

    class Unused:
        """Built at the peer's import; never applied here."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            pass

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("torchvision is not installed (a stand-in for the peer's imports)")

    root = types.ModuleType("torchvision")
    utils = types.ModuleType("torchvision.utils")
    transforms = types.ModuleType("torchvision.transforms")
    utils.save_image = Unused()
    for name in ("Compose", "RandomHorizontalFlip", "Resize", "ToTensor"):
        setattr(transforms, name, Unused)
    root.utils, root.transforms = utils, transforms
    sys.modules.update(
        {"torchvision": root, "torchvision.utils": utils, "torchvision.transforms": transforms}
    )


def _conv_transpose_forward(
    self: torch.nn.ConvTranspose2d, x: torch.Tensor, output_size: Any = None
) -> torch.Tensor:
    """The peer's ``EqualizedConvTranspose2d.forward`` on torch >= 1.12: the original calls
    ``_output_padding`` with torch 1.10's private signature (and the builtin ``input``), which
    fails since; with no ``output_size`` it returns the layer's ``output_padding``, used here."""
    weight = self.weight * self.scale  # The runtime weight scale, as the original.
    return torch.conv_transpose2d(
        x,
        weight,
        self.bias,
        self.stride,
        self.padding,
        self.output_padding,
        self.groups,
        self.dilation,
    )


def _grads_finite(network: torch.nn.Module) -> bool:
    """The peer's ``ProGAN._check_grad_ok`` (skip the step when a gradient holds a NaN or an
    infinity) with one read back to the host instead of one or two per parameter: on a GPU
    the original's ~80 synchronizations per step would dominate its time."""
    grads = [p.grad for p in network.parameters() if p.grad is not None]
    if not grads:
        return True
    return bool(torch.stack([torch.isfinite(g).all() for g in grads]).all())


def _peer() -> types.SimpleNamespace:
    """The peer's modules (``pro_gan_pytorch``), with a clear error when it is missing."""
    _torchvision_stand_in()
    try:
        from pro_gan_pytorch import custom_layers, gan, losses, modules, networks
    except ModuleNotFoundError as err:
        raise ModuleNotFoundError(
            "the peer is not installed: pip install --no-deps pro-gan-pth==3.4"
        ) from err
    custom_layers.EqualizedConvTranspose2d.forward = _conv_transpose_forward
    gan.ProGAN._check_grad_ok = staticmethod(_grads_finite)
    return types.SimpleNamespace(
        custom_layers=custom_layers, gan=gan, losses=losses, modules=modules, networks=networks
    )


def _lrelu_after_pool(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """A peer D block in the project's (and the official fused) order: the second conv,
    the 2x2 average pool, then the activation."""
    y = block.lrelu(block.conv_1(x))
    return block.lrelu(block.downSampler(block.conv_2(y)))


def _norm_after_dense(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The peer's G input block with the official pixel norm after its first layer too."""
    y = block.pixNorm(x[:, :, None, None])
    y = block.pixNorm(block.lrelu(block.conv_1(y)))
    return block.pixNorm(block.lrelu(block.conv_2(y)))


def _official_gains(G: torch.nn.Module, D: torch.nn.Module) -> None:
    """The official He gains where the peer uses sqrt(2): toRGB and D's output 1, the 4x4
    dense sqrt(2)/4."""
    for layer in (*G.rgb_converters, D.layers[-1].conv_3):
        layer.scale /= math.sqrt(2)
    G.layers[0].conv_1.scale /= 4


PEER_VARIANTS: dict[str, str] = {
    "d_hidden": "D's 4x4 dense as wide as the project's (nf(0)) instead of the latent size",
    "lrelu_after_pool": "D blocks activate after the pooling (project, official fused layers)",
    "norm_after_dense": "G's input block pixel-normalizes after its first layer (official)",
    "official_gains": "toRGB and D output gain 1, G's 4x4 dense gain sqrt(2)/4 (official)",
    "reset_adam": "fresh Adam state at every phase change (official)",
}
"""One change each, toward the project, for ablations (``--peer-variant``)."""


def train_peer(
    cfg: DictConfig,
    images: np.ndarray,
    seed: int,
    device: torch.device,
    variants: tuple[str, ...] = (),
) -> tuple[Sampler, float]:
    """Train the peer on ``images`` (uint8 [N, C, R, R]) with the recipe of ``cfg``."""
    unknown = set(variants) - set(PEER_VARIANTS)
    if unknown:
        raise ValueError(f"--peer-variant {sorted(unknown)}: use some of {list(PEER_VARIANTS)}")
    peer = _peer()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    g, d = cfg.model.G, cfg.model.D
    peer.networks.nf = functools.partial(
        _nf_of(peer), fmap_base=g.fmap_base, fmap_decay=g.fmap_decay, fmap_max=g.fmap_max
    )
    depth = int(math.log2(int(cfg.data.resolution)))
    G = peer.networks.Generator(depth, int(cfg.data.channels), int(g.z_dim))
    hidden = peer.networks.nf(0) if "d_hidden" in variants else int(g.z_dim)
    D = peer.networks.Discriminator(depth, int(cfg.data.channels), hidden)
    if "official_gains" in variants:
        _official_gains(G, D)
    if "lrelu_after_pool" in variants:
        for block in D.layers[:-1]:
            block.forward = types.MethodType(_lrelu_after_pool, block)
    if "norm_after_dense" in variants:
        G.layers[0].forward = types.MethodType(_norm_after_dense, G.layers[0])
    if int(d.mbstd_group_size) != 4:
        D.layers[-1].batch_discriminator.group_size = int(d.mbstd_group_size)
    if device.type == "cuda":  # Not "cuda": the peer would wrap both in DataParallel.
        device = torch.device("cuda", device.index or 0)
    with contextlib.redirect_stdout(io.StringIO()):  # It prints both networks.
        gan = peer.gan.ProGAN(G, D, device=device, use_ema=True)
    loss = peer.losses.WganGP(drift=float(cfg.model.loss.drift))
    growth = instantiate(cfg.growth)
    schedule = resolve_growth(growth.settings, growth.preset, world_size=1).schedule
    base_lr = float(cfg.model.optimizer.lr)
    d_ratio = float(cfg.model.d_lr_ratio)

    def adam(params: Iterator[torch.nn.Parameter]) -> torch.optim.Adam:
        betas = tuple(cfg.model.optimizer.betas)
        return torch.optim.Adam(params, lr=base_lr, betas=betas, eps=cfg.model.optimizer.eps)

    opt_g, opt_d = adam(gan.gen.parameters()), adam(gan.dis.parameters())
    reals = torch.from_numpy(images).to(device)
    order = np.empty(0, dtype=np.int64)
    nimg, phase_index = 0, None
    start = time.perf_counter()
    while nimg < schedule.total_nimg:
        phase = schedule.phase_at(nimg)
        if phase.index != phase_index and "reset_adam" in variants and phase_index is not None:
            opt_g, opt_d = adam(gan.gen.parameters()), adam(gan.dis.parameters())
        phase_index = phase.index
        lr = (phase.lr or base_lr) * schedule.lr_scale(nimg)
        for group in opt_g.param_groups:
            group["lr"] = lr
        for group in opt_d.param_groups:
            group["lr"] = lr * d_ratio
        batch = phase.batch_size
        if len(order) < batch:  # Shuffled epochs, as the peer's DataLoader(shuffle=True).
            order = np.concatenate([order, rng.permutation(len(images))])
        index, order = order[:batch], order[batch:]
        real = to_float(reals[torch.from_numpy(index).to(device)])  # [NCHW]
        if cfg.data.mirror:
            flip = torch.rand(batch, device=device) < 0.5
            real = torch.where(flip[:, None, None, None], real.flip(3), real)
        noise = torch.randn(batch, int(g.z_dim), device=device)
        alpha, stage_depth = phase.alpha(nimg), phase.stage + 2
        gan.optimize_discriminator(loss, opt_d, noise, real, stage_depth, alpha)
        beta = ema_beta(cfg.model, batch)
        peer.custom_layers.update_average(gan.gen_shadow, gan.gen, beta=beta)
        gan.optimize_generator(loss, opt_g, noise, real, stage_depth, alpha)
        nimg += batch
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    G_ema = gan.gen_shadow.eval()
    return (lambda z: G_ema(z, depth, 1.0)), seconds


def ema_beta(model: DictConfig, batch: int) -> float:
    """G_ema's decay per step: from the half-life ``model.ema_kimg`` when set, as the project
    computes it, else ``model.ema_beta``."""
    if model.ema_kimg is None:
        return float(model.ema_beta)
    return 0.5 ** (batch / (1000 * float(model.ema_kimg)))


def _nf_of(peer: types.SimpleNamespace) -> Callable[..., int]:
    """The peer's own ``nf`` (kept across calls that replace ``networks.nf``)."""
    nf = peer.networks.nf
    return nf.func if isinstance(nf, functools.partial) else nf


@torch.no_grad()
def swd(
    cfg: DictConfig,
    images: np.ndarray,
    reference: np.ndarray,
    compared: np.ndarray | Sampler,
    num_images: int,
    device: torch.device,
) -> dict[str, float]:
    """The SWD of ``compared`` (reals at indices, or a sampler) against ``images[reference]``,
    per level and averaged (``{"swd_32": ..., "swd_16": ..., "swd_avg": ...}``, x1e3)."""
    settings = OmegaConf.to_container(cfg.metrics.swd, resolve=True)
    options = prepare_metrics({"swd": settings})
    batch = 256

    def reals(index: np.ndarray) -> Iterator[torch.Tensor]:
        return index_batches(images, index, batch)

    def fakes(sample: Sampler) -> Iterator[torch.Tensor]:
        z = seeded_latents((num_images, int(cfg.model.G.z_dim)), 0)
        for i in range(0, num_images, batch):
            yield sample(z[i : i + batch].to(device)).float().clamp(-1, 1).cpu()

    other = reals(compared) if isinstance(compared, np.ndarray) else fakes(compared)
    values = score_sets(options, int(cfg.data.resolution), reals(reference), other, device)
    return {k.removeprefix("metrics/"): v for k, v in values.items() if "swd" in k}


@torch.no_grad()
def save_grid(cfg: DictConfig, sample: Sampler, path: Path, count: int = 64) -> Path:
    """An 8x8 grid of the first latents the SWD is taken on, at 2x (nearest), as PNG."""
    z = seeded_latents((count, int(cfg.model.G.z_dim)), 0)
    device = _device()
    images = sample(z.to(device)).float().cpu()
    return save_png(path, make_grid(images, tile=2 * int(cfg.data.resolution)))


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Train and score every trainer of ``args`` on every seed; append the JSON lines."""
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("PROGAN_CACHE_DIR", str(out / "cache"))
    cfg = recipe(args.data, args.overrides, out)
    images = real_images(cfg)
    reference, held_out = disjoint_subsets(len(images), args.num_images, 2, 0)
    device = _device()
    label = args.label or " ".join(args.overrides + [f"peer:{v}" for v in args.peer_variant])
    records = []
    if args.floor:
        floor = swd(cfg, images, reference, held_out, args.num_images, device)
        records.append({"label": "reals vs reals", "trainer": "floor", "seed": 0, **floor})
    for seed in args.seeds:
        for trainer in args.trainers:
            if trainer == "project":
                run_dir = out / "runs" / f"{_slug(label)}-seed{seed}"
                sample, seconds = train_project(args.data, args.overrides, seed, run_dir)
            else:
                variants = tuple(args.peer_variant)
                sample, seconds = train_peer(cfg, images, seed, device, variants)
            scores = swd(cfg, images, reference, sample, args.num_images, device)
            save_grid(cfg, sample, out / "grids" / f"{_slug(label)}-{trainer}-seed{seed}.png")
            record = {"label": label, "trainer": trainer, "seed": seed, **scores}
            records.append({**record, "seconds": round(seconds, 1), "device": str(device)})
    with open(out / "results.jsonl", "a") as f:
        for record in records:
            f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)
    return records


def _slug(label: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in label)[:80] or "recipe"


def report(out: str | Path) -> str:
    """A markdown table of ``OUT/results.jsonl``: per trainer and label, the median over
    seeds of each SWD level and of the wall time, the seeds, and the distance above the floor
    (median SWD average minus the floor's)."""
    rows: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in Path(out, "results.jsonl").read_text().splitlines():
        record = json.loads(line)
        rows[(record["trainer"], record["label"])].append(record)
    floors = rows.pop(("floor", "reals vs reals"), [])
    floor = statistics.median(r["swd_avg"] for r in floors) if floors else math.nan
    levels = sorted(
        {k for records in rows.values() for r in records for k in r if k.startswith("swd_")}
        - {"swd_avg"},
        key=lambda k: -int(k.split("_")[1]),
    )
    head = ["trainer", "label", "seeds", "swd_avg", *levels, "above floor", "wall time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (trainer, label), records in sorted(rows.items()):
        med = {k: statistics.median(r[k] for r in records) for k in ["swd_avg", *levels]}
        seconds = statistics.median(r["seconds"] for r in records)
        seeds = ",".join(str(r["seed"]) for r in sorted(records, key=lambda r: r["seed"]))
        cells = [trainer, label or "recipe", seeds, f"{med['swd_avg']:.1f}"]
        cells += [f"{med[k]:.1f}" for k in levels]
        cells += [f"{med['swd_avg'] - floor:.1f}", f"{seconds:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(f"\nFloor (reals vs reals, swd_avg): {floor:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", help="folder of training images")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides of the recipe")
    parser.add_argument("--out", default="outputs/peer", help="results folder")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument(
        "--trainers", nargs="*", default=["project", "peer"], choices=["project", "peer"]
    )
    parser.add_argument("--peer-variant", nargs="*", default=[], choices=list(PEER_VARIANTS))
    parser.add_argument("--label", default=None, help="row name (default: the overrides)")
    parser.add_argument("--num-images", type=int, default=2048)
    parser.add_argument("--floor", action="store_true", help="also score reals vs reals")
    parser.add_argument("--report", metavar="OUT", help="print the table of OUT and stop")
    args = parser.parse_intermixed_args(argv)
    if args.report:
        print(report(args.report))
        return
    if not args.data:
        parser.error("give the folder of training images (or --report OUT)")
    run(args)


if __name__ == "__main__":
    main()
