"""Class labels in the data: folders, dataset.json, shape kinds, the cache and the batches."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from progan_lightning.data.cache import cache_key, load_labels, load_level, read_manifest
from progan_lightning.data.cache_build import BadImagesError, BadImagesWarning, prepare_cache
from progan_lightning.data.datamodule import ProGANDataModule, build_datamodule
from progan_lightning.data.files import FolderSource
from progan_lightning.data.sources import ShapesSource
from progan_lightning.data.stream import BatchArray, split_batch

# A distinct solid colour per class, so that a stored image tells which class it came from.
COLOURS = {"bird": (220, 20, 20), "cat": (20, 220, 20), "dog": (20, 20, 220)}


def solid(file: Path, colour: tuple[int, int, int]) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (12, 12), colour).save(file)


def class_of_pixels(images: np.ndarray) -> list[int]:
    """The class (index in sorted COLOURS) of each solid image [N, 3, H, W]: its bright channel."""
    return images.mean(axis=(2, 3)).argmax(axis=1).tolist()


@pytest.fixture
def class_folder(tmp_path: Path) -> Path:
    """dog/, cat/ and bird/ (made unsorted), 2-3 images each, one nested a level deeper."""
    root = tmp_path / "classes"
    for name in ("dog", "cat", "bird"):
        for i in range(2):
            solid(root / name / f"{i}.png", COLOURS[name])
    solid(root / "cat" / "deep" / "2.png", COLOURS["cat"])
    (root / "cat" / "notes.txt").write_text("not an image")
    solid(root / ".hidden" / "0.png", COLOURS["dog"])
    return root


def zipped(folder: Path, archive: Path) -> Path:
    """``folder`` as a zip of its files (no directory entries)."""
    with zipfile.ZipFile(archive, "w") as out:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                out.write(file, file.relative_to(folder).as_posix())
    return archive


def write_json(folder: Path, data: Any) -> None:
    (folder / "dataset.json").write_text(json.dumps(data))


@pytest.fixture
def json_folder(tmp_path: Path) -> Path:
    """Flat files whose names say nothing of their class, and a dataset.json naming them."""
    root = tmp_path / "flat"
    for i, name in enumerate(["dog", "bird", "cat", "cat", "dog", "bird"]):
        solid(root / f"img{i}.png", COLOURS[name])
    labels = [[f"img{i}.png", [2, 0, 1, 1, 2, 0][i]] for i in range(6)]
    write_json(root, {"labels": labels})
    return root


# Labels from folders.


def test_folders_name_classes_sorted(class_folder: Path, tmp_path: Path) -> None:
    for path in (class_folder, zipped(class_folder, tmp_path / "classes.zip")):
        source = FolderSource(path, labels="folders")
        assert source.class_names == ["bird", "cat", "dog"]
        assert source.files == [
            "bird/0.png",
            "bird/1.png",
            "cat/0.png",
            "cat/1.png",
            "cat/deep/2.png",
            "dog/0.png",
            "dog/1.png",
        ]
        assert [source.label(i) for i in range(len(source))] == [0, 0, 1, 1, 1, 2, 2]


def test_folders_refuse_a_loose_image(class_folder: Path, tmp_path: Path) -> None:
    solid(class_folder / "stray.png", (0, 0, 0))
    for path in (class_folder, zipped(class_folder, tmp_path / "classes.zip")):
        with pytest.raises(ValueError, match="stray.png") as error:
            FolderSource(path, labels="folders")
        assert "not in a class folder" in str(error.value)
        assert "data.labels=none" in str(error.value)


def test_folders_refuse_a_class_without_images(class_folder: Path, tmp_path: Path) -> None:
    (class_folder / "empty").mkdir()
    (class_folder / "fish").mkdir()
    (class_folder / "fish" / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match="2 of the 5 classes .* no image file: empty, fish"):
        FolderSource(class_folder, labels="folders")
    # In a zip, a folder holding only other files counts as a class too.
    archive = zipped(class_folder, tmp_path / "classes.zip")
    with pytest.raises(ValueError, match="no image file: fish; add images"):
        FolderSource(archive, labels="folders")


# Labels from dataset.json.


def test_json_labels_follow_the_files(json_folder: Path, tmp_path: Path) -> None:
    source = FolderSource(json_folder, labels="json")
    assert source.files == [f"img{i}.png" for i in range(6)]  # dataset.json is no image
    assert source.class_names == ["0", "1", "2"]
    assert [source.label(i) for i in range(6)] == [2, 0, 1, 1, 2, 0]
    data = json.loads((json_folder / "dataset.json").read_text())
    data["class_names"] = ["bird", "cat", "dog"]
    data["labels"] = data["labels"][::-1]  # Entry order does not matter.
    write_json(json_folder, data)
    for path in (json_folder, zipped(json_folder, tmp_path / "flat.zip")):
        source = FolderSource(path, labels="json")
        assert source.class_names == ["bird", "cat", "dog"]
        assert [source.label(i) for i in range(6)] == [2, 0, 1, 1, 2, 0]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, r"dataset.json, which does not exist; write it as \{\"labels\""),
        ("{not json", r"dataset.json is not valid JSON .*; write it as"),
        ({"labels": None}, r"wrong structure: it needs a \"labels\" list; write it as"),
        ([["img0.png", 0]], r"wrong structure: it needs a \"labels\" list"),
        ({"labels": [["img0.png"], [3, 1]]}, r"2 label\(s\) not a \[path, class_index\] pair"),
        ({"labels": [["img0.png", 0]] * 2}, r"1 path\(s\) listed more than once: img0.png"),
        ({"labels": [], "class_names": ["a", "a"]}, r"\"class_names\" must be a list of distinct"),
        ({"labels": [[f"img{i}.png", 0] for i in range(4)]}, r"2 image file\(s\) missing from"),
        (
            {"labels": [[f"img{i}.png", 0] for i in [*range(6), 9]]},
            r"1 path\(s\) in .*dataset.json name no image file under data.path=.*: img9.png; "
            "fix the paths",
        ),
        (
            {"labels": [[f"img{i}.png", [0, -1, 1.0, "1", True, 0][i]] for i in range(6)]},
            r"4 label\(s\) .* are not class indices \(integers >= 0\): img1.png: -1, "
            "img2.png: 1.0, img3.png: '1', img4.png: True; fix them",
        ),
        (
            {"labels": [[f"img{i}.png", i % 3] for i in range(6)], "class_names": ["a", "b"]},
            r"2 label\(s\) .* \(integers in \[0, 2\)\): img2.png: 2, img5.png: 2; fix them, or "
            "add the missing names to its class_names",
        ),
        (
            {"labels": [[f"img{i}.png", 2 * (i % 2)] for i in range(6)]},
            r"data.labels=json: 1 of the 3 classes of .*dataset.json have no image file: 1; "
            "label images",
        ),
    ],
)
def test_json_problems_fail_with_one_message(
    json_folder: Path, tmp_path: Path, content: Any, expected: str
) -> None:
    """Each problem names dataset.json (in the folder or the zip), what is wrong and the fix."""
    (json_folder / "dataset.json").unlink()
    if content is not None:
        text = content if isinstance(content, str) else json.dumps(content)
        (json_folder / "dataset.json").write_text(text)
    archive = zipped(json_folder, tmp_path / "flat.zip")
    for path, where in ((json_folder, f"{json_folder}/"), (archive, f"{archive}:")):
        with pytest.raises(ValueError, match=expected) as error:
            FolderSource(path, labels="json")
        assert f"{where}dataset.json" in str(error.value)


def test_json_lists_at_most_ten_problems(json_folder: Path) -> None:
    for i in range(6, 30):
        solid(json_folder / f"img{i}.png", COLOURS["cat"])
    with pytest.raises(ValueError, match=r"24 image file\(s\) missing .*; and 14 more; add"):
        FolderSource(json_folder, labels="json")


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda path: ShapesSource(10, labels="folders"), "data.labels=folders .* shapes source"),
        (lambda path: ShapesSource(10, labels="json"), "shapes source; set data.labels to one"),
        (lambda path: FolderSource(path, labels="kind"), "data.labels=kind .* folder source"),
        (lambda path: FolderSource(path, labels=None), "data.labels=None .* none, folders, json"),
    ],
)
def test_a_label_setting_the_source_lacks_fails(class_folder: Path, make: Any, expected: str):
    with pytest.raises(ValueError, match=expected):
        make(class_folder)


# Shapes: the kind is the class.


def test_shapes_kind_labels_draw_one_kind_per_image(drawn: list[str]) -> None:
    source = ShapesSource(40, seed=5, labels="kind")
    assert source.class_names == list(ShapesSource.KINDS)
    labels = []
    for index in range(40):
        drawn.clear()
        source.load(index, 8, 3)
        labels.append(source.label(index))
        assert drawn and set(drawn) == {ShapesSource.KINDS[labels[-1]]}
    assert len(set(labels)) == 8  # Every kind appears among 40 images.
    assert labels == [ShapesSource(40, seed=5, labels="kind").label(i) for i in range(40)]


def test_unlabelled_shapes_and_their_cache_key_unchanged() -> None:
    """The images and the cache key of ``labels="none"`` are those from before labels."""
    source = ShapesSource(50, seed=3)
    assert source.class_names == []
    assert source.fingerprint() == {"kind": "shapes", "num_images": 50, "seed": 3, "version": 1}
    assert cache_key(source, 16, 3)[0] == "df5d3e4302f74bfb"  # cache format 3 (checksums)
    recorded = {  # sha1 of load(index, 16, channels) before labels existed
        (0, 3): "c98514e130b8f2aeccf10a02051c58aca3e137d6",
        (5, 3): "f3bfbd167398d588846764ebdc61b2b9c222122d",
        (11, 1): "6739af36237ef4e3ad47d051c1de04a34b901fc0",
    }
    for (index, channels), digest in recorded.items():
        assert hashlib.sha1(source.load(index, 16, channels).tobytes()).hexdigest() == digest
    labelled = ShapesSource(50, seed=3, labels="kind")
    assert labelled.fingerprint() != source.fingerprint()
    assert not np.array_equal(labelled.load(0, 16, 3), source.load(0, 16, 3))


def test_shapes_kinds_pick_the_shapes_and_classes(drawn: list[str]) -> None:
    kinds = ["star", "circle", "cross"]
    source = ShapesSource(30, seed=2, labels="kind", kinds=kinds)
    assert source.class_names == kinds  # in the order given
    for index in range(30):
        drawn.clear()
        source.load(index, 8, 3)
        assert set(drawn) == {kinds[source.label(index)]}
    unlabelled = ShapesSource(30, seed=2, kinds=kinds)
    drawn.clear()
    for index in range(30):
        unlabelled.load(index, 8, 3)
    assert set(drawn) <= set(kinds)
    # A subset is another dataset (its own cache); all kinds is the default one.
    assert unlabelled.fingerprint()["kinds"] == kinds
    assert (
        ShapesSource(30, kinds=list(ShapesSource.KINDS)).fingerprint()
        == ShapesSource(30).fingerprint()
    )


@pytest.mark.parametrize("kinds", [["moon"], [], ["star", "star"]])
def test_unknown_or_repeated_kinds_fail(kinds: list[str]) -> None:
    with pytest.raises(ValueError, match=r"data\.source\.kinds=.*use distinct kinds from circle"):
        ShapesSource(10, kinds=kinds)


def test_too_few_shapes_for_every_kind_fail_early() -> None:
    with pytest.raises(ValueError, match=r"the 4 shapes images .* have no .*num_images=100"):
        ShapesSource(4, labels="kind")


# The cache.


@pytest.mark.parametrize(("labels", "workers"), [("folders", 0), ("json", 2)])
def test_cache_keeps_labels_aligned_past_unreadable_files(
    tmp_path: Path, labels: str, workers: int
) -> None:
    """A corrupt file in the middle class takes no label with it: every stored image's
    pixels show the class its label names (also when worker processes load chunks)."""
    root = tmp_path / "classes"
    entries = []
    for name in COLOURS:
        for i in range(3):
            solid(root / name / f"{i}.png", COLOURS[name])
            entries.append([f"{name}/{i}.png", sorted(COLOURS).index(name)])
    (root / "cat" / "1.png").write_bytes(b"not a png")
    write_json(root, {"labels": entries, "class_names": sorted(COLOURS)})
    source = FolderSource(root, labels=labels)
    with pytest.warns(BadImagesWarning, match="cat/1.png"):
        cache = prepare_cache(source, 8, 3, tmp_path / "cache", workers, progress=False)
    stored = load_labels(cache)
    assert stored is not None and stored.dtype == np.int64
    assert stored.tolist() == [0, 0, 0, 1, 1, 2, 2, 2]
    for res in (4, 8):
        assert class_of_pixels(load_level(cache, res)) == stored.tolist()
    manifest = read_manifest(cache)
    assert manifest["class_names"] == ["bird", "cat", "dog"]
    assert manifest["class_counts"] == [3, 2, 3]
    assert manifest["num_images"] == 8 and manifest["num_skipped"] == 1


def test_a_class_whose_images_are_all_unreadable_fails_the_build(
    class_folder: Path, tmp_path: Path
) -> None:
    for file in (class_folder / "bird").iterdir():
        file.write_bytes(b"broken")
    root = tmp_path / "cache"
    with pytest.raises(BadImagesError, match=r"1 of the 3 classes have no readable image: bird; "):
        prepare_cache(FolderSource(class_folder, labels="folders"), 4, 3, root, progress=False)
    assert [path.suffix for path in root.iterdir()] == [".lock"]  # Nothing published.


def test_labelled_and_unlabelled_caches_are_apart(class_folder: Path, tmp_path: Path) -> None:
    root = tmp_path / "cache"
    plain = prepare_cache(FolderSource(class_folder), 4, 3, root, progress=False)
    labelled = prepare_cache(
        FolderSource(class_folder, labels="folders"), 4, 3, root, progress=False
    )
    assert plain != labelled
    assert load_labels(plain) is None and not (plain / "labels.npy").exists()
    assert "class_names" not in read_manifest(plain)
    assert load_labels(labelled).tolist() == [0, 0, 1, 1, 1, 2, 2]
    # Other labels of the same files: another cache again.
    entries = [[name, 0] for name in FolderSource(class_folder).files]
    write_json(class_folder, {"labels": entries})
    by_json = prepare_cache(FolderSource(class_folder, labels="json"), 4, 3, root, progress=False)
    assert by_json not in (plain, labelled)
    # A labelled cache that lost its labels is rebuilt, not served.
    (labelled / "labels.npy").unlink()
    assert prepare_cache(FolderSource(class_folder, labels="folders"), 4, 3, root, progress=False)
    assert (labelled / "labels.npy").is_file()


def test_shapes_kind_cache_labels(tmp_path: Path) -> None:
    source = ShapesSource(32, seed=2, labels="kind")
    cache = prepare_cache(source, 4, 3, tmp_path, progress=False)
    assert load_labels(cache).tolist() == [source.label(i) for i in range(32)]
    manifest = read_manifest(cache)
    assert manifest["class_names"] == list(ShapesSource.KINDS)
    assert sum(manifest["class_counts"]) == 32


# Batches.


def test_batch_array_and_split_batch() -> None:
    images = np.arange(5 * 3 * 2 * 2, dtype=np.uint8).reshape(5, 3, 2, 2)
    labels = np.array([4, 3, 2, 1, 0], dtype=np.int64)
    indices = np.array([3, 0, 3])
    plain = BatchArray(images)[indices]
    assert isinstance(plain, torch.Tensor)
    assert split_batch(plain) == (plain, None)
    x, y = BatchArray(images, labels)[indices]
    assert torch.equal(x, plain) and y.dtype == torch.int64 and y.tolist() == [1, 4, 1]
    for batch in ((x, y), [x, y]):
        got_x, got_y = split_batch(batch)
        assert got_x is x and got_y is y
    with pytest.raises(ValueError, match="4 labels for 5 images"):
        BatchArray(images, labels[:4])


def test_datamodule_batches_carry_aligned_labels(tmp_path: Path) -> None:
    source = ShapesSource(48, seed=1, labels="kind")
    datamodule = ProGANDataModule(source, 8, cache_dir=tmp_path, mirror=True)
    # Known from the source, before anything is prepared.
    assert datamodule.cache_path is None
    assert datamodule.class_names == list(ShapesSource.KINDS) and datamodule.num_classes == 8
    datamodule.setup()
    assert datamodule.labels.tolist() == [source.label(i) for i in range(48)]
    assert datamodule.class_counts.tolist() == np.bincount(datamodule.labels, minlength=8).tolist()
    datamodule.set_plan(8, batch_size=8, start_nimg=40, num_images=32)
    loader = datamodule.train_dataloader()
    for step, batch in enumerate(loader):
        indices = loader.sampler.indices(40 + 8 * step)
        images, labels = split_batch(batch)
        assert torch.equal(images, torch.from_numpy(datamodule.images(8)[indices]))
        assert labels.tolist() == datamodule.labels[indices].tolist()
        x, y = datamodule.on_after_batch_transfer(batch, 0)
        assert x.dtype == torch.float32 and x.shape == (8, 3, 8, 8)
        assert y is labels  # Untouched by mirroring.
    assert step == 3


def test_unlabelled_datamodule_has_no_classes(tmp_path: Path) -> None:
    datamodule = ProGANDataModule(ShapesSource(16), 4, cache_dir=tmp_path)
    assert datamodule.class_names == [] and datamodule.num_classes == 0
    assert datamodule.labels is None and datamodule.class_counts is None


def test_label_settings_reach_the_sources(make_cfg, class_folder: Path) -> None:
    cfg = make_cfg(tiny=False)
    assert cfg.data.labels == "none" and cfg.data.source.labels == "none"
    assert build_datamodule(cfg.data).num_classes == 0
    cfg = make_cfg("data=shapes", "data.labels=kind", "data.source.num_images=64", tiny=False)
    assert build_datamodule(cfg.data).class_names == list(ShapesSource.KINDS)
    cfg = make_cfg("data=folder", f"data.path={class_folder}", "data.labels=folders", tiny=False)
    assert build_datamodule(cfg.data).class_names == ["bird", "cat", "dog"]
    cfg = make_cfg("data=shapes", "data.labels=folders", tiny=False)
    with pytest.raises(Exception, match="data.labels=folders is not supported by the shapes"):
        build_datamodule(cfg.data)
