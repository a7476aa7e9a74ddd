"""A command that cannot write (disk full, a file size limit, a read-only folder) ends with one
line naming the file and the cause, exit status 4, and leaves nothing half-written."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from PIL import Image

from helpers import FIXTURES, run_python
from progan_lightning import export as export_module
from progan_lightning.cli.export import main as export_main
from progan_lightning.cli.generate import main as generate_main
from progan_lightning.cli.import_official import main as import_main
from progan_lightning.train import train

PICKLE = FIXTURES / "official-progan" / "tiny32.pkl"
LIMIT = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, 100_000)); "
CAUSES = [(errno.ENOSPC, "No space left on device"), (errno.EROFS, "Read-only file system")]


def fail_after_writing(monkeypatch: pytest.MonkeyPatch, owner: object, name: str, code: int):
    """Make ``owner.name(..., path, ...)`` write some bytes to its file, then fail with
    ``code``, as a disk that fills up half-way does."""

    def partial(*args, **kwargs) -> None:
        target = next(a for a in (*args, *kwargs.values()) if isinstance(a, str | Path))
        Path(target).write_bytes(b"partial")
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(owner, name, partial)


def assert_one_line(err: str, path: Path, cause: str) -> None:
    lines = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1 and f"could not write {path} ({cause}" in lines[0], err
    assert "Traceback" not in err


def hidden_temps(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*") if ".tmp-" in p.name]


@pytest.mark.parametrize(("code", "cause"), CAUSES)
def test_export_that_cannot_write_exits_4_and_keeps_the_old_export(
    make_cfg, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, code: int, cause: str
):
    train(make_cfg("logger=none", "growth.total_kimg=0.016"))
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    out = tmp_path / "mine.safetensors"
    export_main([str(ckpt), str(out)])
    before = out.read_bytes(), out.with_suffix(".json").read_bytes()
    capsys.readouterr()
    fail_after_writing(monkeypatch, export_module, "save_file", code)
    with pytest.raises(SystemExit) as exit_:
        export_main([str(ckpt), str(out)])
    assert exit_.value.code == 4
    assert_one_line(capsys.readouterr().err, out, cause)
    assert (out.read_bytes(), out.with_suffix(".json").read_bytes()) == before
    assert hidden_temps(tmp_path) == []


def test_an_export_whose_json_cannot_be_written_leaves_no_new_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
):
    out = tmp_path / "g.safetensors"

    def no_space(self: Path, *args, **kwargs) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", no_space)
    with pytest.raises(SystemExit) as exit_:
        import_main([str(PICKLE), str(out)])
    assert exit_.value.code == 4
    assert_one_line(capsys.readouterr().err, out.with_suffix(".json"), "No space left")
    assert list(tmp_path.iterdir()) == []  # neither file, no temp file


@pytest.mark.parametrize(("code", "cause"), CAUSES)
def test_generate_that_cannot_write_exits_4(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys, code: int, cause: str
):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from progan_lightning.cli.config import CONFIG_DIR

    GlobalHydra.instance().clear()
    with initialize_config_dir(version_base="1.3", config_dir=CONFIG_DIR):
        cfg = compose("generate", [f"source={PICKLE}", "device=cpu", f"out_dir={tmp_path}"])
    GlobalHydra.instance().clear()
    fail_after_writing(monkeypatch, Image.Image, "save", code)
    with pytest.raises(SystemExit) as exit_:
        generate_main(cfg)
    assert exit_.value.code == 4
    assert_one_line(capsys.readouterr().err, tmp_path / "seed0_0000.png", cause)
    assert list(tmp_path.iterdir()) == []


def test_import_under_a_file_size_limit_exits_4(tmp_path: Path):
    out = tmp_path / "g.safetensors"
    code = f"{LIMIT}from progan_lightning.cli.import_official import main; main()"
    result = run_python(["-c", code, str(PICKLE), str(out)], cwd=tmp_path)
    assert result.returncode == 4, result.stderr[-2000:]
    assert_one_line(result.stderr, out, "File too large")
    assert list(tmp_path.iterdir()) == []


def test_prepare_under_a_file_size_limit_exits_4_and_leaves_no_cache(tmp_path: Path):
    cache = tmp_path / "cache"
    args = ["data.resolution=16", "data.source.num_images=1024", f"data.cache_dir={cache}"]
    code = f"{LIMIT}import sys; sys.argv[0] = 'progan-prepare'; "
    code += "from progan_lightning.cli.prepare import main; main()"
    result = run_python(["-c", code, *args, f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path)
    assert result.returncode == 4, result.stderr[-2000:]
    assert "could not write" in result.stderr and "File too large" in result.stderr
    assert "data.cache_dir" in result.stderr and "Traceback" not in result.stderr
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == []


def test_a_write_error_names_the_file_the_cause_and_the_fix():
    from progan_lightning.faults import WriteError

    error = WriteError("/out/g.json", OSError(errno.EFBIG, "File too large"))
    assert error.filename == "/out/g.json" and error.errno == errno.EFBIG
    assert error.message().startswith("could not write /out/g.json (File too large)")
    assert "ulimit -f" in error.message()
