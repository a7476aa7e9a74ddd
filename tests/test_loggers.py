"""Loggers: W&B offline without a key (no network), and every logger combination on a tiny run."""

from __future__ import annotations

import csv
import time
from pathlib import Path

import pytest
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf, open_dict

from progan_lightning.loggers import wandb_kwargs
from progan_lightning.train import train

# Short tiny runs: 4 -> 8 only, small metric sets.
SHORT = ["data.resolution=8", "metrics.num_images=32", "metrics.batch_size=32"]


def wandb_payload(path: Path) -> bytes:
    """The records of a ``.wandb`` file joined, without the LevelDB-style block framing (7-byte
    file header; 32 KiB blocks of chunks with a 7-byte header: crc32, length, type)."""
    data, out, pos, block = path.read_bytes(), bytearray(), 7, 32768
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # zero padding at the end of a block
            pos += block - pos % block
            continue
        length = int.from_bytes(data[pos + 4 : pos + 6], "little")
        out += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
    return bytes(out)


def test_wandb_goes_offline_without_an_api_key(make_cfg, monkeypatch, tmp_path: Path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    cfg = make_cfg("logger=wandb")
    kwargs = wandb_kwargs(cfg)
    assert kwargs["mode"] == "offline"
    assert kwargs["config"]["growth"]["tick_kimg"] == 0.032  # the resolved config
    assert "hydra" not in kwargs["config"]
    # With a key (or an explicit WANDB_MODE) the user's choice stands.
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert "mode" not in wandb_kwargs(cfg)


def test_wandb_groups_the_runs_of_a_multirun(make_cfg):
    cfg = make_cfg("logger=wandb")
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.sweep.dir = "/x/multiruns/2026-01-01_10-00-00"
        cfg.hydra.job.num = 3
    HydraConfig().set_config(cfg)
    kwargs = wandb_kwargs(cfg)
    assert kwargs["group"] == "quickstart_2026-01-01_10-00-00"
    assert kwargs["name"] == "quickstart_2026-01-01_10-00-00_3"


def test_wandb_offline_run_writes_its_files_and_finishes(make_cfg, monkeypatch, tmp_path: Path):
    import wandb

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = make_cfg("logger=wandb", "logger.wandb.upload_generator=true", *SHORT)
    metrics, _ = train(cfg)
    assert wandb.run is None  # finished

    runs = list((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run = runs[0]
    # Offline runs keep config, history and artifacts in one protobuf log (the service
    # process may still be flushing the last records for a moment after finish()).
    keys = (b"tick_kimg", b"progress/kimg", b"metrics/swd_avg", b"lr/G", b"samples/interpolation")
    for _ in range(50):
        record = wandb_payload(next(run.glob("run-*.wandb")))
        if all(k in record for k in (*keys, b"generator.safetensors", b"generator.json")):
            break
        time.sleep(0.2)
    for text in (*keys, b"generator.safetensors", b"generator.json"):
        assert text in record, text
    media = list((run / "files" / "media" / "images").rglob("*.png"))
    assert any("fakes" in p.name for p in media) and any("reals" in p.name for p in media)
    assert not list(tmp_path.glob("*.pt"))  # the upload is the safetensors export: no pickle
    assert "metrics/swd_avg" in metrics


@pytest.mark.parametrize("logger", ["tensorboard", "many"])
def test_other_loggers_run(logger, make_cfg, monkeypatch, tmp_path: Path):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    train(make_cfg(f"logger={logger}", *SHORT))
    assert list((tmp_path / "tensorboard").rglob("events.out.tfevents.*"))
    if logger == "many":
        assert (tmp_path / "csv" / "metrics.csv").is_file()


def test_the_csv_logger_appends_on_a_resume_and_widens_its_header(tmp_path: Path):
    """A second logger in the same folder (a resume) keeps the first one's rows; a key first
    logged by the second widens the header of every row."""
    from progan_lightning.loggers import CSVLogger

    first = CSVLogger(save_dir=tmp_path, name="csv", version="")
    first.log_metrics({"progress/kimg": 0.032, "loss/D": 1.0}, step=0)
    first.save()
    second = CSVLogger(save_dir=tmp_path, name="csv", version="")
    second.log_metrics({"progress/kimg": 0.064, "loss/D": 0.5}, step=1)
    second.save()
    second.log_metrics({"progress/kimg": 0.096, "metrics/swd_avg": 9.0}, step=2)
    second.save()
    with open(tmp_path / "csv" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [r["progress/kimg"] for r in rows] == ["0.032", "0.064", "0.096"]
    assert rows[0]["loss/D"] == "1.0" and rows[0]["metrics/swd_avg"] == ""
    assert rows[2]["metrics/swd_avg"] == "9.0"


def test_wandb_resumes_the_run_whose_id_the_run_dir_keeps(make_cfg, tmp_path: Path):
    from progan_lightning.loggers import WANDB_ID_NAME, instantiate_loggers, save_wandb_id

    cfg = make_cfg("logger=wandb")
    first = wandb_kwargs(cfg)
    assert first["resume"] == "allow" and len(first["id"]) == 8
    assert wandb_kwargs(cfg)["id"] != first["id"]  # a fresh run dir: a new run each time
    loggers = instantiate_loggers(cfg)
    save_wandb_id(cfg, loggers)
    kept = (tmp_path / WANDB_ID_NAME).read_text().strip()
    assert kept == loggers[0].version
    assert wandb_kwargs(cfg)["id"] == kept  # a resume logs into the same W&B run
    assert instantiate_loggers(cfg)[0].version == kept


def test_the_upload_is_the_configured_export(monkeypatch, tmp_path: Path):
    """``logger.wandb.upload_generator`` uploads the export where
    ``callbacks.model_checkpoint.export_path`` put it, and writes nothing beside it."""
    import sys
    import types

    from helpers import tiny_module
    from progan_lightning import loggers
    from progan_lightning.export import export_generator

    class Artifact:
        def __init__(self, name: str, type: str) -> None:
            self.files: list[str] = []

        def add_file(self, path: str) -> None:
            self.files.append(path)

    class Wandb:  # a W&B logger's experiment, recording the artifacts it is given
        def __init__(self) -> None:
            self.experiment = types.SimpleNamespace(log_artifact=logged.append)

    logged: list[Artifact] = []
    monkeypatch.setattr(loggers, "WandbLogger", Wandb)
    monkeypatch.setitem(sys.modules, "wandb", types.SimpleNamespace(Artifact=Artifact))
    model = tiny_module(8)
    export = tmp_path / "elsewhere" / "g.safetensors"
    export_generator(model.G_ema, export, model.stage, model.alpha)
    cfg = OmegaConf.create(
        {
            "task_name": "t",
            "paths": {"output_dir": str(tmp_path / "run")},
            "logger": {"wandb": {"upload_generator": True}},
            "callbacks": {"model_checkpoint": {"export_path": str(export)}},
        }
    )
    loggers.upload_generator(cfg, model, [Wandb()])
    assert logged[0].files == [str(export), str(export.with_suffix(".json"))]
    assert not (tmp_path / "run").exists()


def test_a_resume_from_an_earlier_checkpoint_drops_the_rows_logged_after_it(make_cfg):
    """A run that crashed (or is resumed from an earlier checkpoint) logged rows past its
    checkpoint; the resume logs those images again, so their first rows go: the CSV stays one
    history, each kimg once and in order."""
    cfg = make_cfg("callbacks.model_checkpoint.every_n_epochs=1")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    with open(run / "csv" / "metrics.csv", newline="") as file:
        first = list(csv.DictReader(file))
    (earlier,) = (run / "checkpoints").glob("*kimg00000.192.ckpt")  # 0.128 kimg before the end
    with open_dict(cfg):
        cfg.ckpt_path = str(earlier)
    train(cfg)
    with open(run / "csv" / "metrics.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    kimg = [float(r["progress/kimg"]) for r in rows if r["progress/kimg"]]
    assert kimg == sorted(kimg) and kimg[-1] == pytest.approx(0.32)  # none going back
    losses = [float(r["progress/kimg"]) for r in rows if r["loss/D"]]
    assert len(losses) == len(set(losses))  # each step's losses once
    # The rows up to the checkpoint are the first run's, untouched.
    kept = [r for r in first if r["progress/kimg"] and float(r["progress/kimg"]) <= 0.192]
    assert rows[: len(kept)] == kept


def test_the_cut_keeps_every_row_up_to_the_checkpoints_images_and_nothing_after(tmp_path: Path):
    from progan_lightning.loggers import cut_rows_past

    path = tmp_path / "metrics.csv"
    text = (
        "epoch,progress/kimg,step,metrics/swd\r\n"
        "0,0.03200000151991844,1,\r\n"  # a float32 kimg, a hair above 0.032
        "0,,1,9.0\r\n"  # a row without kimg before the cut: kept
        "0,0.06400000303983688,3,\r\n"
        "1,0.09600000083446503,5,\r\n"
        "1,,5,8.0\r\n"
    )
    path.write_bytes(text.encode())
    assert cut_rows_past(path, 96) == 0 and path.read_bytes() == text.encode()
    assert cut_rows_past(path, 64) == 2
    assert path.read_bytes() == "".join(text.splitlines(keepends=True)[:4]).encode()
    assert cut_rows_past(tmp_path / "none.csv", 0) == 0  # no file: nothing to do


Points = list[tuple[int, float]]


def tensorboard_steps(run: Path) -> tuple[dict[str, Points], dict[str, list[int]]]:
    """What TensorBoard shows of a run dir's event files, restarts purged as its loaders do:
    each scalar tag's ``(step, value)`` and each image tag's steps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run / "tensorboard"), size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    scalars = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}
    images = {t: [e.step for e in events.Images(t)] for t in events.Tags()["images"]}
    return scalars, images


def assert_one_history(tag: str, points: Points) -> None:
    """Steps never go back, and a step logged twice (``progress/kimg`` beside a tick's
    values) holds one value."""
    steps = [step for step, _ in points]
    assert steps == sorted(steps), tag
    assert len(set(points)) == len(set(steps)), tag


def test_tensorboard_plots_everything_against_the_images_seen(make_cfg, tmp_path: Path):
    """One x-axis for every scalar and image, the official summaries' own: the real images
    trained on (the losses logged per batch, the metrics and throughput per tick and the
    sample grids alike), so that no curve goes back and the metrics line up with the losses."""
    train(make_cfg("logger=tensorboard", *SHORT, "metrics=swd"))
    scalars, images = tensorboard_steps(tmp_path)
    assert {"loss/D", "metrics/swd_avg", "lr/G", "throughput/img_per_sec"} <= set(scalars)
    for tag, points in scalars.items():
        assert_one_history(tag, points)
    for step, kimg in scalars["progress/kimg"]:
        assert step == round(kimg * 1000)
    assert scalars["loss/D"][-1][0] == scalars["metrics/swd_avg"][-1][0] == 192  # the end
    assert images["samples/fakes"][-1] == 192 and images["samples/reals"][0] == 0


def test_a_resume_purges_the_tensorboard_steps_logged_after_its_checkpoint(make_cfg):
    """The resume's event file tells TensorBoard to drop what the earlier files hold past the
    checkpoint (``purge_step``), so that each curve has each step once."""
    cfg = make_cfg("logger=tensorboard", "callbacks.model_checkpoint.every_n_epochs=1")
    train(cfg)
    run = Path(cfg.paths.output_dir)
    first, _ = tensorboard_steps(run)
    (earlier,) = (run / "checkpoints").glob("*kimg00000.192.ckpt")
    with open_dict(cfg):
        cfg.ckpt_path = str(earlier)
    train(cfg)
    scalars, images = tensorboard_steps(run)
    assert len(list((run / "tensorboard").glob("events.out.tfevents.*"))) == 2
    for tag, points in {**scalars, **{t: [(s, 0) for s in v] for t, v in images.items()}}.items():
        assert_one_history(tag, points)
    assert scalars["loss/D"][-1][0] == 320
    kept = [p for p in first["loss/D"] if p[0] <= 192]
    assert scalars["loss/D"][: len(kept)] == kept  # the first run's up to the checkpoint
