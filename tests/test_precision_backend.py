"""Speed switches: float32 matmul precision (TF32), cuDNN autotuning, channels-last."""

from __future__ import annotations

import pytest
import torch

from helpers import tiny_module
from progan_lightning.module import ProGAN
from progan_lightning.precision import float32_matmul_precision
from progan_lightning.train import train


@pytest.fixture(autouse=True)
def _restore_matmul_precision():
    previous = torch.get_float32_matmul_precision()
    yield
    torch.set_float32_matmul_precision(previous)


def test_matmul_precision_defaults_and_checks() -> None:
    assert float32_matmul_precision(None, "cuda") == "high"
    assert float32_matmul_precision(None, "cpu") == "highest"
    assert float32_matmul_precision("medium", "cuda") == "medium"
    with pytest.raises(ValueError, match="float32_matmul_precision='tf32'"):
        float32_matmul_precision("tf32", "cuda")


def test_gpu_trainers_switch_on_autotuning(make_cfg) -> None:
    assert make_cfg().trainer.benchmark is False
    for trainer in ("gpu", "ddp"):
        assert make_cfg(f"trainer={trainer}").trainer.benchmark is True
    assert make_cfg().backend.float32_matmul_precision is None


@pytest.mark.parametrize(("setting", "applied"), [("null", "highest"), ("medium", "medium")])
def test_train_applies_the_switches(make_cfg, setting: str, applied: str) -> None:
    torch.set_float32_matmul_precision("high")
    cfg = make_cfg(
        "debug=fdr",
        "data.resolution=8",
        "model.G.fmap_base=32",
        "model.G.fmap_max=16",
        f"backend.float32_matmul_precision={setting}",
        "model.channels_last=true",
        tiny=False,
    )
    _, objects = train(cfg)
    assert torch.get_float32_matmul_precision() == applied
    assert not torch.backends.cudnn.benchmark  # trainer.benchmark=false on the CPU trainer
    weight = objects["model"].G.blocks["b8"].conv0.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)


def make_module(channels_last: bool) -> ProGAN:
    return tiny_module(16, fmap_base=64, channels_last=channels_last)


def test_channels_last_computes_the_same_images_and_training() -> None:
    nchw, nhwc = make_module(False), make_module(True)
    convs = [m.weight for m in nhwc.modules() if getattr(m, "weight", None) is not None]
    assert all(w.is_contiguous(memory_format=torch.channels_last) for w in convs if w.ndim == 4)
    z = torch.randn(8, 16)
    for stage, alpha in [(1, 0.3), (2, 0.7), (2, 1.0)]:
        torch.testing.assert_close(nhwc(z, stage, alpha), nchw(z, stage, alpha))
    reals = torch.rand(8, 3, 16, 16) * 2 - 1
    for module in (nchw, nhwc):
        torch.manual_seed(1)
        opt_g, opt_d = module.build_optimizers()
        module.progress.hold(2, 0.5)
        for _ in range(2):
            module.train_step(reals, opt_g, opt_d)
    for (key, a), b in zip(nchw.state_dict().items(), nhwc.state_dict().values(), strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5, msg=key)
