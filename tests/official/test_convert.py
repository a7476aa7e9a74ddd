"""Official ProGAN pickles: read safely, converted exactly, used by every command.

The fixtures in ``tests/fixtures/official-progan`` (see its README) were written by the official
TensorFlow code on seeded random weights, with the official graph's outputs at six ``lod``
values: ``tiny32`` (RGB, the non-fused layer names of the released pickles, mbstd group 4)
and ``tiny16cond`` (grey, fused ``Conv0_up`` / ``Conv1_down``, 4 labels, group 2).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import sys
import types
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig
from PIL import Image

import progan_lightning
from helpers import FIXTURES, run_python
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.cli.generate import main as generate_main
from progan_lightning.cli.import_official import main as import_main
from progan_lightning.evaluate import evaluate
from progan_lightning.export import load_generator
from progan_lightning.generate import generate
from progan_lightning.networks import Discriminator, Generator
from progan_lightning.official import (
    OfficialPickleError,
    example_latents,
    load_official,
    load_official_generator,
    read_official,
)
from progan_lightning.official.convert import (
    LAYOUTS,
    convert_generator,
    generator_variables,
    stage_alpha,
)
from progan_lightning.official.finetune import init_from_official
from progan_lightning.train import train

DATA = FIXTURES / "official-progan"
NAMES = ["tiny32", "tiny16cond"]
TOLERANCE = 1e-4  # float32 summation order differs from TensorFlow's; not bit for bit


def official_outputs(name: str) -> tuple[Any, ...]:
    """The pickle's (G, D, G_ema) and its reference outputs."""
    return (*load_official(DATA / f"{name}.pkl"), np.load(DATA / f"{name}_reference.npz"))


def fake_module(monkeypatch: pytest.MonkeyPatch, qualified: str) -> type:
    """A class importable as ``qualified`` (``module.Class``) while the test runs, pickled
    with the state it is given (as ``tfutil.Network.__getstate__`` does)."""
    module_name, class_name = qualified.rsplit(".", 1)
    parts = module_name.split(".")
    for i in range(1, len(parts) + 1):
        monkeypatch.setitem(sys.modules, ".".join(parts[:i]), types.ModuleType(parts[i - 1]))

    class Network:
        def __init__(self, state: dict[str, Any]) -> None:
            self.state = state

        def __getstate__(self) -> dict[str, Any]:
            return self.state

    Network.__module__, Network.__qualname__ = module_name, class_name
    setattr(sys.modules[module_name], class_name, Network)
    return Network


def write_pickle(
    monkeypatch: pytest.MonkeyPatch, path: Path, states: list[dict[str, Any]], cls: str
) -> Path:
    """Pickle ``states`` as networks of class ``cls`` (protocol 4, as the official code)."""
    network = fake_module(monkeypatch, cls)
    path.write_bytes(pickle.dumps(tuple(network(s) for s in states), protocol=4))
    return path


def official_states(name: str) -> list[dict[str, Any]]:
    """The version-2 states of a fixture's (G, D, Gs), editable."""
    return [
        {
            "version": 2,
            "name": net.name,
            "static_kwargs": dict(net.static_kwargs),
            "build_module_src": net.build_module_src,
            "build_func_name": net.build_func_name,
            "variables": list(net.variables.items()),
        }
        for net in read_official(DATA / f"{name}.pkl")
    ]


@pytest.mark.parametrize("name", NAMES)
def test_g_ema_and_d_match_the_official_graph_at_every_lod(name: str):
    _, D, G_ema, ref = official_outputs(name)
    latents, images = torch.from_numpy(ref["latents"]), torch.from_numpy(ref["images_in"])
    labels = torch.from_numpy(ref["labels"]) if ref["labels"].shape[1] else None
    resolution = images.shape[-1]
    for i, lod in enumerate(ref["lods"]):
        stage, alpha = stage_alpha(float(lod), G_ema.num_stages)
        factor = resolution // (4 * 2**stage)
        assert factor == 2 ** math.floor(lod)
        with torch.no_grad():
            fakes = G_ema(latents, stage, alpha, labels=labels)  # [N, C, res, res]
            # Official: the output nearest-upscaled to R; D average-pools its input down.
            fakes = F.interpolate(fakes, scale_factor=factor, mode="nearest")
            out = D(F.avg_pool2d(images, factor), stage, alpha)  # [N, 1 + labels]
        np.testing.assert_allclose(fakes, ref[f"Gs_images_lod{i}"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(out[:, :1], ref[f"D_scores_lod{i}"], rtol=0, atol=TOLERANCE)
        np.testing.assert_allclose(out[:, 1:], ref[f"D_labels_lod{i}"], rtol=0, atol=TOLERANCE)


@pytest.mark.parametrize("name", NAMES)
def test_every_variable_is_copied_by_name_into_g_and_g_ema(name: str):
    official_G, _, official_Gs = read_official(DATA / f"{name}.pkl")
    G, _, G_ema = load_official(DATA / f"{name}.pkl")
    for net, module in ((official_G, G), (official_Gs, G_ema)):
        names = generator_variables(module)
        assert set(names) == set(net.variables) - {"lod"}  # every variable, nothing else
        assert {p for p, _ in names.values()} == set(dict(module.named_parameters()))
        params = dict(module.named_parameters())
        for official, (param, layout) in names.items():
            expected = LAYOUTS[layout][0](net.variables[official])
            np.testing.assert_array_equal(params[param].detach().numpy(), expected)
    # G and Gs hold different weights: G is not a copy of G_ema.
    assert not torch.equal(G.blocks.b4.dense.weight, G_ema.blocks.b4.dense.weight)


def test_networks_come_in_eval_mode_with_their_official_settings():
    G, D, G_ema = load_official(DATA / "tiny16cond.pkl")
    assert not (G.training or D.training or G_ema.training)
    assert not any(p.requires_grad for p in G_ema.parameters())
    assert G_ema.init_kwargs["fused_scale"] and D.init_kwargs["fused_scale"]
    assert (G_ema.num_classes, D.num_classes, G_ema.z_dim) == (4, 4, 32)
    assert D.init_kwargs["mbstd_group_size"] == 2
    assert (G_ema.trained_stage, G_ema.trained_alpha) == (2, 1.0)
    assert G_ema.class_names == ["0", "1", "2", "3"]
    G32, D32, _ = load_official(DATA / "tiny32.pkl")
    assert not G32.init_kwargs["fused_scale"] and not D32.init_kwargs["fused_scale"]
    assert progan_lightning.load_official is load_official


@pytest.mark.parametrize(
    ("lod", "stages", "expected"),
    [(0.0, 4, (3, 1.0)), (1.0, 4, (2, 1.0)), (3.0, 4, (0, 1.0)), (0.25, 4, (3, 0.75))],
)
def test_lod_maps_to_stage_and_fade(lod: float, stages: int, expected: tuple[int, float]):
    assert stage_alpha(lod, stages) == expected


def test_lod_1_6_at_32x32_is_the_16x16_stage_fading_in_at_0_4():
    stage, alpha = stage_alpha(1.6, 4)
    assert stage == 2 and alpha == pytest.approx(0.4)


def test_a_pickle_that_calls_os_system_is_refused_without_running(tmp_path: Path):
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return os.system, (f"touch {marker}",)

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps((Exploit(), 1, 2), protocol=4))
    with pytest.raises(OfficialPickleError, match=r"refers to (posix|nt|os)\.system") as err:
        read_official(path)
    assert "without running anything" in str(err.value)
    assert not marker.exists()


def test_a_stylegan_pickle_is_named_and_refused(monkeypatch, tmp_path: Path):
    states = official_states("tiny32")
    path = write_pickle(monkeypatch, tmp_path / "sg.pkl", states, "dnnlib.tflib.network.Network")
    monkeypatch.undo()  # dnnlib is not importable while reading
    with pytest.raises(OfficialPickleError, match=r"dnnlib\.tflib\.network\.Network.*StyleGAN"):
        read_official(path)


def test_a_truncated_pickle_fails_with_one_message(tmp_path: Path):
    data = (DATA / "tiny32.pkl").read_bytes()
    path = tmp_path / "cut.pkl"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(OfficialPickleError, match=r"cut\.pkl .*truncated.*download it again"):
        load_official(path)


@pytest.mark.parametrize(
    ("obj", "found"),
    [({"G": 1}, "holds dict"), ((1, 2), "a tuple of 2"), ((1, 2, 3), "is a int")],
)
def test_other_pickles_are_named_and_refused(obj: Any, found: str, tmp_path: Path):
    path = tmp_path / "other.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(OfficialPickleError, match=found):
        read_official(path)


def test_a_torch_file_named_pkl_is_told_apart(tmp_path: Path):
    path = tmp_path / "weights.pkl"
    torch.save({"w": torch.zeros(2)}, path)
    with pytest.raises(OfficialPickleError, match=r"zip archive .*\.ckpt"):
        load_generator(path)


def test_a_missing_file_names_the_path(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="nope.pkl not found"):
        load_generator(tmp_path / "nope.pkl")


def edited_pickle(monkeypatch, tmp_path: Path, edit) -> Path:
    """tiny32.pkl with ``edit(states)`` applied, rewritten in the official format."""
    states = official_states("tiny32")
    edit(states)
    return write_pickle(monkeypatch, tmp_path / "edited.pkl", states, "tfutil.Network")


def test_the_format_writer_of_these_tests_round_trips(monkeypatch, tmp_path: Path):
    path = edited_pickle(monkeypatch, tmp_path, lambda states: None)
    monkeypatch.undo()
    for a, b in zip(load_official(path), load_official(DATA / "tiny32.pkl"), strict=True):
        assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters(), strict=True))


def test_variables_that_do_not_fit_are_listed(monkeypatch, tmp_path: Path):
    def drop(states: list[dict[str, Any]]) -> None:
        states[2]["variables"] = [v for v in states[2]["variables"] if v[0] != "8x8/Conv1/bias"]

    path = edited_pickle(monkeypatch, tmp_path, drop)
    with pytest.raises(OfficialPickleError, match=r"network Gs .*missing 8x8/Conv1/bias \[32\]"):
        load_official(path)


def test_an_option_the_project_cannot_compute_is_refused_by_name(monkeypatch, tmp_path: Path):
    def relu(states: list[dict[str, Any]]) -> None:
        states[0]["static_kwargs"]["use_leakyrelu"] = False

    path = edited_pickle(monkeypatch, tmp_path, relu)
    with pytest.raises(OfficialPickleError, match="use_leakyrelu=False"):
        load_official(path)


def test_another_build_function_is_refused(monkeypatch, tmp_path: Path):
    def other(states: list[dict[str, Any]]) -> None:
        states[1]["build_func_name"] = "D_patch"

    path = edited_pickle(monkeypatch, tmp_path, other)
    with pytest.raises(OfficialPickleError, match="built by D_patch, expected D_paper"):
        read_official(path)


def test_the_lod_variable_sets_the_trained_stage(monkeypatch, tmp_path: Path):
    def mid_fade(states: list[dict[str, Any]]) -> None:
        states[2]["variables"] = [
            (k, np.float32(1.6) if k == "lod" else v) for k, v in states[2]["variables"]
        ]

    G = convert_generator(read_official(edited_pickle(monkeypatch, tmp_path, mid_fade))[2])
    assert G.trained_stage == 2 and G.trained_alpha == pytest.approx(0.4)


def test_example_latents_are_those_of_the_official_example():
    latents = np.random.RandomState(1000).randn(1000, 32)
    expected = latents[[477, 56, 83, 887, 583, 391, 86, 340, 341, 415]]
    np.testing.assert_array_equal(example_latents(32), expected.astype(np.float32))


def test_import_writes_an_export_that_loads_as_the_pickle(tmp_path: Path, capsys):
    import_main([str(DATA / "tiny16cond.pkl"), str(tmp_path / "g.safetensors")])
    assert "wrote" in capsys.readouterr().out
    exported, direct = load_generator(tmp_path / "g.json"), load_generator(DATA / "tiny16cond.pkl")
    assert exported.init_kwargs == direct.init_kwargs
    assert exported.class_names == direct.class_names == ["0", "1", "2", "3"]
    for a, b in zip(exported.parameters(), direct.parameters(), strict=True):
        assert torch.equal(a, b)


def test_generate_with_official_seeds_renders_the_example_latents(tmp_path: Path):
    G = load_generator(DATA / "tiny32.pkl")
    result = generate(G, tmp_path, seeds="official", interp_keyframes=0)
    assert [p.name for p in result["images"]] == [f"official_{i:04d}.png" for i in range(10)]
    first = np.asarray(Image.open(result["images"][0]))
    with torch.no_grad():
        image = G(example_latents(G.z_dim)[:1], G.trained_stage)[0]  # [C, R, R]
    expected = (image.permute(1, 2, 0) * 127.5 + 128).clamp(0, 255).to(torch.uint8).numpy()
    np.testing.assert_array_equal(first, expected)
    with pytest.raises(ValueError, match="seeds='mine'"):
        generate(G, tmp_path, seeds="mine")


def compose_command(name: str, overrides: list[str]) -> DictConfig:
    """The config of command ``name`` (``conf/<name>.yaml``) with ``overrides``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(name, overrides)
    GlobalHydra.instance().clear()
    return cfg


def test_generate_command_reads_an_official_pickle(tmp_path: Path):
    source = DATA / "tiny32.pkl"
    overrides = ["seeds=official", "interp.keyframes=0", "device=cpu", f"out_dir={tmp_path}"]
    generate_main(compose_command("generate", [f"source={source}", *overrides]))
    names = {p.name for p in tmp_path.iterdir()}
    assert names == {f"official_{i:04d}.png" for i in range(10)} | {"grid.png"}
    assert Image.open(tmp_path / "official_0000.png").size == (32, 32)


TINY32 = [
    "data.resolution=32",
    "data.channels=3",
    "model.G.z_dim=32",
    "model.G.fmap_base=128",
    "model.G.fmap_max=32",
    "model.G.fused_scale=false",
    "model.D.mbstd_group_size=4",
    f"init_from={DATA / 'tiny32.pkl'}",
]
"""The settings of tiny32.pkl's networks."""


def test_fine_tuning_starts_from_the_pickle_at_its_resolution(make_cfg):
    G, D, G_ema = load_official(DATA / "tiny32.pkl")
    cfg = make_cfg(
        *TINY32,
        "logger=none",
        "metrics=none",
        "~callbacks.samples",
        "growth.batch_size=4",
        "growth.total_kimg=0.008",
    )
    _, objects = train(cfg)
    model = objects["model"]
    assert (model.cur_nimg, model.resolution, model.alpha) == (8, 32, 1.0)
    # Two steps moved the weights a little from the pickle's (G_ema from Gs, not from G).
    for net, start in ((model.G, G), (model.D, D), (model.G_ema, G_ema)):
        a, b = net.blocks.b4.conv.weight.detach(), start.blocks.b4.conv.weight
        assert 0 < (a - b).abs().max() < 0.1
    drift = (model.G_ema.blocks.b4.conv.weight - G_ema.blocks.b4.conv.weight).abs().max()
    assert drift < (model.G_ema.blocks.b4.conv.weight - G.blocks.b4.conv.weight).abs().max()


def test_fine_tuning_a_config_that_does_not_fit_names_each_setting(make_cfg):
    fits = [o for o in TINY32 if "fmap_max" not in o and "fused_scale" not in o]
    cfg = make_cfg(*fits, "logger=none", "metrics=none")
    with pytest.raises(ValueError, match=r"init_from=.*tiny32\.pkl") as err:
        train(cfg)
    message = str(err.value)
    assert "model.G.fmap_max: config 16, pickle 32" in message
    assert "model.G.fused_scale=false" in message and "model.D.mbstd_group_size" not in message


def test_evaluate_scores_an_official_pickle(tmp_path: Path, cache_dir: Path):
    overrides = [
        f"source={DATA / 'tiny32.pkl'}",
        "data.resolution=32",
        "data.channels=3",  # the pickle draws RGB
        "data.source.num_images=64",
        "num_images=32",
        "metrics=swd",
        "device=cpu",
        f"paths.output_dir={tmp_path}",
        f"paths.cache_dir={cache_dir}",
    ]
    values = evaluate(compose_command("evaluate", overrides))
    result = json.loads((tmp_path / "evaluate.json").read_text())
    assert result["resolution"] == 32 and result["source"].endswith("tiny32.pkl")
    assert math.isfinite(values["metrics/swd_avg"]) and values["metrics/swd_avg"] > 0


def test_a_conditional_pickle_needs_networks_with_its_classes():
    G, D, G_ema = load_official(DATA / "tiny16cond.pkl")

    def model(num_classes: int) -> SimpleNamespace:
        g = {**G.init_kwargs, "num_classes": num_classes}
        d = {**D.init_kwargs, "num_classes": num_classes}
        return SimpleNamespace(G=Generator(**g), D=Discriminator(**d), G_ema=Generator(**g))

    with pytest.raises(
        ValueError, match=r"the data's classes \(data.labels\): config 0, pickle 4"
    ):
        init_from_official(model(0), DATA / "tiny16cond.pkl")
    fits = model(4)
    assert init_from_official(fits, DATA / "tiny16cond.pkl") == {"start_resolution": 16}
    for mine, official in ((fits.G, G), (fits.D, D), (fits.G_ema, G_ema)):
        assert all(
            torch.equal(a, b)
            for a, b in zip(mine.parameters(), official.parameters(), strict=True)
        )


def test_an_official_pickle_needs_the_official_conditioning():
    G, D, G_ema = load_official(DATA / "tiny16cond.pkl")
    d = {**D.init_kwargs, "conditioning": "projection"}
    model = SimpleNamespace(G=Generator(**G.init_kwargs), D=Discriminator(**d), G_ema=G_ema)
    with pytest.raises(ValueError) as err:
        init_from_official(model, DATA / "tiny16cond.pkl")
    message = str(err.value)
    assert "model.D.conditioning: config 'projection', pickle 'acgan'" in message
    assert "Train with the pickle's settings: model.D.conditioning=acgan" in message


def with_variable(name: str, value: Any, net: int = 2):
    """An edit that sets variable ``name`` of network ``net`` (0: G, 1: D, 2: Gs)."""

    def edit(states: list[dict[str, Any]]) -> None:
        states[net]["variables"] = [
            (k, value if k == name else v) for k, v in states[net]["variables"]
        ]

    return edit


def test_non_finite_weights_are_refused_naming_the_file(monkeypatch, tmp_path: Path, capsys):
    weight = official_states("tiny32")[2]["variables"]
    bad = dict(weight)["8x8/Conv1/weight"].copy()
    bad[0, 0, 0, 0] = np.nan
    path = edited_pickle(monkeypatch, tmp_path, with_variable("8x8/Conv1/weight", bad))
    monkeypatch.undo()
    match = r"edited\.pkl: .*Gs.* 8x8/Conv1/weight .*NaN or inf"
    with pytest.raises(OfficialPickleError, match=match):
        load_generator(path)  # progan-generate
    with pytest.raises(SystemExit) as exit_:
        import_main([str(path), str(tmp_path / "g.safetensors")])  # progan-import
    assert exit_.value.code == 2
    assert re.search(match, capsys.readouterr().err)
    assert not list(tmp_path.glob("g.*"))
    with pytest.raises(OfficialPickleError, match=match):
        init_from_official(None, path)  # init_from, before the config is compared


@pytest.mark.parametrize("lod", [np.nan, np.inf, -1.0, 3.5])
def test_a_lod_that_is_not_finite_or_out_of_range_names_the_file(
    monkeypatch, tmp_path: Path, lod: float
):
    path = edited_pickle(monkeypatch, tmp_path, with_variable("lod", np.float32(lod)))
    monkeypatch.undo()
    with pytest.raises(OfficialPickleError, match=r"edited\.pkl: .*lod"):
        load_official_generator(path)


def test_crafted_sizes_are_refused_before_any_memory_is_allocated(monkeypatch, tmp_path: Path):
    # static_kwargs describing ~10 TB of weights, with the tiny tensors of tiny32.
    def huge(states: list[dict[str, Any]]) -> None:
        for state in states:
            state["static_kwargs"].update(fmap_base=2**19, fmap_max=2**19)

    path = edited_pickle(monkeypatch, tmp_path, huge)
    monkeypatch.undo()
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (12 << 30, 12 << 30))"
    code = f"{limit}; from progan_lightning.cli.import_official import main; main()"
    result = run_python(["-c", code, str(path)], cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "edited.pkl" in result.stderr and "does not match" in result.stderr
    assert "Traceback" not in result.stderr
