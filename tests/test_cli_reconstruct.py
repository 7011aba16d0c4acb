"""``gmodiff simulate`` and ``gmodiff reconstruct`` end to end on tiny scenes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from gmodiff.cli import main
from gmodiff.io.hdr import declared_exposure, read_hdr
from gmodiff.io.scene import load_scene
from gmodiff.metrics import psnr_mu


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "scenes"
    code = main(["simulate", "procedural", str(root), "--count", "2", "--size", "48x32",
                 "--ev", "2", "--seed", "3", "--response", "gamma2.2", "--no-progress"])
    assert code == 0
    return root


def test_simulate_writes_scenes(scenes):
    assert sorted(p.name for p in scenes.iterdir()) == ["procedural_000", "procedural_001"]
    scene = load_scene(scenes / "procedural_000")
    assert scene.frames[0].shape == (32, 48, 3)
    np.testing.assert_allclose(scene.exposure_times, [1, 4, 16])


def test_reconstruct_one_scene(scenes, tmp_path, capsys):
    out, preview = tmp_path / "out.exr", tmp_path / "out.png"
    code = main(["reconstruct", str(scenes / "procedural_000"), "-o", str(out),
                 "--method", "classical", "--preview", str(preview)])
    assert code == 0
    assert "deghost" in capsys.readouterr().out
    hdr = read_hdr(out)
    scene = load_scene(scenes / "procedural_000")
    gt = scene.ground_truth
    # The file is in reference-white units and says so; the ground truth in the scene's units.
    assert declared_exposure(out) == pytest.approx(scene.reference_exposure)
    assert hdr.shape == gt.shape and psnr_mu(hdr / scene.reference_exposure, gt) > 25
    assert preview.stat().st_size > 0


def test_reconstruct_folder_reports_broken_scenes(scenes, tmp_path, capsys):
    root = tmp_path / "mixed"
    shutil.copytree(scenes, root)
    (root / "procedural_001" / "input_2.tif").write_bytes(b"not an image")
    out = tmp_path / "outs"
    code = main(["reconstruct", str(root), "-o", str(out), "--method", "merge",
                 "--no-progress"])
    assert code == 1
    assert sorted(p.name for p in out.iterdir()) == ["procedural_000.exr"]
    err = capsys.readouterr().err
    assert "1 scene(s) failed" in err and "input_2.tif" in err


@pytest.mark.parametrize("case", ["missing_exposure", "bad_method", "bad_extension", "no_scene"])
def test_reconstruct_bad_input_exits_2_without_output(case, scenes, tmp_path, capsys):
    scene = tmp_path / "scene"
    shutil.copytree(scenes / "procedural_000", scene)
    out = tmp_path / "out.exr"
    args = ["reconstruct", str(scene), "-o", str(out)]
    if case == "missing_exposure":
        # Without exposure.txt the folder is no scene at all.
        (scene / "exposure.txt").unlink()
    elif case == "bad_method":
        args += ["--method", "magic"]
    elif case == "bad_extension":
        out = tmp_path / "out.txt"
        args[3] = str(out)
    else:
        args[1] = str(tmp_path / "does-not-exist")
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]


def test_reconstruct_unreadable_frame_exits_2(scenes, tmp_path, capsys):
    scene = tmp_path / "scene"
    shutil.copytree(scenes / "procedural_000", scene)
    (scene / "input_1.tif").write_bytes(b"garbage")
    out = tmp_path / "out.hdr"
    assert main(["reconstruct", str(scene), "-o", str(out)]) == 2
    assert "input_1.tif" in capsys.readouterr().err
    assert not out.exists()


def test_simulate_bad_input_exits_2(tmp_path, capsys):
    assert main(["simulate", str(tmp_path / "missing.exr"), str(tmp_path / "out")]) == 2
    assert main(["simulate", "procedural", str(tmp_path / "out"), "--size", "big"]) == 2
    assert main(["simulate", "procedural", str(tmp_path / "out"), "--response", "x"]) == 2
    assert not (tmp_path / "out").exists()
