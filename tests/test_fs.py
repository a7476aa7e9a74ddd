"""fs.py: atomic writes and the inter-process lock every writer shares."""

from __future__ import annotations

import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from progan_lightning.fs import Timeout, atomic_write, file_lock, new_file_mode, temp_path


def test_a_failed_write_leaves_the_previous_file_and_no_temp(tmp_path: Path):
    path = atomic_write(tmp_path / "out" / "a.txt", lambda p: p.write_text("first"))
    assert path.read_text() == "first"

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, fail)
    assert path.read_text() == "first"
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]


def test_temp_names_are_hidden_beside_the_file_and_per_process(tmp_path: Path):
    tmp = temp_path(tmp_path / "last.ckpt")
    assert tmp.parent == tmp_path and tmp.name.startswith(".last.ckpt.tmp-")
    assert not tmp.name.endswith(".ckpt")  # never taken for a checkpoint


def _try_lock(path: str, queue: multiprocessing.Queue) -> None:
    try:
        with file_lock(path, timeout=0):
            queue.put("acquired")
    except Timeout:
        queue.put("refused")


def test_a_held_lock_refuses_another_process_until_released(tmp_path: Path):
    path = tmp_path / "x.lock"
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    with file_lock(path):
        proc = ctx.Process(target=_try_lock, args=(str(path), queue))
        proc.start()
        proc.join(60)
        assert queue.get(timeout=5) == "refused"
    proc = ctx.Process(target=_try_lock, args=(str(path), queue))
    proc.start()
    proc.join(60)
    assert queue.get(timeout=5) == "acquired"


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_written_file_takes_the_umask_whatever_its_writer_chose(tmp_path: Path, mask: int):
    previous = os.umask(mask)
    try:
        assert new_file_mode() == 0o666 & ~mask
        path = atomic_write(tmp_path / "a.bin", lambda p: os.close(os.open(p, os.O_CREAT, 0o600)))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
