"""torch.compile of G: the same images and gradients as eager, a bounded number of compiles.

Compiled with the ``aot_eager`` backend (Dynamo + AOTAutograd, no code generation): it checks
what compile changes for this model (graph capture, guards on stage, alpha and grad mode) in
seconds, where inductor would spend a C++ build per graph.
"""

from __future__ import annotations

import pytest
import torch
from torch._dynamo.utils import counters

from helpers import tiny_module
from progan_lightning.module import ProGAN


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch.compiler.reset()
    counters.clear()
    yield
    torch.compiler.reset()


def make_module(compile_G: bool, resolution: int = 8) -> ProGAN:
    return tiny_module(resolution, compile_G=compile_G, compile_backend="aot_eager")


def compiles() -> int:
    return counters["stats"]["unique_graphs"]


def test_compiled_G_matches_eager_across_a_stage_switch_and_alphas() -> None:
    eager, compiled = make_module(False), make_module(True)
    z = torch.randn(4, 16)
    alphas = [0.1, 0.35, 0.6, 0.85, 1.0]
    with torch.no_grad():
        for stage in (0, 1):
            for alpha in alphas:
                torch.testing.assert_close(compiled(z, stage, alpha), eager(z, stage, alpha))
    # One graph for stage 0; at stage 1 one for the fade (alpha a tensor), one for alpha 1.
    assert compiles() == 3
    with torch.no_grad():
        for alpha in (0.2, 0.7):
            compiled(z, 1, alpha)
    assert compiles() == 3  # a new alpha reuses the fade graph


@pytest.mark.slow
def test_training_with_compiled_G_matches_eager() -> None:
    # Three stages, each faded in: more graphs than Dynamo's default limit of 8 per function.
    modules = [make_module(False, 16), make_module(True, 16)]
    z = torch.randn(4, 16)
    for module in modules:
        torch.manual_seed(1)
        opt_g, opt_d = module.build_optimizers()
        for stage in range(3):
            reals = torch.rand(8, 3, 4 * 2**stage, 4 * 2**stage) * 2 - 1
            for alpha in (0.25, 0.5, 1.0) if stage else (1.0,):  # stage 0 is never faded in
                module.progress.hold(stage, alpha)
                module.train_step(reals, opt_g, opt_d)
                with torch.no_grad():
                    module(z)  # G_ema, as the sample callbacks call it
    eager, compiled = (dict(m.state_dict()) for m in modules)
    assert eager.keys() == compiled.keys()  # compile leaves the parameter names alone
    for key, value in eager.items():
        torch.testing.assert_close(compiled[key], value, rtol=1e-4, atol=1e-5, msg=key)
    # Per stage: G in the D step (no grad; G_ema shares it) and in the G step (grad), each
    # fading and stable, plus once for G_ema's other batch size (then dynamic). None fell
    # back to eager.
    assert compiles() <= 4 * 3
    assert counters["frames"]["total"] == counters["frames"]["ok"]
