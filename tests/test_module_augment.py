"""Augmentation in the training step: every image D scores goes through it (the penalty's
mixes too), labels and G_ema's images never do, p = 0 changes nothing, and ADA's p is the
same on every rank."""

from __future__ import annotations

import inspect
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from helpers import stub_trainer, tiny_module
from progan_lightning.augment import OPS, Augment, cutout_size
from progan_lightning.instantiate import instantiate
from progan_lightning.losses import LSGAN, WGANGP, Logistic
from progan_lightning.train import train


@pytest.mark.parametrize("option", [None, "none", "diffaugment", "ada"])
def test_each_augment_option_reaches_the_model(make_cfg, option):
    cfg = make_cfg(*([f"augment={option}"] if option else []))
    augment = instantiate(cfg.model).augment
    assert augment.seed == cfg.seed or option in (None, "none")
    if option in (None, "none"):  # the default: the paper's training
        assert not augment.enabled
    elif option == "diffaugment":
        assert augment.ops == ["brightness", "saturation", "contrast", "translation", "cutout"]
        assert augment.p == 1.0 and augment.controller is None
    else:
        assert augment.p == 0.0 and augment.controller.target == 0.6
        assert (augment.controller.speed_kimg, augment.controller.interval) == (100, 4)


def scored_images(module, reals: torch.Tensor, labels=None) -> list[torch.Tensor]:
    """The images D scored in one training step, in call order."""
    seen: list[torch.Tensor] = []
    hook = module.D.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach()))
    opt_g, opt_d = module.build_optimizers()
    try:
        module.train_step(reals, opt_g, opt_d, labels)
    finally:
        hook.remove()
    return seen


def at_8x8(module, alpha: float = 1.0):
    """``module`` at its 8x8 stage."""
    module.progress.stage, module.progress.alpha = 1, alpha
    return module


def reals_like(n: int = 8, res: int = 8) -> torch.Tensor:
    return torch.rand(n, 3, res, res, generator=torch.Generator().manual_seed(1)) * 2 - 1


@pytest.mark.parametrize("alpha", [1.0, 0.5], ids=["stable", "fade"])
def test_every_image_d_scores_is_augmented_the_penalty_included(alpha):
    # Cutout leaves an exact-zero square in each image, which neither reals, nor G's
    # images, nor their mixes hold otherwise.
    module = at_8x8(tiny_module(8, augment=Augment(ops=["cutout"], seed=0)), alpha)
    seen = scored_images(module, reals_like())
    # D step: reals, fakes, the penalty's mixes; G step: fakes.
    assert len(seen) == 4
    least = (cutout_size(8) // 2) ** 2 * 3  # the square clipped to a quarter, 3 channels
    for images in seen:
        zeros = (images == 0).flatten(1).sum(1)  # [N]
        assert (zeros >= least).all()
    plain = scored_images(at_8x8(tiny_module(8), alpha), reals_like())
    assert all((images == 0).sum() == 0 for images in plain)


def test_the_penalty_differentiates_through_the_augmentation():
    # A penalty on D after the ops: brightness and translation keep ||grad|| as D's own,
    # contrast scales it, so the penalty differs from the one without augmentation.
    torch.manual_seed(0)
    module = tiny_module(8, augment=Augment(ops=["contrast"], seed=0))
    module.progress.stage = 1
    reals = reals_like()
    module.seed_augment(reals.device)
    _, stats = module.discriminator_loss(reals)
    assert stats["loss/gp"].isfinite() and stats["loss/gp"] > 0
    torch.manual_seed(0)
    plain = tiny_module(8)
    plain.progress.stage = 1
    _, plain_stats = plain.discriminator_loss(reals)
    assert not torch.equal(stats["loss/gp"], plain_stats["loss/gp"])


@pytest.mark.parametrize("loss", [WGANGP(), LSGAN(), Logistic(r1_gamma=1.0)], ids=type)
def test_ada_at_p_zero_trains_bit_for_bit_as_without(loss):
    def weights(augment):
        module = tiny_module(8, augment=augment)
        module.loss = loss
        module.progress.stage = 1
        opt_g, opt_d = module.build_optimizers()
        torch.manual_seed(3)
        for _ in range(3):
            module.train_step(reals_like(), opt_g, opt_d)
        return module.state_dict()

    ada = weights(Augment(ops=list(OPS), p=0.0, adaptive=True, interval=1000, seed=0))
    plain = weights(None)
    assert ada.keys() == plain.keys()
    assert all(torch.equal(ada[k], plain[k]) for k in plain)


@pytest.mark.parametrize("conditioning", ["acgan", "projection"])
def test_labels_reach_d_untouched(conditioning):
    module = tiny_module(8, num_classes=3, augment=Augment(ops=list(OPS), seed=0))
    module.D.conditioning = conditioning
    module.progress.stage = 1
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    given = []

    def spy(m, args, kwargs):
        given.append(kwargs.get("labels"))

    hook = module.D.register_forward_pre_hook(spy, with_kwargs=True)
    opt_g, opt_d = module.build_optimizers()
    loss_d, loss_g, stats = module.train_step(reals_like(), opt_g, opt_d, labels)
    hook.remove()
    assert loss_d.isfinite() and loss_g.isfinite() and "loss/class_real" in stats
    if conditioning == "projection":
        assert all(torch.equal(g, labels) for g in given[:3])  # the D step's: the reals'


def test_bf16_keeps_the_fakes_dtype_and_trains():
    module = tiny_module(8, precision="bf16", augment=Augment(ops=list(OPS), seed=0))
    module.progress.stage = 1
    seen = scored_images(module, reals_like())
    assert seen[1].dtype == torch.bfloat16  # the D step's fakes, augmented in bf16
    assert all(images.isfinite().all() for images in seen)


def test_samples_metrics_and_export_never_see_augmentation(make_cfg, monkeypatch):
    callers = []
    original = Augment.__call__

    def recording(self, x, generator):
        callers.append(any(f.function == "train_step" for f in inspect.stack()))
        return original(self, x, generator)

    monkeypatch.setattr(Augment, "__call__", recording)
    cfg = make_cfg(
        "augment=diffaugment",
        "metrics=swd",
        "metrics.num_images=32",
        "growth.total_kimg=0.16",
    )
    train(cfg)
    assert callers and all(callers)
    assert list(Path(cfg.paths.output_dir, "samples").glob("*.png"))
    assert Path(cfg.paths.output_dir, "generator.safetensors").is_file()


def test_p_and_its_heuristic_are_logged_and_on_the_tick_line(make_cfg, caplog):
    cfg = make_cfg("augment=ada", "augment.p=0.25", "logger=csv", "growth.total_kimg=0.064")
    with caplog.at_level("INFO"):
        train(cfg)
    header = Path(cfg.paths.output_dir, "csv", "metrics.csv").read_text().splitlines()[0]
    assert {"augment/p", "augment/rt"} <= set(header.split(","))
    ticks = [r.getMessage() for r in caplog.records if r.getMessage().startswith("tick ")]
    assert ticks and all("  p 0." in line for line in ticks)


@pytest.mark.parametrize(
    "override, key",
    [
        ("augment.ops=[rotate]", "augment.ops"),
        ("augment.target=1.5", "augment.target"),
        ("augment.speed_kimg=-1", "augment.speed_kimg"),
    ],
)
def test_bad_settings_are_refused_before_training(make_cfg, override, key):
    cfg = make_cfg("augment=ada", override)
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        train(cfg)
    assert not Path(cfg.paths.output_dir, "checkpoints").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_p(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    try:
        module = tiny_module(
            8, augment=Augment(ops=["flip"], p=0.0, adaptive=True, interval=2, seed=0)
        )
        module._trainer = stub_trainer(None, rank=rank, world_size=2)
        # Rank 0's D scores every real as real, rank 1's none: r_t = (8 - 8) / 16 on both
        # ranks (below 0.6: p stays 0); then 8 + 4 of 16: 0.75, p rises on both.
        signs = [(1.0, -1.0), (1.0, -1.0), (1.0, 0.5), (1.0, 0.5)]
        history = []
        for step in signs:
            module.adapt_augment(torch.tensor(step[rank]), 8)
            history.append(module.augment.p)
        torch.save(history, Path(out) / f"rank{rank}.pt")
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.slow  # two processes, each importing torch and Lightning
def test_ranks_agree_on_p(tmp_path: Path):
    mp.spawn(_rank_p, args=(_free_port(), str(tmp_path)), nprocs=2)
    rank0 = torch.load(tmp_path / "rank0.pt")
    rank1 = torch.load(tmp_path / "rank1.pt")
    assert rank0 == rank1
    # 16 images a step on 2 ranks, 2 steps per move, 500 kimg for 0 -> 1.
    assert rank0 == [0.0, 0.0, 0.0, pytest.approx(32 / 500e3)]


@pytest.mark.parametrize("data", ["tiny", "endless"])
def test_ada_p_rises_when_d_overfits_and_falls_when_it_cannot(data):
    """A short run with G frozen and a fast D (logistic loss). ``tiny``: 4 images D memorises
    (it scores them ever more surely as real): p rises from 0. ``endless``: fresh images from
    G itself, which D cannot tell from the fakes however long it trains (the limit of a large
    set): r_t stays near 0, and p, started at 0.5, falls."""
    module = at_8x8(
        tiny_module(
            8,
            augment=Augment(
                ops=["flip", "translation", "brightness", "saturation", "contrast"],
                p=0.0 if data == "tiny" else 0.5,
                adaptive=True,
                speed_kimg=0.5,
                interval=4,
                seed=0,
            ),
        )
    )
    module.loss = Logistic()
    opt_g, opt_d = module.build_optimizers()
    for opt, lr in ((opt_g, 0.0), (opt_d, 0.01)):
        for group in opt.param_groups:
            group["lr"] = lr
    start = module.augment.p
    tiny = reals_like(4).repeat(4, 1, 1, 1)  # [16, 3, 8, 8]
    for _ in range(40):
        if data == "tiny":
            reals = tiny
        else:
            with torch.no_grad():
                reals = module.G(module._latents(16), 1, 1.0)
        module.train_step(reals, opt_g, opt_d)
    if data == "tiny":
        assert module.augment.p > 0.3 and module.augment.controller.signal > 0.6
    else:
        assert module.augment.p < 0.1 < start
