"""Resume by folder: the command line completed with the run's recorded overrides."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from progan_lightning.cli.resume import complete_argv, with_recorded_overrides, with_run_data

RECORDED = ["data=folder", "data.path=/data/faces", "data.resolution=16", "growth.total_kimg=60"]


@pytest.fixture
def run(tmp_path: Path) -> Path:
    """A run dir whose record holds :data:`RECORDED`."""
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in RECORDED))
    return tmp_path


def test_a_resume_composes_the_recorded_overrides_first_then_the_new_ones(run: Path):
    given = ["ckpt_path=last", f"hydra.run.dir={run}", "growth.total_kimg=65", "logger=many"]
    recorded_first = [o for o in RECORDED if not o.startswith("growth.total_kimg")]
    assert with_recorded_overrides(given) == [*recorded_first, *given]


def test_resume_is_short_for_the_last_checkpoint_of_a_folder(run: Path):
    assert with_recorded_overrides([f"resume={run}", "growth.total_kimg=65"]) == [
        *RECORDED[:3],
        "ckpt_path=last",
        f"hydra.run.dir={run}",
        "growth.total_kimg=65",
    ]


def test_resume_with_a_checkpoint_of_the_folder_resumes_from_that_one(run: Path):
    """``resume=RUN ckpt_path=FILE``: the run's overrides, its folder, the checkpoint given."""
    earlier = f"{run}/checkpoints/kimg00000.064.ckpt"
    assert with_recorded_overrides([f"resume={run}", f"ckpt_path={earlier}"]) == [
        *RECORDED,
        f"hydra.run.dir={run}",
        f"ckpt_path={earlier}",
    ]


@pytest.mark.parametrize(
    "given",
    [
        ["hydra.run.dir={run}", "seed=1"],  # a fresh run (refused later: the folder holds one)
        ["ckpt_path=last", "seed=1"],  # no folder named
        ["ckpt_path=null", "hydra.run.dir={run}"],
        ["ckpt_path=last", "hydra.run.dir=${{paths.log_dir}}/run"],  # an interpolation
    ],
)
def test_other_command_lines_are_left_as_they_are(run: Path, given: list[str]):
    given = [o.format(run=run) for o in given]
    assert with_recorded_overrides(given) == given


def test_a_folder_without_a_record_adds_nothing(tmp_path: Path):
    given = ["ckpt_path=last", f"hydra.run.dir={tmp_path}"]
    assert with_recorded_overrides(given) == given


def test_the_ranks_of_a_multi_process_run_complete_the_same_line(run: Path):
    """Lightning's ranks re-run rank 0's (completed) command line, with the run dir quoted
    and its own settings after it: completing it again changes nothing."""
    completed = complete_argv(["-cn", "train", "ckpt_path=last", f"hydra.run.dir={run}"])
    assert completed == ["-cn", "train", *RECORDED, "ckpt_path=last", f"hydra.run.dir={run}"]
    rank = [*completed, f'hydra.run.dir="{run}"', "hydra.job.name=train_ddp_process_1"]
    assert complete_argv(rank) == rank


def test_a_multirun_resumes_with_its_sweeps_overrides(run: Path):
    """Hydra's sweeper keeps the sweep's config in ``multirun.yaml``: its overrides (the sweep
    lists included) come first, so every job runs again in its own folder."""
    sweep = {"hydra": {"overrides": {"task": ["seed=0,1", "data.resolution=16"]}}, "seed": 0}
    (run / "multirun.yaml").write_text(yaml.safe_dump(sweep))
    argv = ["-m", "ckpt_path=last", f"hydra.sweep.dir={run}", "growth.total_kimg=1"]
    assert complete_argv(argv) == ["-m", "seed=0,1", "data.resolution=16", *argv[1:]]
    assert complete_argv(["-m", f"resume={run}"]) == [
        "-m",
        "seed=0,1",
        "data.resolution=16",
        "ckpt_path=last",
        f"hydra.sweep.dir={run}",
    ]
    # A run's record is not a sweep's, and a sweep's is not a run's.
    assert complete_argv(["ckpt_path=last", f"hydra.run.dir={run}"])[:1] == RECORDED[:1]
    (run / "multirun.yaml").write_text("hydra: {}\n")
    with pytest.raises(ValueError, match=r"multirun.yaml holds no list of overrides"):
        complete_argv(argv)


def test_a_damaged_record_is_refused_naming_it(run: Path):
    (run / ".hydra" / "overrides.yaml").write_text("data: folder\n")
    with pytest.raises(ValueError, match=r"overrides.yaml is not a list of overrides"):
        with_recorded_overrides(["ckpt_path=last", f"hydra.run.dir={run}"])


def test_an_unreadable_record_is_refused_in_one_line(run: Path):
    (run / ".hydra" / "overrides.yaml").write_text("- [data=folder\n")
    message = r"overrides.yaml is not readable YAML \(.* at line \d+\)"
    with pytest.raises(ValueError, match=message) as error:
        with_recorded_overrides(["ckpt_path=last", f"hydra.run.dir={run}"])
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    "source", ["{run}", "{run}/generator.safetensors", "{run}/checkpoints/last.ckpt"]
)
def test_evaluating_a_run_scores_it_on_the_data_it_was_trained_on(run: Path, source: str):
    """``progan-evaluate source=RUN`` (or its export, or a checkpoint of it): the run's
    recorded data overrides come first; the others (its schedule, networks) do not."""
    given = [f"source={source.format(run=run)}", "metrics=swd"]
    assert with_run_data(given) == [*RECORDED[:3], *given]


@pytest.mark.parametrize(
    "given",
    [
        ["source={run}", "data.resolution=8"],  # the command line chooses the data
        ["source={run}", "experiment=celebahq"],
        ["source=reals"],
        ["source={run}/../elsewhere/generator.safetensors"],  # not in a run's folder
        ["num_images=16"],
    ],
)
def test_an_evaluation_that_chooses_its_data_is_left_as_it_is(run: Path, given: list[str]):
    given = [o.format(run=run) for o in given]
    assert with_run_data(given) == given


def test_a_sweep_that_kept_no_list_of_overrides_is_refused_naming_each_runs_resume(
    tmp_path: Path,
):
    """An Optuna sweep samples its trials and keeps no ``multirun.yaml``: resumed by its
    folder, each job would compose the default config (its sampled values lost, silently for
    a learning rate), so the resume is refused, naming the resume of each run by its folder."""
    sweep = tmp_path / "sweep"
    for job, lr in (("0", "0.002"), ("1", "0.003")):
        (sweep / job / ".hydra").mkdir(parents=True)
        (sweep / job / ".hydra" / "overrides.yaml").write_text(f"- model.optimizer.lr={lr}\n")
    for given in (["ckpt_path=last", f"hydra.sweep.dir={sweep}"], [f"resume={sweep}"]):
        with pytest.raises(ValueError, match=rf"keeps no multirun.yaml.*resume={sweep / '0'}"):
            with_recorded_overrides(given, multirun=True)
    fresh = tmp_path / "fresh"  # no runs in it: nothing to resume, nothing refused here
    given = ["ckpt_path=last", f"hydra.sweep.dir={fresh}"]
    assert with_recorded_overrides(given, multirun=True) == given


def test_relative_paths_of_the_record_are_read_from_the_folder_the_run_started_in(
    run: Path, tmp_path: Path
):
    """``data.path=images`` typed in /data: a resume or an evaluation from another folder
    reads /data/images (the paths settings: keys ``path``, ``*_path``, ``*_dir``,
    ``dirpath`` and ``init_from``); other values and absolute or ``~`` paths stay as typed."""
    started = tmp_path / "started in"
    recorded = [
        "data=folder",
        "data.path=images",
        "+init_from=nets/g.pkl",
        "paths.cache_dir='~/cache'",
        "callbacks.model_checkpoint.export_path=/abs/g.safetensors",
        "data.resolution=16",
    ]
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in recorded))
    (run / ".hydra" / "run.yaml").write_text(yaml.safe_dump({"cwd": str(started)}))
    expected = [
        "data=folder",
        f"data.path='{started / 'images'}'",  # quoted: the folder's name holds a space
        f"+init_from='{started / 'nets/g.pkl'}'",
        *recorded[3:],
    ]
    assert with_recorded_overrides([f"resume={run}"]) == [
        *expected,
        "ckpt_path=last",
        f"hydra.run.dir={run}",
    ]
    assert with_run_data([f"source={run}"]) == [
        expected[0],
        expected[1],
        recorded[-1],
        f"source={run}",
    ]
