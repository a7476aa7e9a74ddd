"""Refusals a user meets on the command line: one line naming the value and the fix, exit 2."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from helpers import FIXTURES, run_command
from progan_lightning.devices import resolve_device
from progan_lightning.generate import select_classes
from progan_lightning.official import load_official_generator

COND = FIXTURES / "official-progan" / "tiny16cond.pkl"


def refused(result, *parts: str) -> None:
    """One ``Error:`` line holding every part, exit status 2, no traceback."""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(errors) == 1 and all(p in errors[0] for p in parts), result.stderr[-2000:]
    assert "Traceback" not in result.stderr


def test_a_fractional_class_is_refused_naming_the_classes():
    G = load_official_generator(COND)
    with pytest.raises(ValueError, match=r"class=3\.5 is not a class .* 0\.\.3"):
        select_classes(G, 3.5)
    with pytest.raises(ValueError, match=r"class=1\.0 is not a class"):
        select_classes(G, [0, 1.0])


def test_generate_class_3_5_is_one_line(tmp_path: Path):
    result = run_command("generate", f"source={COND}", "class=3.5", f"hydra.run.dir={tmp_path}")
    refused(result, "class=3.5", "0..3")


@pytest.mark.parametrize(
    ("device", "message"),
    [
        ("bogus", "device=bogus is not a device; use auto, cpu, cuda or cuda:N"),
        ("cuda:x", "device=cuda:x is not a device"),
    ],
)
def test_a_device_that_does_not_exist_is_refused(device: str, message: str):
    with pytest.raises(ValueError, match=message):
        resolve_device(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"device=cuda.*no CUDA GPU.*device=cpu"):
        resolve_device("cuda")
    assert resolve_device("auto") == torch.device("cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("command", ["generate", "evaluate"])
def test_commands_refuse_cuda_without_a_gpu_in_one_line(tmp_path: Path, command: str):
    result = run_command(command, f"source={COND}", "device=cuda", f"hydra.run.dir={tmp_path}")
    refused(result, "device=cuda", "device=cpu")


def test_export_of_a_plain_pickle_says_what_it_is(tmp_path: Path):
    plain = tmp_path / "plain.pkl"
    plain.write_bytes(pickle.dumps({"a": 1}))
    for args in ([str(plain)], [str(plain), "--allow-pickle"]):
        refused(run_command("export", *args), "plain.pkl", "a pickle", "not a training checkpoint")


@pytest.mark.parametrize("kind", ["a PNG image", "a safetensors file"])
@pytest.mark.parametrize("command", ["generate", "export", "import_official"])
def test_a_file_renamed_pkl_is_named_for_what_it_is(tmp_path: Path, kind: str, command: str):
    path = tmp_path / "model.pkl"
    if kind == "a PNG image":
        Image.new("RGB", (4, 4)).save(path, "PNG")
    else:
        save_file({"w": torch.zeros(2)}, str(path))
    args = [f"source={path}", f"hydra.run.dir={tmp_path / 'out'}"]
    result = run_command(command, *(args if command == "generate" else [str(path)]))
    refused(result, "model.pkl", f"is {kind}")
