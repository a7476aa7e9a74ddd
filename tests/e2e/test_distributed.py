"""Data-parallel training on 2 CPU processes and Hydra multirun, run as a user would."""

import json
from pathlib import Path

import pytest
import yaml

from helpers import DDP_CLI, run_train
from progan_lightning.checkpoint import load_checkpoint
from progan_lightning.train import train


@pytest.mark.slow
def test_ddp_sim_two_ranks_stay_in_lockstep_across_stages(tmp_path: Path):
    """Conditional (the digits labelled by digit), so the labels, D's class head and G's
    one-hot input go through DDP too; with ADA (from p = 0.5, moving every 2 steps), whose
    signal is all-reduced (that ranks agree on p: ``test_module_augment.py``). The
    unconditional path runs on 4 ranks in ``test_official_setups.py``."""
    out = tmp_path / "run"
    ada = ["augment=ada", "augment.p=0.5", "augment.interval=2", "augment.speed_kimg=2"]
    args = ["debug=ddp", "data.labels=digit", *ada, *DDP_CLI]
    run_train([*args, f"hydra.run.dir={out}"], tmp_path)

    rank0 = (out / "consistency" / "rank0.jsonl").read_text().splitlines()
    rank1 = (out / "consistency" / "rank1.jsonl").read_text().splitlines()
    assert rank0 == rank1  # same nimg/stage/alpha/resolution every step, same final weights
    rows = [json.loads(line) for line in rank0[:-1]]
    # Global batch 16 split 8 + 8; images seen are the sum over ranks at every step.
    assert all(r["local_batches"] == [8, 8] for r in rows)
    assert [r["nimg"] for r in rows] == list(range(16, 321, 16))
    assert {r["resolution"] for r in rows} == {4, 8, 16}  # two stage transitions
    assert any(0 < r["alpha"] < 1 for r in rows)
    assert "weight_sums" in json.loads(rank0[-1])

    # Files come from rank 0 only, once.
    assert (out / "checkpoints" / "last.ckpt").is_file()
    assert len(list((out / "samples").glob("fakes_*_res16.png"))) == 4  # 2 fade + 2 stable ticks
    classes = json.loads((out / "generator.json").read_text())["class_names"]
    assert classes == [str(digit) for digit in range(10)]

    # Resumed by its folder alone (resume=RUN: ckpt_path=last hydra.run.dir=RUN): every rank
    # composes the recorded overrides (the labels, the tiny networks) and they stay in
    # lockstep; only rank 0 speaks.
    resumed = run_train([f"resume={out}", "growth.total_kimg=0.352"], tmp_path)
    assert (resumed.stdout + resumed.stderr).count(f"Run folder: {out}") == 1
    rank0 = (out / "consistency" / "rank0.jsonl").read_text().splitlines()
    assert rank0 == (out / "consistency" / "rank1.jsonl").read_text().splitlines()
    assert [json.loads(line)["nimg"] for line in rank0[:-1]] == [336, 352]

    # Exact: each rank restored its own random states (the consistency callback checks
    # before every batch that no two ranks draw the same numbers), so the resumed run ends
    # with the weights of the run that trained the same images without stopping.
    whole = tmp_path / "whole"
    run_train([*args, "growth.total_kimg=0.352", f"hydra.run.dir={whole}"], tmp_path)
    assert rank0[-1] == (whole / "consistency" / "rank0.jsonl").read_text().splitlines()[-1]


def test_indivisible_batch_fails_before_launching(make_cfg):
    cfg = make_cfg("trainer=ddp_sim", "growth.batch_size=15")
    with pytest.raises(ValueError, match=r"growth.batch_size=15 .* does not divide over 2"):
        train(cfg)


@pytest.mark.slow
def test_multirun_runs_each_job_in_its_own_dir(tmp_path: Path):
    sweep = tmp_path / "sweep"
    result = run_train(
        [
            "-m",
            "seed=1,2",
            f"hydra.sweep.dir={sweep}",
            "debug=grow",
            "growth.stable_kimg=0.032",
            "growth.fade_kimg=0.032",
            "data.resolution=8",
            *DDP_CLI[1:],
        ],
        tmp_path,
    )
    assert f"Sweep folder: {sweep}" in result.stdout + result.stderr
    for job in ("0", "1"):
        assert (sweep / job / "checkpoints" / "last.ckpt").is_file()
        assert "seed=" in (sweep / job / ".hydra" / "overrides.yaml").read_text()
        assert not (sweep / job / ".run.owner").exists()  # each job's lock given back

    # The sweep resumes by its folder: its overrides (seed=1,2 among them) come from the
    # sweep's multirun.yaml, and each job extends its own run.
    run_train(
        ["-m", "ckpt_path=last", f"hydra.sweep.dir={sweep}", "growth.total_kimg=0.128"], tmp_path
    )
    for job, seed in (("0", 1), ("1", 2)):
        checkpoint = load_checkpoint(sweep / job / "checkpoints" / "last.ckpt")
        assert checkpoint["progress"]["cur_nimg"] == 128
        (entry,) = yaml.safe_load((sweep / job / ".hydra" / "resumes.yaml").read_text())
        assert "growth.total_kimg=0.128" in entry["overrides"]
        assert f"seed={seed}" in (sweep / job / ".hydra" / "overrides.yaml").read_text()


def test_slurm_launcher_config_follows_the_trainer(make_cfg):
    cfg = make_cfg("launcher=slurm", "trainer.num_nodes=2", "trainer.devices=8", tiny=False)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert (launcher.nodes, launcher.tasks_per_node, launcher.gpus_per_node) == (2, 8, 8)
    assert cfg.trainer.strategy == "ddp_find_unused_parameters_true"
