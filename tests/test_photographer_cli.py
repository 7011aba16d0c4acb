"""End to end: three handheld JPEG brackets with EXIF → .jpg (Ultra HDR), .exr, .hdr + preview;
bad brackets → exit 2, one stderr line, no output."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from bracket_helpers import exif_bytes, expose, save_jpeg, scene_radiance, write_bracket

from gmodiff.cli import main


def _well_exposed_ratio(hdr: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """HDR / truth over pixels a mid exposure sees well, away from the (realigned) borders."""
    mask = (truth > 0.02) & (truth < 0.8)
    mask[:6], mask[-6:], mask[:, :6], mask[:, -6:] = False, False, False, False
    return (hdr / np.maximum(truth, 1e-6))[mask]


@pytest.fixture(scope="module")
def bracket(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bracket")
    paths, reference_view, _ = write_bracket(folder, h=64, w=96, shift_fraction=0.04)
    # Output files are in reference-white units: the truth is the 0 EV view as it is.
    return paths, reference_view


@pytest.mark.parametrize("suffix", [".jpg", ".exr", ".hdr"])
def test_bracket_to_each_output_format(tmp_path, bracket, suffix, capsys):
    from gmodiff.io.hdr import read_hdr
    from gmodiff.io.ultrahdr import read

    paths, truth = bracket
    out, preview = tmp_path / f"photo{suffix}", tmp_path / "photo.png"
    code = main(["reconstruct", *map(str, paths), "-o", str(out), "--preview", str(preview),
                 "--method", "classical"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "reference: IMG_01.jpg" in captured.out + captured.err
    assert out.is_file() and preview.is_file()
    hdr = read(out).radiance if suffix == ".jpg" else read_hdr(out)
    assert hdr.shape == truth.shape
    ratio = _well_exposed_ratio(hdr, truth)
    # classical merge of aligned 8-bit JPEG frames: right exposure scale, few outliers
    assert abs(np.median(ratio) - 1) < 0.1
    assert np.mean(np.abs(ratio - 1) < 0.25) > 0.9
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, preview.name])


def test_ev_flag_and_float_exr(tmp_path):
    import OpenEXR

    paths, _, _ = write_bracket(tmp_path, with_exif=False)
    out = tmp_path / "out.exr"
    assert main(["reconstruct", *map(str, paths), "-o", str(out), "--ev", "0,-2,2", "--float",
                 "--align", "mtb", "--method", "classical"]) == 0
    with OpenEXR.File(str(out)) as exr:
        assert exr.channels()["RGB"].pixels.dtype == np.float32


def _frames(folder, stops, size=(32, 48)):
    folder.mkdir(exist_ok=True)
    rad = scene_radiance(*size)
    return [save_jpeg(folder / f"f{i}.jpg", expose(rad, 2.0 ** s), exif_bytes(2.0 ** s / 100))
            for i, s in enumerate(stops)]


def _single(folder):
    return _frames(folder, [0])


def _duplicate(folder):
    return _frames(folder, [0, 0, 2])


def _sizes(folder):
    paths = _frames(folder, [-2, 0])
    return [*paths, save_jpeg(folder / "big.jpg", expose(scene_radiance(40, 48), 4), exif_bytes(0.04))]


def _rotated(folder):
    paths = _frames(folder, [-2, 0])
    rotated = save_jpeg(folder / "rot.jpg", expose(scene_radiance(32, 48), 4), exif_bytes(0.04, orientation=6))
    return [*paths, rotated]


def _white(folder):
    folder.mkdir()
    white = np.full((16, 16, 3), 255, np.uint8)
    return [save_jpeg(folder / f"w{i}.jpg", white, exif_bytes(t)) for i, t in enumerate((0.01, 0.04))]


def _no_exif(folder):
    folder.mkdir()
    grey = np.full((16, 16, 3), 100, np.uint8)
    return [save_jpeg(folder / f"n{i}.jpg", grey) for i in range(2)]


def _corrupt(folder):
    paths = _frames(folder, [-2, 0, 2])
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    return paths


@pytest.mark.parametrize("make, match", [
    (_single, "at least 2 frames"), (_duplicate, "same exposure"), (_sizes, "same size"),
    (_rotated, "orientation"), (_white, "saturated"), (_no_exif, "--ev"), (_corrupt, "f1.jpg"),
])
def test_bad_bracket_exit_2_one_line_no_output(tmp_path, capsys, make, match):
    paths = make(tmp_path / "in")
    out_dir = tmp_path / "out"
    code = main(["reconstruct", *map(str, paths), "-o", str(out_dir / "photo.jpg"),
                 "--preview", str(out_dir / "photo.png"), "--method", "classical"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and match in err[0], err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_real_exit_code_from_python_m(tmp_path):
    paths = _corrupt(tmp_path / "in")
    out = tmp_path / "photo.exr"
    proc = subprocess.run([sys.executable, "-m", "gmodiff", "reconstruct", *map(str, paths), "-o", str(out),
                           "--method", "classical"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "f1.jpg" in proc.stderr
    assert not out.exists()


def test_unknown_output_extension_fails_before_reading(tmp_path):
    paths, _, _ = write_bracket(tmp_path)
    assert main(["reconstruct", *map(str, paths), "-o", str(tmp_path / "photo.png")]) == 2
    assert not (tmp_path / "photo.png").exists()


def test_bracket_flags_with_a_scene_folder_are_refused(tmp_path, capsys):
    from gmodiff.io.scene import Scene, save_scene

    frames = [np.full((8, 8, 3), v, np.float32) for v in (0.2, 0.5, 0.8)]
    save_scene(Scene(frames=frames, exposure_times=np.array([1.0, 4.0, 16.0])), tmp_path / "scene")
    code = main(["reconstruct", str(tmp_path / "scene"), "-o", str(tmp_path / "x.exr"), "--ev", "-2,0,2"])
    assert code == 2 and "image files" in capsys.readouterr().err
    assert not (tmp_path / "x.exr").exists()


def test_output_may_not_overwrite_an_input(tmp_path, capsys):
    paths, _, _ = write_bracket(tmp_path)
    before = paths[0].read_bytes()
    assert main(["reconstruct", *map(str, paths), "-o", str(paths[0])]) == 2
    assert "overwrite" in capsys.readouterr().err and paths[0].read_bytes() == before
