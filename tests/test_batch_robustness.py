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


_ODD_SCENES = {  # valid but extreme scenes: (height, width, frame values, exposure times)
    "one_pixel": (1, 1, (0.2, 0.5, 0.9), (1.0, 4.0, 16.0)),
    "one_row": (1, 7, (0.2, 0.5, 0.9), (1.0, 4.0, 16.0)),
    "one_column": (7, 1, (0.2, 0.5, 0.9), (1.0, 4.0, 16.0)),
    "black": (16, 16, (0.0, 0.0, 0.0), (1.0, 4.0, 16.0)),
    "white": (16, 16, (1.0, 1.0, 1.0), (1.0, 4.0, 16.0)),
    "thirty_stops": (16, 16, (0.2, 0.5, 0.9), (1.0, 2.0**15, 2.0**30)),
}

_RUN_ALL_METHODS = r"""
import sys
from gmodiff.baselines import CLASSICAL_METHODS
from gmodiff.cli import main
root, out = sys.argv[1], sys.argv[2]
for method in ["classical", *CLASSICAL_METHODS]:
    print("RESULT", method, main(["reconstruct", root, "-o", f"{out}/{method}", "--method", method,
                        "--no-progress"]), flush=True)
"""


def test_extreme_but_valid_scenes_do_not_crash_any_method(tmp_path):
    """Run in a child: a native crash (OpenCV's AlignMTB segfaulted on 1-px-wide frames) would
    otherwise take the whole batch down with it."""
    import subprocess
    import sys

    from gmodiff.io.scene import Scene

    root = tmp_path / "odd"
    for name, (h, w, values, times) in _ODD_SCENES.items():
        frames = [np.full((h, w, 3), v, np.float32) for v in values]
        save_scene(Scene(frames=frames, exposure_times=np.array(times), name=name), root / name)
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    child = subprocess.run([sys.executable, "-c", _RUN_ALL_METHODS, str(root), str(tmp_path)],
                           env=env, capture_output=True, text=True, timeout=300)
    assert child.returncode == 0, f"child died ({child.returncode}) after: {child.stdout[-500:]}"
    codes = dict(line.split()[1:] for line in child.stdout.splitlines()
                 if line.startswith("RESULT "))
    assert codes and all(code == "0" for code in codes.values()), (codes, child.stderr[-2000:])
    for method in codes:
        outputs = sorted(p.stem for p in (tmp_path / method).glob("*.exr"))
        assert outputs == sorted(_ODD_SCENES), (method, outputs)
        for path in (tmp_path / method).glob("*.exr"):
            assert np.isfinite(read_hdr(path)).all(), (method, path.name)


def test_an_unexpected_exception_in_one_scene_does_not_stop_the_batch(root, tmp_path, capsys,
                                                                      monkeypatch):
    """A bug (not a user error) in one scene is reported as internal; the others are written."""
    import gmodiff.jobs as cli_reconstruct

    real = cli_reconstruct.reconstruct_one
    victim = Path(GOOD[0]).name

    def flaky(folder, *args, **kwargs):
        if Path(folder).name == victim:
            raise RuntimeError("simulated bug")
        return real(folder, *args, **kwargs)

    monkeypatch.setattr(cli_reconstruct, "reconstruct_one", flaky)
    out = tmp_path / "out"
    code = main(["reconstruct", str(root), "-o", str(out), "--format", "exr", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 1
    written = _all_files(out)
    assert f"{victim}.exr" not in written
    assert all(f"{Path(name).name}.exr" in written for name in GOOD[1:])
    assert any(victim in line and "internal error (RuntimeError: simulated bug)" in line
               for line in captured.err.splitlines())
