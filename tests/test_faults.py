"""Faults: resume from every checkpoint, divergence, pre-emption, misuse (issue 14)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO, TINY, compose_config
from progan_lightning.checkpoint import load_checkpoint
from progan_lightning.data.datamodule import build_datamodule
from progan_lightning.faults import Diverged, Preempted, UserError, WriteFailed
from progan_lightning.train import train

QUIET = ("logger=none", "metrics=none")


RUN = Path("/data/runs/faces")
EARLIER = RUN / "checkpoints" / "kimg00000.096.ckpt"


def train_command(cache_dir: Path, *args: str, multirun: bool = False) -> list[str]:
    """``python train.py [-m]`` with the tiny quiet overrides, as a user runs it."""
    script = [sys.executable, str(REPO / "train.py")]
    flags = ["-m"] if multirun else []
    return [*script, *flags, *TINY, *QUIET, f"paths.cache_dir={cache_dir}", *args]


def weights_equal(a, b, exact: bool = True) -> None:
    for name in ("G_ema", "G", "D"):
        ref, res = getattr(a, name).state_dict(), getattr(b, name).state_dict()
        for key in ref:
            if exact:
                assert torch.equal(res[key], ref[key]), f"{name}.{key}"
            else:
                torch.testing.assert_close(res[key], ref[key], rtol=1e-5, atol=1e-6)


def test_phase_end_resume_equals_uninterrupted(make_cfg, tmp_path: Path):
    overrides = (*QUIET, "growth.lr={4: 0.001, 8: 0.003}")
    reference = train(make_cfg(*overrides))[1]["model"]
    # The phase-end checkpoint of stable4 (64 images): the next phase is fade8 at lr 0.003.
    phase_end = next((tmp_path / "checkpoints").glob("phase00_*.ckpt"))
    assert load_checkpoint(phase_end)["progress"]["cur_nimg"] == 64

    cfg = make_cfg(*overrides, f"ckpt_path={phase_end}")
    cfg.paths.output_dir = str(tmp_path / "resumed")
    _, objects = train(cfg)
    resumed = objects["model"]
    assert resumed.cur_nimg == reference.cur_nimg == 320
    for opt in objects["trainer"].optimizers:
        assert opt.param_groups[0]["lr"] == 0.003
    weights_equal(reference, resumed)


def finite_checkpoint(path: Path) -> bool:
    state = load_checkpoint(path)["state_dict"]
    return all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


def test_divergence_stops_with_finite_checkpoints(make_cfg, tmp_path: Path):
    cfg = make_cfg(
        *QUIET, "growth.lr={4: 0.001, 8: 1e6}", "callbacks.model_checkpoint.keep_last=1"
    )
    with pytest.raises(Diverged) as stopped:
        train(cfg)
    err = stopped.value
    assert err.exit_code == 3 and err.nimg >= 64  # stable4 trained; broke at 8x8
    assert "kimg" in str(err) and "8" in err.phase and err.checkpoint is not None
    ckpts = sorted((tmp_path / "checkpoints").glob("*.ckpt"))
    assert ckpts and all(finite_checkpoint(p) for p in ckpts)
    assert err.checkpoint in ckpts
    assert not (tmp_path / "generator.safetensors").exists()


def test_divergence_exit_status_from_the_command(tmp_path: Path, cache_dir: Path):
    """``python train.py`` as a user runs it: exit status 3, one message, finite files."""

    run = tmp_path / "run"
    cmd = train_command(cache_dir, "growth.lr={4: 0.001, 8: 1e6}", f"hydra.run.dir={run}")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr[-2000:]
    assert "training diverged at kimg" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr
    assert all(finite_checkpoint(p) for p in (run / "checkpoints").glob("*.ckpt"))


def test_resuming_a_finished_run_does_nothing(make_cfg, tmp_path: Path, caplog):
    train(make_cfg(*QUIET))
    written = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    metrics, objects = train(make_cfg(*QUIET, "ckpt_path=last"))
    assert metrics == {} and objects["model"].cur_nimg == 0  # nothing was loaded or run
    assert "the run is finished, nothing to train" in caplog.text
    after = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*") if p.is_file()}
    assert after == written  # no export, sample or checkpoint rewritten


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("growth.fade_kimg=0.128", r"phase 1 \(fade8\) ran 0.064 -> 0.128 kimg.*ends it at 0.192"),
        ("growth.stable_kimg=0.032", r"phase 1 \(fade8\) ran 0.064 -> 0.128 kimg.*has fade8 from"),
        ("growth.start_resolution=8", r"phase 0 \(stable4\).*has stable8"),
    ],
)
def test_resume_with_a_changed_schedule_fails_naming_it(make_cfg, tmp_path, change, message):
    # A checkpoint inside the 16x16 fade (192..256): every earlier phase has run.
    train(make_cfg(*QUIET, "growth.total_kimg=0.224"))
    cfg = make_cfg(*QUIET, change, "ckpt_path=last")
    with pytest.raises(ValueError, match=message):
        train(cfg)


def test_resume_with_a_longer_run_continues(make_cfg, tmp_path: Path):
    train(make_cfg(*QUIET))
    _, objects = train(make_cfg(*QUIET, "ckpt_path=last", "growth.total_kimg=0.352"))
    assert objects["model"].cur_nimg == 352 and objects["model"].stage == 2


def hold_run_dir_lock(run: Path) -> subprocess.Popen:
    """Another process that holds ``run``'s lock (for two minutes, or until killed), started
    once it has it."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from progan_lightning.run_lock import run_dir_lock\n"
            f"with run_dir_lock({str(run)!r}):\n"
            "    print('locked', flush=True); time.sleep(120)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_second_process_on_the_run_dir_fails_naming_the_first(make_cfg, tmp_path: Path):
    holder = hold_run_dir_lock(tmp_path)
    try:
        with pytest.raises(UserError, match=rf"in use by pid {holder.pid} on .*hydra.run.dir"):
            train(make_cfg(*QUIET))
        assert not (tmp_path / "checkpoints").exists()
    finally:
        holder.kill()
        holder.wait()
    train(make_cfg(*QUIET, "growth.total_kimg=0.032"))  # the lock died with its holder


def test_a_finished_run_extends_when_its_last_batch_went_past_the_end(make_cfg, caplog):
    """Batches of 20 end the 192-image schedule at 200 images: "raise growth.total_kimg to
    train longer" must then work (the last stable phase is where the run stopped)."""
    small = (*QUIET, "data.resolution=8", "growth.batch_size=20", "growth.tick_kimg=0.04")
    _, objects = train(make_cfg(*small))
    assert objects["model"].cur_nimg == 200  # past the schedule's end, 192
    metrics, _ = train(make_cfg(*small, "ckpt_path=last"))
    assert metrics == {} and "raise growth.total_kimg to train longer" in caplog.text
    _, objects = train(make_cfg(*small, "ckpt_path=last", "growth.total_kimg=0.24"))
    assert objects["model"].cur_nimg == 240


def file_hashes(folder: Path) -> dict[Path, str]:
    """SHA-256 of every file under ``folder`` (the lock file is empty and always there)."""
    import hashlib

    return {
        p: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.slow
def test_a_fresh_run_in_a_folder_holding_a_run_changes_nothing(tmp_path: Path, cache_dir: Path):
    """``python train.py hydra.run.dir=R`` twice: the second refuses before Hydra writes its
    config, naming both ways on; so does a resume while another process holds the run. The
    run dir is written like the default one, through ``paths.log_dir`` (which reads
    ``hydra:runtime.cwd``): the check resolves it before Hydra's job does."""

    run = tmp_path / "run"
    env = {**os.environ, "PROGAN_LOG_DIR": str(tmp_path)}
    first = train_command(
        cache_dir, "growth.total_kimg=0.032", "hydra.run.dir=${paths.log_dir}/run"
    )
    proc = subprocess.run(first, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "RunDirCheck" not in proc.stderr  # Hydra's warning when the check itself failed
    before = file_hashes(run)
    assert run / "checkpoints" / "last.ckpt" in before and run / ".hydra" / "config.yaml" in before

    second = subprocess.run(
        [*first, "seed=1"], capture_output=True, text=True, timeout=300, env=env
    )
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"hydra.run.dir={run} holds a run" in second.stderr
    assert "ckpt_path=last" in second.stderr and "hydra.run.dir=OTHER_DIR" in second.stderr
    assert "Traceback" not in second.stderr
    assert file_hashes(run) == before

    holder = hold_run_dir_lock(run)
    try:
        before = file_hashes(run)
        resume = [*first, "ckpt_path=last", "growth.total_kimg=0.064"]
        third = subprocess.run(resume, capture_output=True, text=True, timeout=300, env=env)
    finally:
        holder.kill()
        holder.wait()
    assert third.returncode == 2, third.stderr[-2000:]
    assert f"in use by pid {holder.pid}" in third.stderr and "Traceback" not in third.stderr
    assert file_hashes(run) == before


def test_a_fresh_multirun_in_a_sweep_dir_holding_runs_changes_nothing(
    tmp_path: Path, cache_dir: Path
):
    """``python train.py -m hydra.sweep.dir=S`` twice: Hydra writes each job's ``.hydra/``
    before the job starts, so the second sweep is refused before any job, naming the run it
    would overwrite and both ways on."""
    sweep = tmp_path / "sweep"
    first = train_command(
        cache_dir, "growth.total_kimg=0.032", f"hydra.sweep.dir={sweep}", multirun=True
    )
    proc = subprocess.run(first, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    before = file_hashes(sweep)
    assert sweep / "0" / "checkpoints" / "last.ckpt" in before
    assert sweep / "0" / ".hydra" / "config.yaml" in before

    second = subprocess.run([*first, "seed=1"], capture_output=True, text=True, timeout=300)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"hydra.sweep.dir={sweep} holds runs ({sweep / '0'}" in second.stderr
    assert "ckpt_path=last" in second.stderr and "hydra.sweep.dir=OTHER_DIR" in second.stderr
    assert "Traceback" not in second.stderr
    assert file_hashes(sweep) == before


def test_a_fresh_run_from_python_refuses_a_folder_holding_a_run(make_cfg, tmp_path: Path):
    train(make_cfg(*QUIET, "growth.total_kimg=0.032"))
    before = file_hashes(tmp_path)
    with pytest.raises(UserError, match=r"holds a run .*ckpt_path=last.*hydra.run.dir=OTHER"):
        train(make_cfg(*QUIET, "seed=1"))
    assert file_hashes(tmp_path) == before


def test_checkpoint_temp_names_are_unique_per_process(make_cfg, tmp_path, monkeypatch):
    import os

    renamed = []
    original = os.replace

    def spy(src, dst):
        renamed.append(Path(src).name)
        return original(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    train(make_cfg(*QUIET, "growth.total_kimg=0.032"))
    ckpts = [name for name in renamed if ".ckpt." in name]
    assert ckpts and all(name.endswith(f".ckpt.tmp-{os.getpid()}") for name in ckpts)


def test_signal_exit_status_from_main(monkeypatch, tmp_path):
    import signal

    from progan_lightning.cli import train as command

    def preempted(cfg):
        raise Preempted(signal.SIGTERM, Path("run/checkpoints/last.ckpt"))

    monkeypatch.setattr("progan_lightning.train.train", preempted)
    monkeypatch.setattr("sys.argv", ["train.py", f"hydra.run.dir={tmp_path / 'run'}"])
    with pytest.raises(SystemExit) as exited:
        command.main()
    assert exited.value.code == 143


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("growth.lr={4: -0.001}", r"growth.lr at 4x4 is -0.001; use a learning rate > 0"),
        ("model.optimizer.lr=-0.001", r"model.optimizer.lr=-0.001; use a learning rate > 0"),
        ("model.ema_beta=1.5", r"model.ema_beta=1.5 is not a decay"),
        ("model.ema_kimg=0", r"model.ema_kimg=0"),
        ("model.d_lr_ratio=0", r"model.d_lr_ratio=0; use a ratio of D's learning rate"),
        ("model.D.mbstd_group_size=1", r"model.D.mbstd_group_size=1"),
        ("model.D.conditioning=aux", r"model.D.conditioning='aux'; use acgan .* or projection"),
        ("growth.batch_size=5", r"growth.batch_size=5 at 4x4 is 5 per device .* drops to 1"),
        ("callbacks.model_checkpoint.keep_last=0", r"keep_last=0 would delete"),
    ],
)
def test_bad_values_fail_before_data_is_prepared(make_cfg, tmp_path, override, message):
    cfg = make_cfg(*QUIET, override)
    cfg.paths.cache_dir = str(tmp_path / "fresh-cache")
    with pytest.raises(ValueError, match=message):
        train(cfg)
    assert not (tmp_path / "fresh-cache").exists()


def test_small_per_device_batches_warn_or_fail_under_ddp(make_cfg):
    import re

    from progan_lightning.growth_plan import check_world_size
    from progan_lightning.schedule import GrowthSchedule

    schedule = GrowthSchedule(4, 16, 600, 600, batch_size={4: 16, 8: 12, 16: 8})
    warning = check_world_size(schedule, 4, mbstd_group_size=4)
    assert re.search(r"shrinks at 8x8 \(batch 3 per device: group 3\), 16x16", warning)
    schedule = GrowthSchedule(4, 16, 600, 600, batch_size={4: 16, 16: 8})
    with pytest.raises(ValueError, match=r"at 16x16 is 1 per device over 8 devices"):
        check_world_size(schedule, 8, mbstd_group_size=4)
    assert check_world_size(schedule, 8, mbstd_group_size=0) is None  # no layer, no group


def test_truncated_last_checkpoint_falls_back_to_the_newest_readable(make_cfg, tmp_path):
    train(make_cfg(*QUIET, "growth.total_kimg=0.224"))
    last = tmp_path / "checkpoints" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])  # a disk that lost the tail
    with pytest.warns(
        UserWarning, match=r"last.ckpt is not readable .* resuming from .*kimg00000.192.ckpt"
    ):
        _, objects = train(make_cfg(*QUIET, "ckpt_path=last"))
    assert objects["model"].cur_nimg == 320
    last.write_bytes(last.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"not a readable checkpoint .* beside it: "):
        train(make_cfg(*QUIET, f"ckpt_path={last}"))


def test_sigterm_from_outside_exits_143_with_last_checkpoint(tmp_path: Path, cache_dir: Path):
    """A scheduler's SIGTERM to ``python train.py``: status 128+15, last.ckpt, no export."""
    import signal
    import time

    run = tmp_path / "run"
    # growth.stable_kimg=100: far longer than the test waits.
    cmd = train_command(cache_dir, "growth.stable_kimg=100", f"hydra.run.dir={run}")
    log = (tmp_path / "log.txt").open("w")  # a file: a full pipe would block the run
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=120)
    log.close()
    output = (tmp_path / "log.txt").read_text()
    assert proc.returncode == 128 + signal.SIGTERM, output[-2000:]
    assert "stopped by SIGTERM" in output and "Traceback" not in output
    nimg = load_checkpoint(last)["progress"]["cur_nimg"]
    assert nimg > 0
    assert not (run / "generator.safetensors").exists()
    assert not (run / ".run.owner").exists()  # the lock was released

    # The message's resume command works as printed: the run's own overrides come from its
    # folder (here a shorter schedule, to end soon).
    hint = re.search(r"resume with the override (\S+) ", output)
    assert hint is not None and hint[1] == f"resume={run}", output[-2000:]
    end = f"growth.total_kimg={(nimg + 32) / 1000}"
    resumed = subprocess.run(
        [sys.executable, str(REPO / "train.py"), hint[1], end], capture_output=True, text=True
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert load_checkpoint(last)["progress"]["cur_nimg"] == nimg + 32
    assert (run / "generator.safetensors").is_file()


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (Preempted(2, RUN / "checkpoints" / "last.ckpt"), f"the override resume={RUN} "),
        (
            WriteFailed(RUN / "checkpoints" / "last.ckpt", "No space", EARLIER),
            f"the overrides resume={RUN} ckpt_path={EARLIER}",
        ),
        (Diverged("loss/D", 96, "fade8", EARLIER), f"resume={RUN} ckpt_path={EARLIER} and"),
    ],
)
def test_a_stop_names_the_resume_that_takes_the_runs_own_settings(error, hint):
    """Resuming with ckpt_path=FILE alone composes the default config, which the checkpoint
    of a run with its own settings does not fit: the message gives the folder's resume."""
    error.run_dir = RUN
    assert hint in str(error)
    error.run_dir = None  # a run without a folder record (a test's, from Python)
    assert f"ckpt_path={error.checkpoint}" in str(error) and "resume=" not in str(error)


def test_non_finite_weights_are_never_written(make_cfg, tmp_path: Path):
    _, objects = train(make_cfg(*QUIET, "growth.total_kimg=0.032"))
    trainer, model = objects["trainer"], objects["model"]
    saver = next(c for c in trainer.callbacks if type(c).__name__ == "SafeCheckpoint")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    with torch.no_grad():
        next(model.G_ema.parameters()).fill_(float("nan"))
    with pytest.raises(Diverged, match="the weights of G_ema"):
        saver.save(trainer, "last.ckpt")
    assert last.read_bytes() == before


def test_a_failed_checkpoint_write_keeps_the_previous_one(make_cfg, tmp_path, monkeypatch):
    import errno

    _, objects = train(make_cfg(*QUIET, "growth.total_kimg=0.032"))
    trainer = objects["trainer"]
    saver = next(c for c in trainer.callbacks if type(c).__name__ == "SafeCheckpoint")
    last = tmp_path / "checkpoints" / "last.ckpt"
    before = last.read_bytes()

    def disk_full(checkpoint, path, storage_options=None):
        Path(path).write_bytes(b"PK\x03\x04 the start of a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(trainer.strategy.checkpoint_io, "save_checkpoint", disk_full)
    with pytest.raises(WriteFailed) as failed:
        saver.save(trainer, "last.ckpt")
    message = str(failed.value)
    assert f"could not write {last} (" in message and "No space left on device" in message
    assert f"the previous checkpoint {last} is intact" in message and "ckpt_path=" in message
    assert failed.value.exit_code == 4
    assert last.read_bytes() == before and list(last.parent.glob(".*.tmp-*")) == []

    # The final export: written again from the intact checkpoint.
    from progan_lightning.callbacks import checkpoint as checkpoint_module

    def export_fails(*args, **kwargs):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(checkpoint_module, "export_generator", export_fails)
    with pytest.raises(
        WriteFailed, match=r"generator.safetensors \(.*File too large.*progan-export"
    ):
        saver.on_fit_end(trainer, objects["model"])


def test_a_file_size_limit_ends_the_command_with_one_message(
    make_cfg, tmp_path: Path, cache_dir: Path
):
    """``python train.py`` under ``ulimit -f``: exit status 4 and the file named, no traceback."""

    build_datamodule(make_cfg().data).prepare_data()  # the cache is over the limit

    run = tmp_path / "run"
    args = train_command(cache_dir, "growth.total_kimg=0.032", f"hydra.run.dir={run}")[2:]
    limited = (
        "import resource, sys; resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)); "
        f"sys.argv = ['progan-train', *{args!r}]; "
        "from progan_lightning.cli.train import main; main()"
    )
    proc = subprocess.run([sys.executable, "-c", limited], capture_output=True, text=True)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 4, output[-2000:]
    assert f"could not write {run / 'checkpoints' / 'last.ckpt'} (" in output
    assert "no checkpoint was written yet" in output and "Traceback" not in output


def test_a_diverged_job_of_a_multirun_lets_the_sweep_go_on(tmp_path: Path, cache_dir: Path):
    cmd = train_command(
        cache_dir,
        "growth.lr={4: 0.001, 8: 1e6}",
        "optimized_metric=loss/D",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
        multirun=True,
    )
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "training diverged at kimg" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.G.fmap_max=8", "model.G.fmap_max: checkpoint 8, config 16"),
        ("growth.fade_kimg=0.032", r"phase 1 \(fade8\) ran 0.064 -> 0.096 kimg"),
    ],
)
def test_a_checkpoint_of_a_run_the_config_does_not_fit_names_that_runs_resume(
    make_cfg, tmp_path: Path, cache_dir: Path, setting: str, message: str
):
    """``ckpt_path=FILE`` alone composes the config on the command line (into a new folder),
    which a run started with settings of its own does not fit: the refusal names the resume
    that takes them from the run's folder."""
    train(make_cfg(*QUIET, setting, "growth.total_kimg=0.16"))
    (earlier,) = (tmp_path / "checkpoints").glob("phase01_*.ckpt")
    cfg = compose_config(tmp_path / "new", cache_dir, [*TINY, *QUIET, f"ckpt_path={earlier}"])
    with pytest.raises(ValueError, match=message) as refused:
        train(cfg)
    assert str(refused.value).endswith(
        f"; to continue that run with the settings it was started with, resume with the "
        f"overrides resume={tmp_path} ckpt_path={earlier}"
    )
