"""The run record: written once by a fresh run, a resume only appends its entry."""

from __future__ import annotations

from pathlib import Path

import yaml

from progan_lightning.run_record import (
    recorded_cwd,
    recorded_overrides,
    task_overrides,
    write_record,
)


def test_a_fresh_run_records_its_config_overrides_and_versions(make_cfg, tmp_path: Path):
    cfg = make_cfg("seed=5")
    write_record(tmp_path, cfg, task_overrides(cfg))
    record = tmp_path / ".hydra"
    config = yaml.safe_load((record / "config.yaml").read_text())
    assert config["seed"] == 5 and "hydra" not in config
    assert config["paths"]["output_dir"] == str(tmp_path)  # resolved
    assert recorded_overrides(tmp_path)[-1] == "seed=5"
    run = yaml.safe_load((record / "run.yaml").read_text())
    assert set(run["versions"]) == {"python", "torch", "lightning", "progan-lightning"}
    assert "started" in run and not (record / "resumes.yaml").exists()
    # Where it was started: the folder its relative paths (data.path=images) are relative to.
    assert run["cwd"] == str(Path.cwd()) and recorded_cwd(tmp_path) == Path.cwd()


def test_a_resume_appends_its_entry_and_keeps_the_original(make_cfg, tmp_path: Path):
    cfg = make_cfg()
    write_record(tmp_path, cfg, ["data.resolution=16"])
    before = {p.name: p.read_bytes() for p in (tmp_path / ".hydra").iterdir()}
    for kimg in (1, 2):
        given = ["data.resolution=16", "ckpt_path=last", f"growth.total_kimg={kimg}"]
        write_record(tmp_path, make_cfg("ckpt_path=last"), given, resume=True)
    for name, data in before.items():
        assert (tmp_path / ".hydra" / name).read_bytes() == data, name
    resumes = yaml.safe_load((tmp_path / ".hydra" / "resumes.yaml").read_text())
    assert [r["overrides"] for r in resumes] == [
        ["ckpt_path=last", "growth.total_kimg=1"],
        ["ckpt_path=last", "growth.total_kimg=2"],
    ]


def test_a_resume_into_a_folder_without_a_record_records_the_run(make_cfg, tmp_path: Path):
    write_record(tmp_path, make_cfg("ckpt_path=/elsewhere/last.ckpt"), ["x=1"], resume=True)
    assert recorded_overrides(tmp_path) == ["x=1"]
    assert not (tmp_path / ".hydra" / "resumes.yaml").exists()


def test_a_record_without_a_start_folder_reads_as_none(tmp_path: Path):
    (tmp_path / ".hydra").mkdir()
    assert recorded_cwd(tmp_path) is None  # no record
    (tmp_path / ".hydra" / "run.yaml").write_text("started: x\n")  # before it was recorded
    assert recorded_cwd(tmp_path) is None
