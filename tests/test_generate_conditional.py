"""Class-conditional outputs: export and reload with class names, generate per class, sample
grids in the row_per_class layout with named rows, and fakes with the reals' class mix."""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from PIL import Image

from helpers import stub_trainer
from progan_lightning.callbacks.metrics import MetricsCallback
from progan_lightning.callbacks.samples import SampleGrid, images_of_classes, row_per_class
from progan_lightning.checkpoint import export_checkpoint, generator_from_checkpoint
from progan_lightning.cli.config import CONFIG_DIR
from progan_lightning.cli.generate import main as generate_main
from progan_lightning.export import export_generator, load_generator
from progan_lightning.generate import file_tokens, generate, load_any, select_classes
from progan_lightning.imaging import label_rows, make_grid, to_uint8
from progan_lightning.losses import WGANGP
from progan_lightning.module import ProGAN
from progan_lightning.networks import Discriminator, Generator, seeded_latents

NAMES = ["star", "ring", "dot"]


def tiny_generator(num_classes: int = 3, seed: int = 0) -> Generator:
    """An 8x8 generator with small feature maps (conditional when ``num_classes`` > 0)."""
    torch.manual_seed(seed)
    return Generator(img_resolution=8, z_dim=8, fmap_base=32, fmap_max=8, num_classes=num_classes)


def conditional_export(tmp_path: Path) -> tuple[Generator, Path]:
    G = tiny_generator()
    G.class_names = list(NAMES)
    weights, _ = export_generator(G, tmp_path / "generator.safetensors")
    return G.eval(), weights


def by_class(G, z: torch.Tensor, label: int) -> torch.Tensor:
    with torch.no_grad():
        return G(z, 1, 1.0, labels=torch.full((len(z),), label, dtype=torch.long))


# Export.


def test_conditional_export_reloads_with_class_names_and_samples_like_the_original(tmp_path):
    G, weights = conditional_export(tmp_path)
    meta = json.loads(weights.with_suffix(".json").read_text())
    assert meta["class_names"] == NAMES and meta["init_kwargs"]["num_classes"] == 3
    loaded = load_generator(weights)
    assert loaded.class_names == NAMES and loaded.num_classes == 3
    z = seeded_latents((4, 8), seed=1)
    for c in range(3):
        torch.testing.assert_close(by_class(loaded, z, c), by_class(G, z, c))
    assert not torch.equal(by_class(loaded, z, 0), by_class(loaded, z, 1))
    labels = torch.tensor([2, 0, 1, 1])
    with torch.no_grad():
        torch.testing.assert_close(loaded(z, 1, 1.0, labels=labels), G(z, 1, 1.0, labels=labels))


def test_class_names_argument_defaults_and_errors(tmp_path):
    G = tiny_generator()  # no class_names attribute: "0", "1", "2"
    _, arch = export_generator(G, tmp_path / "a.safetensors")
    assert json.loads(arch.read_text())["class_names"] == ["0", "1", "2"]
    _, arch = export_generator(G, tmp_path / "b.safetensors", class_names=["x", "y", "z"])
    assert load_generator(arch).class_names == ["x", "y", "z"]
    with pytest.raises(ValueError, match=r"2 class names.*3 classes"):
        export_generator(G, tmp_path / "c.safetensors", class_names=["x", "y"])
    with pytest.raises(ValueError, match=r"unconditional"):
        export_generator(tiny_generator(0), tmp_path / "d.safetensors", class_names=["x"])
    # A hand-edited JSON with the wrong number of names is refused, naming the file.
    meta = json.loads(arch.read_text())
    arch.write_text(json.dumps({**meta, "class_names": ["x"]}))
    with pytest.raises(ValueError, match=re.escape(str(arch))):
        load_generator(arch)


def test_unconditional_export_is_unchanged(tmp_path):
    G = tiny_generator(0)
    weights, arch = export_generator(G, tmp_path / "u.safetensors")
    meta = json.loads(arch.read_text())
    assert "class_names" not in meta and "num_classes" not in meta["init_kwargs"]
    assert set(meta) == {
        "format",
        "version",
        "export_id",
        "class",
        "init_kwargs",
        "stage",
        "alpha",
        "resolution",
        "weights",
    }
    assert load_generator(weights).class_names == []


def test_checkpoint_generator_carries_the_checkpoint_class_names(tmp_path):
    G = tiny_generator()
    checkpoint = {
        "pytorch-lightning_version": "2.6.6",  # what the loader takes a training checkpoint by
        "architecture": {"G": G.init_kwargs},
        "state_dict": {f"G_ema.{k}": v for k, v in G.state_dict().items()},
        "progress": {"stage": 1, "alpha": 0.5},
        "classes": {"names": NAMES},
    }
    loaded = generator_from_checkpoint(checkpoint)
    assert (loaded.class_names, loaded.trained_stage, loaded.trained_alpha) == (NAMES, 1, 0.5)
    z = seeded_latents((3, 8), seed=2)
    torch.testing.assert_close(by_class(loaded, z, 2), by_class(G.eval(), z, 2))
    # export_checkpoint keeps them.
    torch.save(checkpoint, tmp_path / "last.ckpt")
    weights, arch = export_checkpoint(tmp_path / "last.ckpt")
    assert json.loads(arch.read_text())["class_names"] == NAMES
    assert load_any(tmp_path / "last.ckpt").class_names == load_generator(weights).class_names


# generate.


def png(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def as_png(image: torch.Tensor) -> np.ndarray:
    """The PNG pixels of one [CHW] image in [-1, 1]."""
    return to_uint8(image[None])[0].permute(1, 2, 0).numpy()


def test_generate_writes_files_per_class_with_the_same_latents(tmp_path):
    G, weights = conditional_export(tmp_path)
    loaded = load_generator(weights)
    out = generate(loaded, tmp_path / "gen", num_images=3, seed=4, interp_keyframes=2)
    z = seeded_latents((3, 8), seed=4)
    for c, name in enumerate(NAMES):
        files = out["classes"][name]
        assert [p.relative_to(tmp_path / "gen").as_posix() for p in files["images"]] == [
            f"class{name}/seed4_000{i}.png" for i in range(3)
        ]
        expected = by_class(G, z, c)
        for i, path in enumerate(files["images"]):
            assert np.array_equal(png(path), as_png(expected[i]))
        assert files["grid"].name == f"grid_{name}.png"
        assert Image.open(files["grid"]).size == (2 * 128, 2 * 128)  # 8 px shown at 128
        assert files["interp"].name == f"interp_{name}.gif"
        assert Image.open(files["interp"]).n_frames == 2 * 12
    assert len(out["images"]) == 9 and out["interp"] is None
    # class=null: grid.png has one row per class (3 rows of 8 px) and a name margin.
    overview = png(out["grid"])
    assert overview.shape[0] == 3 * 8 * (overview.shape[0] // 24)
    factor = overview.shape[0] // 24  # rows shorter than the font are upscaled
    body = overview[:, -3 * 8 * factor :]
    for c in range(3):
        expected = make_grid(by_class(G, z, c), cols=3)
        row = body[c * 8 * factor : (c + 1) * 8 * factor : factor, ::factor]
        assert np.array_equal(row, expected)
    assert overview[:, : -3 * 8 * factor].any()  # the names are drawn


def test_generate_selects_classes_by_name_index_or_list(tmp_path):
    G, _ = conditional_export(tmp_path)
    G.class_names = NAMES
    out = generate(G, tmp_path / "one", num_images=2, class_="ring", interp_keyframes=0)
    assert list(out["classes"]) == ["ring"] and out["grid"] is None  # no overview grid
    assert {p.name for p in (tmp_path / "one").iterdir()} == {"classring", "grid_ring.png"}
    out = generate(G, tmp_path / "two", num_images=1, class_=[2, "star", "2"], interp_keyframes=0)
    assert list(out["classes"]) == ["dot", "star"]  # duplicates dropped, order kept
    z = seeded_latents((1, 8), seed=0)
    assert np.array_equal(png(out["classes"]["dot"]["images"][0]), as_png(by_class(G, z, 2)[0]))
    assert select_classes(G, 1) == [1] and select_classes(G, None) == [0, 1, 2]
    # Default names "0".."C-1" are names first.
    G.class_names = ["2", "1", "0"]
    assert select_classes(G, "0") == [2] and select_classes(G, 0) == [0]


@pytest.mark.parametrize("bad", ["moon", 3, -1, [0, "moon"], True])
def test_a_bad_class_names_the_valid_ones(tmp_path, bad):
    G, _ = conditional_export(tmp_path)
    G.class_names = NAMES
    with pytest.raises(ValueError, match=r"is not a class of this generator.*0=star, 1=ring"):
        generate(G, tmp_path / "bad", class_=bad)
    assert not (tmp_path / "bad").exists()


def test_class_for_an_unconditional_generator_or_an_empty_list_fails(tmp_path):
    with pytest.raises(ValueError, match=r"class='star' given.*no classes"):
        generate(tiny_generator(0), tmp_path / "u", class_="star")
    with pytest.raises(ValueError, match=r"class=\[\] selects no class"):
        select_classes(tiny_generator(), [])


def test_file_tokens_are_safe_and_unique():
    assert file_tokens(["a/b", "a b", "ok", "x.y-z"]) == ["a_b-0", "a_b-1", "ok", "x.y-z"]


def test_generate_command_takes_a_class_list(tmp_path):
    _, weights = conditional_export(tmp_path)
    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose(
            "generate",
            [
                f"source={weights}",
                f"out_dir={tmp_path / 'cmd'}",
                "class=[dot,0]",
                "num_images=2",
                "interp.keyframes=0",
                "device=cpu",
            ],
        )
    GlobalHydra.instance().clear()
    generate_main(cfg)
    assert {p.name for p in (tmp_path / "cmd").iterdir()} == {
        "classdot",
        "classstar",
        "grid_dot.png",
        "grid_star.png",
    }


# Sample grids.


class PaintModule:
    """Stand-in for the LightningModule: image of class c is filled with ``c / 4 - 1``; with
    no classes, with ``tanh(z[0])``. Records the labels it is called with."""

    def __init__(self, num_classes: int, names: list[str] | None = None) -> None:
        self.num_classes = num_classes
        self.class_names = names or [f"class {c}" for c in range(num_classes)]
        self.G_ema = SimpleNamespace(z_dim=4)
        self.device = torch.device("cpu")
        self.cur_nimg = 0
        self.calls: list[torch.Tensor | None] = []

    def __call__(self, z, stage=None, alpha=None, labels=None) -> torch.Tensor:
        self.calls.append(labels)
        value = z[:, 0].tanh() if labels is None else labels.float() / 4 - 1
        return value.view(-1, 1, 1, 1).expand(len(z), 3, 8, 8).clone()


def paint(label: int) -> int:
    return int(to_uint8(torch.tensor(label / 4 - 1)))


def rows_of(grid: np.ndarray, rows: int, cols: int, tile: int) -> list[set[int]]:
    """The pixel values of each row's images (margin cut off)."""
    body = grid[:, -cols * tile :]
    assert body.shape[0] == rows * tile
    return [set(np.unique(body[y * tile : (y + 1) * tile]).tolist()) for y in range(rows)]


@pytest.mark.parametrize(
    ("num_images", "num_classes", "rows", "cols"), [(4, 3, 3, 2), (9, 2, 3, 3)]
)
def test_fake_grid_has_a_named_row_per_class(num_images, num_classes, rows, cols, tmp_path):
    callback = SampleGrid(tmp_path, num_images=num_images, tile=32)
    module = PaintModule(num_classes)
    grid, res = callback.fakes_grid(module)
    assert res == 8
    assert torch.equal(module.calls[0], row_per_class(rows, cols, num_classes))
    assert rows_of(grid, rows, cols, 32) == [{paint(y % num_classes)} for y in range(rows)]
    margin = grid[:, : -cols * 32]
    assert margin.shape[1] > 0
    assert all(margin[y * 32 : (y + 1) * 32].any() for y in range(rows))  # a name per row
    named = label_rows(
        make_grid(module(torch.zeros(rows * cols, 4), labels=module.calls[0]), tile=32, cols=cols),
        [module.class_names[y % num_classes] for y in range(rows)],
    )
    assert np.array_equal(grid, named)


def test_unconditional_fake_grid_is_unchanged(tmp_path):
    callback = SampleGrid(tmp_path, num_images=5, tile=16)
    module = PaintModule(0)
    grid, _ = callback.fakes_grid(module)
    assert module.calls == [None]
    expected = make_grid(module(seeded_latents((5, 4), 0)), tile=16)
    assert np.array_equal(grid, expected)


def test_reals_grid_shows_images_of_each_rows_class(tmp_path):
    labels = np.array([0, 1, 2, 1, 0, 2, 2, 1, 0, 0, 1, 2, 0])
    images = np.zeros((len(labels), 3, 8, 8), dtype=np.uint8)
    images[:, 0] = (40 * labels)[:, None, None]  # class in red
    images[:, 1] = np.arange(len(labels))[:, None, None]  # index in green
    datamodule = SimpleNamespace(images=lambda res: images, labels=labels)
    trainer = SimpleNamespace(datamodule=datamodule, loggers=[], global_step=0)
    callback = SampleGrid(tmp_path, num_images=9, tile=32)  # 3 x 3: rows of classes 0, 1, 2
    module = PaintModule(3)
    batch = (torch.zeros(4, 3, 8, 8), torch.tensor([0, 1, 2, 0]))
    callback.on_train_batch_start(trainer, module, batch, 0)
    grid = png(tmp_path / "reals_res8.png")
    body = grid[:, -3 * 32 :]
    for y in range(3):
        tiles = [body[y * 32, x * 32] for x in range(3)]
        assert {int(t[0]) for t in tiles} == {40 * y}  # row y: class y
        picked = [int(t[1]) for t in tiles]
        assert all(labels[i] == y for i in picked) and len(set(picked)) == 3
    callback.on_train_batch_start(trainer, module, batch, 1)  # once per resolution
    assert len(list(tmp_path.glob("reals_*.png"))) == 1


def test_images_of_classes_cycles_through_a_small_class():
    labels = np.array([0, 1, 1, 1])
    wanted = np.array([0, 0, 0, 1, 1])
    index = images_of_classes(labels, wanted, seed=0)
    assert index.tolist()[:3] == [0, 0, 0] and sorted(index[3:].tolist()) in (
        [1, 2],
        [1, 3],
        [2, 3],
    )


def test_interpolation_keeps_one_class_per_column(tmp_path):
    callback = SampleGrid(tmp_path, tile=8, interp_images=5, interp_keyframes=2, interp_steps=2)
    module = PaintModule(3)
    frames = callback.interpolation_frames(module)
    assert len(frames) == 4
    for labels in module.calls:
        assert labels.tolist() == [0, 1, 2, 0, 1]
    assert [int(frames[0][0, x * 8, 0]) for x in range(5)] == [paint(c) for c in [0, 1, 2, 0, 1]]


def test_real_conditional_module_renders_a_named_grid(tmp_path):
    G = Generator(8, z_dim=8, fmap_base=32, fmap_max=8, num_classes=2)
    D = Discriminator(8, fmap_base=32, fmap_max=8, num_classes=2)
    module = ProGAN(
        G, D, WGANGP(), functools.partial(torch.optim.Adam, lr=1e-3), class_names=["cat", "dog"]
    )
    grid, res = SampleGrid(tmp_path, num_images=4, tile=32).fakes_grid(module)
    assert res == 4 and grid.shape[0] == 2 * 32 and grid.shape[1] > 2 * 32


# Metrics.


class Recorder:
    """A metric that keeps what it is fed (registered under the name ``swd``)."""

    def __init__(self) -> None:
        self.reals: list[torch.Tensor] = []

    def update(self, images: torch.Tensor, real: bool) -> None:
        if real:
            self.reals.append(images.clone())

    def compute(self) -> dict[str, torch.Tensor]:
        return {}

    def reset(self) -> None:
        pass


@pytest.mark.parametrize("world_size", [1, 3])
def test_fakes_get_the_labels_of_the_chosen_reals(tmp_path, world_size):
    labels = np.random.default_rng(0).integers(0, 3, size=50)
    images = np.zeros((50, 3, 8, 8), dtype=np.uint8)
    images[:, 0] = np.arange(50)[:, None, None]  # index in red
    datamodule = SimpleNamespace(images=lambda res: images, labels=labels, mirror=False)
    fake_labels, real_labels = [], []
    for rank in range(world_size):
        callback = MetricsCallback({"num_images": 20, "batch_size": 7}, tmp_path / "m.jsonl")
        recorder = Recorder()
        callback.metrics = {8: {"swd": recorder}}
        module = PaintModule(3)
        module.resolution, module.phase_index = 8, 1
        trainer = stub_trainer(datamodule, rank, world_size)
        callback.evaluate(trainer, module, alpha=1.0)
        fake_labels += [int(c) for call in module.calls for c in call]
        real_labels += [int(labels[i]) for b in recorder.reals for i in b[:, 0, 0, 0]]
    assert len(fake_labels) == len(real_labels) == 20
    assert Counter(fake_labels) == Counter(real_labels)
    assert len(set(fake_labels)) == 3
