"""Batch robustness: ``gmodiff reconstruct ROOT -o DIR`` over scenes of which some are broken
writes every good scene (the same bytes a single-scene run writes), skips the broken ones
without leaving files for them, lists each broken one at the end naming its file, and exits 1.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import numpy as np
import pytest

from dareg_helpers import synthetic_scene
from gmodiff.cli import main
from gmodiff.io.hdr import read_hdr
from gmodiff.io.ldr import write_ldr
from gmodiff.io.scene import save_scene

GOOD = ["b_good", "d_good", "nested/f_good", "h_good"]
BROKEN = {  # scene → text its error line must contain
    "a_two_frames": "found 2",
    "c_corrupt_frame": "input_2.tif",
    "e_bad_exposure": "exposure.txt",
    "g_nan_ground_truth": "HDRImg.exr",
    "i_disk_full": "disk full",
}


def _break(folder: Path, kind: str) -> None:
    import OpenEXR

    if kind == "a_two_frames":
        (folder / "input_3.tif").unlink()
    elif kind == "c_corrupt_frame":
        data = (folder / "input_2.tif").read_bytes()
        (folder / "input_2.tif").write_bytes(data[:200])
    elif kind == "e_bad_exposure":
        (folder / "exposure.txt").write_text("0 2 x\n")
    elif kind == "g_nan_ground_truth":
        (folder / "HDRImg.hdr").unlink()
        gt = np.full((24, 32, 3), 0.2, np.float32)
        gt[3, 4] = np.nan
        OpenEXR.File({}, {"RGB": gt}).write(str(folder / "HDRImg.exr"))


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Nine scenes, broken ones first, last and in between (alphabetical processing order)."""
    root = tmp_path_factory.mktemp("batch") / "scenes"
    for seed, name in enumerate(sorted(GOOD + list(BROKEN))):
        folder = save_scene(synthetic_scene(seed, 24, 32), root / name)
        _break(folder, Path(name).name)
    return root


@pytest.fixture
def disk_full_for_one_scene(monkeypatch):
    """ENOSPC when the i_disk_full output is renamed into place; other writes go through."""
    real_replace = os.replace

    def replace(src, dst, *args, **kwargs):
        if "i_disk_full" in os.fspath(dst):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


def _all_files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


def test_good_scenes_written_broken_ones_reported_at_the_end(root, tmp_path, capsys,
                                                             disk_full_for_one_scene):
    out = tmp_path / "out"
    code = main(["reconstruct", str(root), "-o", str(out), "--format", "exr", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1, captured.err
    assert "Traceback" not in captured.err
    # Exactly the good scenes, flat in the output folder: no file (or temp file) for broken ones.
    assert _all_files(out) == sorted(f"{Path(name).name}.exr" for name in GOOD)
    assert f"wrote {len(GOOD)} of {len(GOOD) + len(BROKEN)}" in captured.out
    # The report comes after the work, one line per broken scene naming its file.
    err_lines = captured.err.strip().splitlines()
    header = next(i for i, line in enumerate(err_lines) if "scene(s) failed" in line)
    assert err_lines[header].startswith(f"{len(BROKEN)} scene(s) failed")
    reported = err_lines[header + 1:]
    assert len(reported) == len(BROKEN), reported
    for name, mention in BROKEN.items():
        matching = [line for line in reported if name in line]
        assert len(matching) == 1, f"{name} not reported once: {reported}"
        assert mention in matching[0], matching[0]
    for name in GOOD:
        assert not any(Path(name).name in line for line in reported)
        hdr = read_hdr(out / f"{Path(name).name}.exr")
        assert hdr.shape == (24, 32, 3) and np.isfinite(hdr).all()


def test_batch_output_equals_a_single_scene_run(root, tmp_path, capsys):
    """A scene in a batch is reconstructed exactly as on its own (no state leaks between them)."""
    out = tmp_path / "out"
    assert main(["reconstruct", str(root), "-o", str(out), "--format", "exr",
                 "--no-progress"]) == 1
    for name in ("b_good", "h_good"):
        single = tmp_path / f"{name}-alone.exr"
        assert main(["reconstruct", str(root / name), "-o", str(single), "--no-progress"]) == 0
        assert single.read_bytes() == (out / f"{name}.exr").read_bytes()
    capsys.readouterr()


def test_all_broken_writes_nothing_and_fails(root, tmp_path, capsys):
    only_broken = tmp_path / "broken"
    for name in ("a_two_frames", "e_bad_exposure"):
        import shutil

        shutil.copytree(root / name, only_broken / name)
    out = tmp_path / "out"
    assert main(["reconstruct", str(only_broken), "-o", str(out), "--no-progress"]) == 1
    assert _all_files(out) == []
    assert "2 scene(s) failed" in capsys.readouterr().err
