"""Atomic writes: nothing partial on failure, normal permissions on success."""

import os

import pytest

from gmodiff.io.atomic import atomic_path, write_bytes_atomic


def test_success_renames_with_umask_mode(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out.bin"
        write_bytes_atomic(target, b"data")
    finally:
        os.umask(old)
    assert target.read_bytes() == b"data"
    assert os.stat(target).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.exr"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".exr"
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
