"""Resume: a run killed mid-fade continues exactly; checkpoints are atomic and checked."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import lightning as L
import pytest
import torch

from progan_lightning.checkpoint import load_checkpoint
from progan_lightning.faults import Preempted
from progan_lightning.train import train


class SignalAt(L.Callback):
    """Sends ``signum`` to this process after the batch that reaches ``nimg`` images."""

    def __init__(self, nimg: int, signum: int = signal.SIGTERM) -> None:
        self.nimg = nimg
        self.signum = signum

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module.cur_nimg == self.nimg:
            os.kill(os.getpid(), self.signum)


def fit(cfg, extra: list[L.Callback] | None = None):
    """``train(cfg)`` with extra callbacks placed before the configured ones."""
    if not extra:
        return train(cfg)[1]
    from progan_lightning import train as train_mod

    original = train_mod.instantiate_dict
    train_mod.instantiate_dict = lambda c: [*extra, *original(c)]
    try:
        return train(cfg)[1]
    finally:
        train_mod.instantiate_dict = original


# ADA moves p every 3 steps (the kill at step 5 falls between two moves), from 0.5, slowly
# enough to stay above 0: each move is drawn on.
ADA = ("augment=ada", "augment.interval=3", "augment.speed_kimg=2", "augment.p=0.5")


@pytest.mark.parametrize(
    "rampdown, augment",
    [(0, ()), (0.3, ()), (0, ADA), (0, ("augment=diffaugment",))],
    ids=["constant-lr", "lr-rampdown", "ada", "diffaugment"],
)
def test_kill_mid_fade_and_resume_matches_uninterrupted(
    make_cfg, tmp_path: Path, rampdown, augment
):
    # With a ramp-down over the last 300 of 320 images the kill falls inside it: the resumed
    # run must set the same falling learning rate as the uninterrupted one. With augmentation
    # the resumed run draws the same random parameters and holds ADA's p and its heuristic.
    overrides = (
        "logger=none",
        "metrics=none",
        "data.mirror=true",
        f"growth.lr_rampdown_kimg={rampdown}",
        *augment,
    )
    reference = fit(make_cfg(*overrides))["model"]

    # SIGTERM at 80 images: inside the 8x8 fade (64..128) and inside a tick (64..96).
    run = tmp_path / "run"
    cfg = make_cfg(*overrides)
    cfg.paths.output_dir = str(run)
    with pytest.raises(Preempted) as stopped:
        fit(cfg, [SignalAt(80)])
    assert stopped.value.exit_code == 128 + signal.SIGTERM
    state = load_checkpoint(run / "checkpoints" / "last.ckpt")  # weights-only
    assert state["progress"]["cur_nimg"] == 80
    if augment == ADA:
        assert state["augment"]["adaptive"]["p"] > 0 and state["augment"]["adaptive"]["steps"]
    assert not (run / "generator.safetensors").exists()  # a stopped run exports nothing
    assert state["progress"]["phase_index"] == 1  # fade8

    with_resume = cfg.copy()
    with_resume.ckpt_path = "last"
    resumed = fit(with_resume)["model"]

    assert resumed.cur_nimg == reference.cur_nimg == 320
    assert (resumed.stage, resumed.alpha, resumed.phase_index) == (
        reference.stage,
        reference.alpha,
        reference.phase_index,
    )
    torch.testing.assert_close(
        resumed.augment.state_dict(), reference.augment.state_dict(), rtol=0, atol=0
    )
    for name in ("G_ema", "G", "D"):
        ref, res = getattr(reference, name).state_dict(), getattr(resumed, name).state_dict()
        for key in ref:
            torch.testing.assert_close(res[key], ref[key], rtol=1e-5, atol=1e-6, msg=key)


def test_interrupted_checkpoint_write_keeps_previous(make_cfg, tmp_path: Path, monkeypatch):
    _, objects = train(make_cfg("logger=none", "metrics=none"))
    trainer, model = objects["trainer"], objects["model"]
    ckpt = next(c for c in trainer.callbacks if type(c).__name__ == "SafeCheckpoint")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    # Retention: the newest 3 periodic checkpoints, and one per phase end.
    assert len(list(last.parent.glob("kimg*.ckpt"))) == 3
    assert len(list(last.parent.glob("phase*.ckpt"))) >= 4

    def killed_mid_write(checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer.strategy.checkpoint_io, "save_checkpoint", killed_mid_write)
    model.progress.cur_nimg += 1000
    with pytest.raises(KeyboardInterrupt):
        ckpt.save(trainer, "last.ckpt")
    assert last.read_bytes() == before
    assert load_checkpoint(last)["progress"]["cur_nimg"] == 320


def test_resume_with_other_widths_names_the_mismatch(make_cfg, tmp_path: Path):
    train(make_cfg("logger=none", "metrics=none", "growth.total_kimg=0.032"))
    cfg = make_cfg("logger=none", "metrics=none", "model.G.fmap_max=8")
    cfg.ckpt_path = str(tmp_path / "checkpoints" / "last.ckpt")
    with pytest.raises(ValueError, match=r"model\.G\.fmap_max: checkpoint 16, config 8"):
        train(cfg)


def test_resume_last_without_checkpoints_says_so(make_cfg, tmp_path: Path):
    cfg = make_cfg("logger=none", "ckpt_path=last")
    with pytest.raises(FileNotFoundError, match="ckpt_path=last: no readable checkpoint"):
        train(cfg)


def test_a_checkpoint_carries_its_format_version_and_a_newer_one_is_refused(tmp_path):
    """The ``format_version`` entry: written with every checkpoint; a newer version is refused
    in one line naming both formats; a file without it reads as the current format."""
    from helpers import tiny_module
    from progan_lightning.checkpoint import FORMAT_VERSION, module_entries
    from progan_lightning.faults import DamagedFile

    assert module_entries(tiny_module(8))["format_version"] == FORMAT_VERSION == 1
    state = {"state_dict": {"G_ema.w": torch.zeros(1)}, "pytorch-lightning_version": "2.5"}
    older = tmp_path / "without.ckpt"
    torch.save(state, older)
    assert "format_version" not in load_checkpoint(older)
    newer = tmp_path / "newer.ckpt"
    torch.save({**state, "format_version": FORMAT_VERSION + 1}, newer)
    with pytest.raises(DamagedFile) as error:
        load_checkpoint(newer)
    message = str(error.value)
    assert f"checkpoint format {FORMAT_VERSION + 1}" in message and "\n" not in message
    assert f"reads format {FORMAT_VERSION}" in message and "upgrade" in message


def test_a_folder_given_as_a_checkpoint_names_the_file_to_give(tmp_path: Path):
    """``progan-export RUN`` (or ``ckpt_path=RUN``): the folder exists, it is not a file."""
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").touch()
    with pytest.raises(IsADirectoryError, match=rf"{tmp_path} is a folder, not a checkpoint; "):
        load_checkpoint(tmp_path)
    message = f"{tmp_path / 'checkpoints' / 'last.ckpt'} (the newest)"
    with pytest.raises(IsADirectoryError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_checkpoint(tmp_path)
    with pytest.raises(FileNotFoundError, match="not found; give an existing .ckpt file"):
        load_checkpoint(tmp_path / "missing.ckpt")
