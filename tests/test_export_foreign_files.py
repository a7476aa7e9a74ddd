"""Foreign and damaged files given to resume, generate, evaluate and export: each refused with
one message that names the file and what is wrong with it, before anything is built."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from progan_lightning import export as export_module
from progan_lightning.checkpoint import check_weights, export_checkpoint, load_checkpoint
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.export import export_generator, load_generator
from progan_lightning.faults import DamagedFile
from progan_lightning.generate import load_any
from progan_lightning.networks import Generator

TINY_G = {"img_resolution": 8, "z_dim": 8, "fmap_base": 32, "fmap_max": 8}


@pytest.fixture
def exported(tmp_path: Path) -> tuple[Path, Path]:
    """A tiny generator's export: (weights, JSON)."""
    torch.manual_seed(0)
    return export_generator(Generator(**TINY_G), tmp_path / "generator.safetensors")


def edit_json(arch: Path, **changes) -> None:
    meta = json.loads(arch.read_text())
    for key, value in changes.items():
        if key == "init_kwargs":
            meta[key].update(value)
        else:
            meta[key] = value
    arch.write_text(json.dumps(meta))


def refused(path: Path, message: str) -> DamagedFile:
    """The one error of loading the export at ``path``: it names the file and the damage."""
    with pytest.raises(DamagedFile, match=message) as error:
        load_generator(path)
    assert str(error.value).startswith(f"{error.value.path}: ")
    return error.value


def test_flipped_tensor_bytes_are_refused(exported):
    weights, _ = exported
    data = bytearray(weights.read_bytes())
    data[-5] ^= 0xFF  # in the last tensor; the header and the JSON untouched
    weights.write_bytes(bytes(data))
    error = refused(weights, "damaged: its tensors differ from the SHA-256 recorded")
    assert error.path == weights and "progan-export CHECKPOINT.ckpt" in str(error)
    assert load_generator(weights, verify=False).trained_stage == 1  # the switch skips it


def test_non_finite_weights_are_refused(tmp_path: Path):
    G = Generator(**TINY_G)
    with torch.no_grad():
        for p in G.parameters():
            p.fill_(float("nan"))
    weights, _ = export_generator(G, tmp_path / "nan.safetensors")
    assert refused(weights, r"damaged: non-finite weights \(NaN or inf\)").path == weights


@pytest.mark.parametrize(
    ("damage", "culprit", "message"),
    [
        ("truncated weights", "weights", "damaged: not a readable safetensors file"),
        ("truncated JSON", "arch", "damaged: not valid JSON"),
        ("unknown argument", "arch", "damaged: its init_kwargs build no generator .*fmap_typo"),
        ("stage out of range", "arch", r"damaged: its trained stage 9 is not one of .* 0\.\.1"),
        ("other widths", "arch", "damaged: its architecture does not fit the tensors"),
        ("foreign JSON", "arch", "not a progan-lightning generator export"),
    ],
)
def test_damaged_exports_name_the_file(exported, damage, culprit, message):
    weights, arch = exported
    if damage == "truncated weights":
        weights.write_bytes(weights.read_bytes()[:100])
    elif damage == "truncated JSON":
        arch.write_text(arch.read_text()[:40])
    elif damage == "unknown argument":
        edit_json(arch, init_kwargs={"fmap_typo": 3})
    elif damage == "stage out of range":
        edit_json(arch, stage=9)
    elif damage == "other widths":
        edit_json(arch, init_kwargs={"fmap_max": 16})
    else:
        arch.write_text(json.dumps({"weights": [1, 2, 3]}))
    assert refused(weights, message).path == {"weights": weights, "arch": arch}[culprit]


def test_a_huge_network_in_the_json_is_refused_before_it_is_built(exported, monkeypatch):
    weights, arch = exported
    edit_json(arch, init_kwargs={"img_resolution": 65536, "fmap_base": 2**16, "fmap_max": 512})
    built_on = []

    class Spy(Generator):
        def __init__(self, **kwargs):
            built_on.append(torch.empty(0).device.type)
            super().__init__(**kwargs)

    monkeypatch.setattr(export_module, "Generator", Spy)
    refused(weights, "damaged: its architecture does not fit the tensors of generator")
    assert set(built_on) <= {"meta"}  # no memory was allocated for it


def test_a_foreign_torch_file_is_not_a_checkpoint_for_any_loader(tmp_path: Path):
    foreign = tmp_path / "resnet.ckpt"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, foreign)
    for load in (load_any, export_checkpoint, load_checkpoint):
        with pytest.raises(DamagedFile, match="not a progan-lightning checkpoint") as error:
            load(foreign)
        assert error.value.path == foreign
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(foreign.read_bytes()[:200])
    with pytest.raises(DamagedFile, match="damaged: not a readable checkpoint .*resnet.ckpt"):
        load_checkpoint(truncated)  # names the checkpoints beside it


def test_a_checkpoint_with_other_keys_names_them(tmp_path: Path):
    path = tmp_path / "other.ckpt"
    state = {"G_ema.blocks.b4.renamed": torch.zeros(3), "D.x": torch.zeros(1)}
    checkpoint = {"pytorch-lightning_version": "2.5", "state_dict": state}
    torch.save({**checkpoint, "architecture": {"G": TINY_G}}, path)
    with pytest.raises(DamagedFile, match="damaged: its G_ema weights do not fit its arch"):
        load_any(path)
    module = torch.nn.Module()
    module.G_ema = Generator(**TINY_G)
    with pytest.raises(DamagedFile, match=r"do not fit the networks \(14 tensors .* e.g. D.x"):
        check_weights(checkpoint, module, path)


def test_resume_from_a_foreign_file_is_one_message(make_cfg, tmp_path: Path):
    from progan_lightning.train import train

    foreign = tmp_path / "foreign.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(DamagedFile, match=f"{foreign}: not a progan-lightning checkpoint"):
        train(make_cfg("logger=none", "metrics=none", f"ckpt_path={foreign}"))


def test_the_pickle_hint_of_each_command_works(tmp_path: Path):
    import argparse

    path = tmp_path / "pickled.ckpt"
    torch.save({"state_dict": {}, "extra": argparse.Namespace(a=1)}, path)
    with pytest.raises(DamagedFile, match="refuses") as error:
        load_any(path)
    for hint in ("allow_pickle=true (progan-generate, progan-evaluate)", "--allow-pickle"):
        assert hint in str(error.value)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        for command in ("evaluate", "generate"):
            assert compose(command, [f"source={path}", "allow_pickle=true"]).allow_pickle
    GlobalHydra.instance().clear()


def test_progan_generate_on_a_foreign_file_prints_one_line(tmp_path: Path):
    foreign = tmp_path / "weights.ckpt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    command = "import sys; from progan_lightning.cli.generate import main; main()"
    run = subprocess.run(
        [sys.executable, "-c", command, f"source={foreign}", f"hydra.run.dir={tmp_path / 'o'}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2, run.stderr[-2000:]
    assert f"Error: {foreign}: not a progan-lightning checkpoint" in run.stderr
    assert "Traceback" not in run.stderr


def test_progan_export_on_a_damaged_file_prints_one_line(tmp_path: Path, capsys):
    from progan_lightning.cli.export import main

    damaged = tmp_path / "last.ckpt"
    damaged.write_bytes(b"PK\x03\x04 half a checkpoint")
    with pytest.raises(SystemExit) as exited:
        main([str(damaged)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"Error: {damaged}: damaged: not a readable checkpoint" in err
    assert "Traceback" not in err


def test_evaluate_refuses_a_generator_that_draws_non_finite_images(tmp_path: Path):
    """Finite weights whose images overflow: refused, not scored as if finite."""
    from progan_lightning.evaluate import evaluate

    G = Generator(**TINY_G)
    with torch.no_grad():
        for name, p in G.named_parameters():
            if name.startswith("to_rgb"):
                p.fill_(3e38)  # finite, but their sums overflow to inf
    weights, _ = export_generator(G, tmp_path / "overflow.safetensors")
    overrides = ["data=shapes", "data.resolution=8", "data.source.num_images=16", "num_images=4"]
    overrides += ["metrics=swd", "device=cpu", f"source={weights}"]
    overrides += [f"paths.cache_dir={tmp_path / 'cache'}", f"paths.output_dir={tmp_path}"]
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("evaluate", overrides)
    GlobalHydra.instance().clear()
    with pytest.raises(
        DamagedFile, match=r"overflow.safetensors: damaged: the generator draws non"
    ):
        evaluate(cfg)
    assert not (tmp_path / "evaluate.json").exists()
