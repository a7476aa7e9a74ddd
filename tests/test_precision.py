"""Mixed precision: bf16 autocast, fp16 autocast with dynamic loss scaling (CPU autocast)."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from helpers import tiny_module
from progan_lightning.losses import WGANGP, input_gradient
from progan_lightning.module import ProGAN
from progan_lightning.networks import Discriminator, Generator
from progan_lightning.precision import (
    FP16_PIXEL_NORM_EPS,
    cpu_capabilities,
    cpu_has_native_bf16,
    resolve_precision,
)
from progan_lightning.train import train


def make_module(precision: str, **kwargs) -> ProGAN:
    eps = FP16_PIXEL_NORM_EPS if precision == "fp16" else 1e-8
    return tiny_module(pixel_norm_eps=eps, precision=precision, **kwargs)


def steps(module: ProGAN, n: int, stage: int = 1, alpha: float = 0.5) -> list[tuple]:
    """``n`` training steps with persistent optimizers; (loss_d, loss_g) per step."""
    opt_g, opt_d = module.build_optimizers()
    module.progress.hold(stage, alpha)
    reals = torch.rand(8, 3, 8, 8) * 2 - 1
    return [tuple(module.train_step(reals, opt_g, opt_d)[:2]) for _ in range(n)]


def test_scaled_input_gradient_equals_unscaled_in_float32() -> None:
    w = torch.randn(4, 3, 3, 3, requires_grad=True)
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    scores = F.conv2d(x, w, padding=1).flatten(1).sum(1, keepdim=True)
    plain = input_gradient(scores, x)
    scaled = input_gradient(scores, x, torch.tensor(2.0**12))
    torch.testing.assert_close(scaled, plain)
    # The unscaled gradient keeps its graph: the penalty trains D through it.
    (dw,) = torch.autograd.grad(scaled.square().sum(), w)
    assert dw.abs().sum() > 0


def test_loss_scale_rescues_an_fp16_penalty_gradient_from_underflow() -> None:
    # A two-conv critic with small (fp16-representable) weights: its input gradient, a
    # product of both, is below fp16's smallest subnormal and flushes to 0 without scaling.
    torch.manual_seed(0)
    w1, w2 = torch.randn(8, 3, 3, 3) * 2e-5, torch.randn(8, 8, 3, 3) * 2e-5
    x = torch.randn(2, 3, 8, 8, requires_grad=True)

    def critic(x: torch.Tensor) -> torch.Tensor:
        y = F.conv2d(F.conv2d(x, w1, padding=1), w2, padding=1)
        return y.flatten(1).sum(1, keepdim=True)

    def fp16_grad(scale: torch.Tensor | None) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.float16):
            return input_gradient(critic(x), x, scale)

    reference = input_gradient(critic(x), x)
    # Unscaled, the gradient is lost (0, or a few fp16 subnormals on some CPU kernels).
    unscaled = fp16_grad(None).float()
    assert (unscaled - reference).abs().max() > 0.5 * reference.abs().max()
    torch.testing.assert_close(fp16_grad(torch.tensor(2.0**14)), reference, rtol=0, atol=1e-10)
    assert reference.abs().max() > 1e-8


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_steps_train_with_finite_losses(precision: str) -> None:
    module = make_module(precision)
    before = [p.detach().clone() for p in module.G.parameters()]
    losses = steps(module, 3)
    assert all(torch.isfinite(torch.stack(pair)).all() for pair in losses)
    assert any(not torch.equal(a, b) for a, b in zip(before, module.G.parameters(), strict=True))
    enabled = {name: s.is_enabled() for name, s in module.grad_scalers.items()}
    assert enabled == {"G": precision == "fp16", "D": precision == "fp16"}


def test_fp16_scaler_skips_an_overflowing_step_and_lowers_its_scale() -> None:
    module = make_module("fp16")
    module.grad_scalers["D"] = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    d_before = [p.detach().clone() for p in module.D.parameters()]
    g_before = [p.detach().clone() for p in module.G.parameters()]
    steps(module, 1)
    # D's scaled gradients overflowed fp16: its step was skipped and the scale halved.
    assert all(torch.equal(a, b) for a, b in zip(d_before, module.D.parameters(), strict=True))
    assert module.grad_scalers["D"].get_scale() == 2.0**39
    # G's scaler was fine: G trained, its scale stayed.
    assert any(not torch.equal(a, b) for a, b in zip(g_before, module.G.parameters(), strict=True))
    assert module.grad_scalers["G"].get_scale() == 2.0**16
    # Lower scales after more overflows; then D trains.
    steps(module, 30)
    assert module.grad_scalers["D"].get_scale() < 2.0**39
    assert any(not torch.equal(a, b) for a, b in zip(d_before, module.D.parameters(), strict=True))


def test_fp16_scaler_state_is_checkpointed() -> None:
    module = make_module("fp16")
    module.grad_scalers["D"] = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    steps(module, 1)
    checkpoint: dict = {}
    module.on_save_checkpoint(checkpoint)
    resumed = make_module("fp16")
    resumed.on_load_checkpoint(checkpoint)
    assert resumed.grad_scalers["D"].get_scale() == 2.0**39
    assert resumed.grad_scalers["G"].get_scale() == 2.0**16
    fp32: dict = {}
    make_module("fp32").on_save_checkpoint(fp32)
    assert "grad_scalers" not in fp32


def test_precision_is_checked() -> None:
    with pytest.raises(
        ValueError, match="model.precision='fp8'; use one of fp32, bf16, fp16, auto"
    ):
        make_module("fp8")
    G = Generator(8, z_dim=16, fmap_base=32, fmap_max=16)  # eps 1e-8
    with pytest.warns(UserWarning, match="pixel_norm_eps=1e-08"):
        ProGAN(G, Discriminator(8, fmap_base=32, fmap_max=16), WGANGP(), None, precision="fp16")


def test_precision_group_sets_the_fp16_preset(make_cfg) -> None:
    cfg = make_cfg()
    assert cfg.model.precision == "fp32" and cfg.model.G.pixel_norm_eps == 1e-8
    cfg = make_cfg("model/precision=fp16")
    assert cfg.model.precision == "fp16" and cfg.model.G.pixel_norm_eps == FP16_PIXEL_NORM_EPS
    with pytest.raises(ValueError, match="trainer.precision=16-mixed"):
        train(make_cfg("trainer.precision=16-mixed"))
    with pytest.raises(ValueError, match="pick one"):
        train(make_cfg("model/precision=bf16", "trainer.precision=bf16-mixed"))


def test_fp16_training_run(make_cfg) -> None:
    cfg = make_cfg(
        "model/precision=fp16",
        "data.resolution=8",
        "growth.stable_kimg=0.032",
        "growth.fade_kimg=0.032",
    )
    metrics, objects = train(cfg)
    model = objects["model"]
    assert model.cur_nimg == 96 and model.stage == 1
    assert torch.isfinite(torch.tensor([metrics["loss/D"], metrics["loss/G"]])).all()
    assert all(s.is_enabled() for s in model.grad_scalers.values())
    state = torch.load(cfg.paths.output_dir + "/checkpoints/last.ckpt", weights_only=True)
    assert set(state["grad_scalers"]) == {"G", "D"}


BF16_CPU = {"avx2": True, "avx512_f": True, "avx512_bf16": True}
AMX_CPU = {"avx2": True, "amx_tile": True, "amx_bf16": True}
AVX2_CPU = {"avx2": True, "avx512_bf16": False, "amx_bf16": False}
AVX512_ONLY_CPU = {"avx2": True, "avx512_f": True, "avx512_bw": True}  # bf16 emulated


def test_auto_precision_takes_bf16_only_on_cpus_with_bf16_units() -> None:
    assert resolve_precision("auto", "cpu", BF16_CPU) == "bf16"
    assert resolve_precision("auto", "cpu", AMX_CPU) == "bf16"
    assert resolve_precision("auto", "cpu", AVX2_CPU) == "fp32"
    assert resolve_precision("auto", "cpu", AVX512_ONLY_CPU) == "fp32"
    assert resolve_precision("auto", "cpu", {}) == "fp32"
    assert resolve_precision("auto", "cuda", BF16_CPU) == "fp32"
    for setting in ("fp32", "bf16", "fp16"):
        assert resolve_precision(setting, "cpu", AVX2_CPU) == setting
        assert resolve_precision(setting, "cuda", BF16_CPU) == setting
    # Without flags given it reads this machine's.
    expected = "bf16" if cpu_has_native_bf16(cpu_capabilities()) else "fp32"
    assert resolve_precision("auto", "cpu") == expected


@pytest.mark.parametrize(("caps", "took"), [(BF16_CPU, "bf16"), (AVX2_CPU, "fp32")])
def test_an_auto_module_steps_as_the_precision_its_cpu_gets(monkeypatch, caps, took) -> None:
    monkeypatch.setattr("progan_lightning.precision.cpu_capabilities", lambda: caps)
    module = make_module("auto")
    assert module.active_precision == took
    with module.autocast():
        assert torch.is_autocast_enabled("cpu") == (took == "bf16")
        if took == "bf16":
            assert torch.get_autocast_dtype("cpu") == torch.bfloat16
    # The same steps, to the last bit, as a module set to that precision.
    assert steps(module, 2) == steps(make_module(took), 2)
    assert not any(s.is_enabled() for s in module.grad_scalers.values())
    assert module.hparams.precision == "auto"  # what the user asked; resolved per machine


@pytest.mark.parametrize(("caps", "took"), [(BF16_CPU, "bf16"), (AVX2_CPU, "fp32")])
def test_an_auto_training_run_logs_what_it_took(make_cfg, monkeypatch, caplog, caps, took):
    monkeypatch.setattr("progan_lightning.precision.cpu_capabilities", lambda: caps)
    cfg = make_cfg("model/precision=auto", "data.resolution=4", "growth.stable_kimg=0.032")
    assert cfg.model.precision == "auto" and cfg.model.G.pixel_norm_eps == 1e-8
    with caplog.at_level(logging.INFO, logger="progan_lightning.train"):
        metrics, objects = train(cfg)
    assert f"model.precision=auto: {took} on cpu" in caplog.text
    assert objects["model"].active_precision == took
    assert torch.isfinite(torch.tensor([metrics["loss/D"], metrics["loss/G"]])).all()
