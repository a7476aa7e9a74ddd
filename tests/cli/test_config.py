"""Every config group and experiment composes and instantiates."""

from pathlib import Path

import hydra
import lightning as L
import pytest
from omegaconf import OmegaConf

from helpers import lay_out
from progan_lightning.callbacks.growth import ProgressiveGrowth
from progan_lightning.cli.config import CONFIG_DIR, auto_strategy
from progan_lightning.data.datamodule import ProGANDataModule, build_datamodule
from progan_lightning.instantiate import instantiate_dict
from progan_lightning.module import ProGAN

CONF = Path(CONFIG_DIR)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml") if p.stem != "default")


def build(cfg) -> dict:
    """Instantiate every part the way train() does, without fitting."""
    return {
        "data": build_datamodule(cfg.data),
        "model": hydra.utils.instantiate(cfg.model),
        "growth": lay_out(hydra.utils.instantiate(cfg.growth)),  # one device
        "callbacks": instantiate_dict(cfg.get("callbacks")),
        "loggers": instantiate_dict(cfg.get("logger")),
    }


@pytest.mark.parametrize("experiment", options("experiment"))
def test_experiment_composes_and_instantiates(experiment, make_cfg, image_folder):
    cfg = make_cfg(f"experiment={experiment}", f"++data.path={image_folder}", tiny=False)
    assert cfg.task_name == experiment
    parts = build(cfg)
    assert isinstance(parts["data"], ProGANDataModule)
    assert isinstance(parts["model"], ProGAN)
    assert isinstance(parts["growth"], ProgressiveGrowth)
    assert parts["growth"].schedule.final_resolution == cfg.data.resolution
    trainer = hydra.utils.instantiate(cfg.trainer, accelerator="cpu", devices=1, logger=False)
    assert isinstance(trainer, L.Trainer)


def test_celebahq_has_the_paper_setup(make_cfg, image_folder):
    cfg = make_cfg("experiment=celebahq", f"data.path={image_folder}", tiny=False)
    parts = build(cfg)
    G, D = parts["model"].G, parts["model"].D
    assert G.img_resolution == 1024 and G.z_dim == 512
    assert G.channels == [512, 512, 512, 512, 256, 128, 64, 32, 16]
    n_params = sum(p.numel() for p in G.parameters())
    assert abs(n_params - 23.1e6) / 23.1e6 < 0.01  # paper, Table 2
    sched = parts["growth"].schedule  # one device: the official preset-v2-1gpu
    sizes = {p.resolution: p.batch_size for p in sched.phases}
    assert sizes == {4: 128, 8: 128, 16: 128, 32: 64, 64: 32, 128: 16, 256: 8, 512: 4, 1024: 4}
    assert {p.resolution: p.lr for p in sched.phases}[1024] == 0.0015
    assert sched.phases[1].end_nimg - sched.phases[1].start_nimg == 600_000
    assert sched.total_nimg == 12_000_000
    assert parts["data"].mirror is True
    assert D.init_kwargs["mbstd_group_size"] == 4


def test_celebahq_v1_is_the_papers_run(make_cfg, image_folder):
    cfg = make_cfg("experiment=celebahq_v1", f"data.path={image_folder}", tiny=False)
    parts = build(cfg)
    sched = parts["growth"].schedule
    sizes = {p.resolution: p.batch_size for p in sched.phases}
    assert sizes == {4: 16, 8: 16, 16: 16, 32: 16, 64: 16, 128: 16, 256: 14, 512: 6, 1024: 3}
    assert {p.lr for p in sched.phases} == {0.001}
    assert sched.phases[1].end_nimg - sched.phases[1].start_nimg == 800_000
    assert sched.total_nimg == 19_000_000
    assert parts["model"].D.init_kwargs["mbstd_group_size"] == 16


def test_cifar10_has_the_official_setup(make_cfg, image_folder):
    cfg = make_cfg("experiment=cifar10", f"data.path={image_folder}", tiny=False)
    parts = build(cfg)
    assert parts["model"].G.z_dim == 128
    assert parts["model"].G.init_kwargs["fmap_base"] == 4096
    assert parts["model"].G.init_kwargs["fmap_max"] == 128
    assert parts["model"].loss.gp_target == 750.0
    assert parts["growth"].schedule.phases[0].end_nimg == 400_000


@pytest.mark.parametrize("loss", options("model/loss"))
def test_every_loss_instantiates(loss, make_cfg):
    model = hydra.utils.instantiate(make_cfg(f"model/loss={loss}").model)
    assert callable(model.loss.discriminator) and callable(model.loss.generator)


@pytest.mark.parametrize("logger", options("logger"))
def test_every_logger_instantiates(logger, make_cfg):
    loggers = instantiate_dict(make_cfg(f"logger={logger}").get("logger"))
    assert len(loggers) == {"none": 0, "many": 3}.get(logger, 1)


@pytest.mark.parametrize("trainer", options("trainer"))
def test_every_trainer_composes(trainer, make_cfg):
    cfg = make_cfg(f"trainer={trainer}", tiny=False)
    assert cfg.trainer.use_distributed_sampler is False
    assert cfg.trainer.reload_dataloaders_every_n_epochs == 1
    if cfg.trainer.accelerator == "cpu":
        hydra.utils.instantiate(cfg.trainer, logger=False)


@pytest.mark.parametrize("callbacks", options("callbacks"))
def test_every_callbacks_group_instantiates(callbacks, make_cfg):
    built = instantiate_dict(make_cfg(f"callbacks={callbacks}", tiny=False).get("callbacks"))
    assert all(isinstance(c, L.Callback) for c in built)


@pytest.mark.parametrize("search", options("hparams_search"))
def test_every_search_sweeps_keys_the_config_has(search, make_cfg):
    # A misspelled key would fail only when the sweep launches its first trial.
    cfg = make_cfg(f"hparams_search={search}", tiny=False)
    params = cfg.hydra.sweeper.params
    assert params, f"hparams_search={search} sweeps nothing"
    missing = [k for k in params if OmegaConf.select(cfg, k, default=KeyError) is KeyError]
    assert not missing, f"hparams_search={search} sweeps keys the config lacks: {missing}"
    assert cfg.optimized_metric.startswith("metrics/")


@pytest.mark.parametrize("debug", options("debug"))
def test_every_debug_mode_composes(debug, make_cfg):
    cfg = make_cfg(f"debug={debug}", tiny=False)
    assert cfg.task_name == "debug"


def test_strategy_follows_device_count():
    assert auto_strategy(1) == "auto"
    assert auto_strategy([0]) == "auto"
    assert auto_strategy(8) == "ddp_find_unused_parameters_true"
    assert auto_strategy("auto") == "ddp_find_unused_parameters_true"
    assert auto_strategy(1, 2) == "ddp_find_unused_parameters_true"  # one GPU on each of 2 nodes


@pytest.mark.parametrize(
    ("overrides", "strategy"),
    [
        ([], "auto"),
        (["trainer=ddp_sim"], "ddp_find_unused_parameters_true"),
        (["trainer=ddp"], "ddp_find_unused_parameters_true"),
        (["trainer.num_nodes=2"], "ddp_find_unused_parameters_true"),
    ],
)
def test_every_trainer_config_takes_the_one_strategy_rule(overrides, strategy, make_cfg):
    cfg = make_cfg(*overrides, tiny=False)
    assert cfg.trainer.strategy == strategy


def test_paper_ablation_switches_reach_the_networks(make_cfg):
    cfg = make_cfg(
        "model.D.mbstd_group_size=0",
        "model.G.use_pixel_norm=false",
        "model.G.use_wscale=false",
        "growth.start_resolution=16",
        "growth.fade_kimg=0",
    )
    parts = build(cfg)
    G, D = parts["model"].G, parts["model"].D
    assert G.init_kwargs["use_pixel_norm"] is False
    assert G.init_kwargs["use_wscale"] is False and D.init_kwargs["use_wscale"] is False
    assert D.init_kwargs["mbstd_group_size"] == 0
    assert [p.name for p in parts["growth"].schedule.phases] == ["stable16"]


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.resolution=48", "data.resolution=48 is not a power of two"),
        ("growth.start_resolution=3", "growth.start_resolution=3 is not a power of two"),
        ("data.channels=2", "data.channels=2"),
    ],
)
def test_bad_values_fail_at_instantiation_with_the_key(override, message, make_cfg):
    cfg = make_cfg(override)
    with pytest.raises(Exception, match=message):
        build(cfg)


def test_missing_folder_names_the_path(make_cfg, tmp_path):
    cfg = make_cfg("data=folder", f"data.path={tmp_path / 'nope'}", tiny=False)
    with pytest.raises(Exception, match=r"data.path=.*nope does not exist"):
        build(cfg)
