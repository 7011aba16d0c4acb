"""One tone mapping: the --preview PNG is the Ultra HDR JPEG's SDR picture, for every
--preview-exposure choice."""

from __future__ import annotations

import numpy as np
import pytest

from gmodiff import errors
from gmodiff.io.preview import parse_preview_exposure, preview_gain


def _scene_dir(tmp_path):
    from dareg_helpers import write_scenes

    return write_scenes(tmp_path / "scenes", 1, height=48, width=64) / "scene00"


@pytest.mark.parametrize("choice", [None, "auto", "+1", "-0.5"])
def test_preview_png_matches_the_ultrahdr_sdr_picture(tmp_path, capsys, choice):
    import cv2

    from gmodiff.cli import main
    from gmodiff.io.ultrahdr import read

    out, png = tmp_path / "o.jpg", tmp_path / "p.png"
    args = ["reconstruct", str(_scene_dir(tmp_path)), "-o", str(out), "--preview", str(png),
            "--method", "merge", "--quiet"]
    if choice is not None:
        args += ["--preview-exposure", choice]
    assert main(args) == 0
    preview = cv2.imread(str(png), cv2.IMREAD_UNCHANGED)[:, :, ::-1].astype(np.float32)
    sdr = read(out).sdr.astype(np.float32)
    assert np.median(np.abs(preview - sdr)) <= 2.0  # JPEG error only


def test_choices_order_the_brightness():
    hdr = np.random.default_rng(0).uniform(0, 1, (8, 8, 3)).astype(np.float32)
    ref = preview_gain(hdr, "reference", 4.0)
    assert ref == 4.0
    assert preview_gain(hdr, 1.0, 4.0) == pytest.approx(8.0)
    assert preview_gain(hdr, "auto", 4.0) == pytest.approx(preview_gain(hdr, "auto"))
    assert parse_preview_exposure(None) == "reference"
    assert parse_preview_exposure("+1.5") == 1.5 and parse_preview_exposure("AUTO") == "auto"
    with pytest.raises(errors.ConfigError):
        parse_preview_exposure("bright")


def test_a_batch_keeps_preview_exposure(tmp_path, capsys):
    """Regression (round 2 review): a folder of scene folders dropped --preview-exposure, so
    every batch preview came out at the reference exposure whatever was asked."""
    import cv2

    from dareg_helpers import write_scenes
    from gmodiff.cli import main

    root = write_scenes(tmp_path / "scenes", 2, height=48, width=64)
    means = {}
    for choice in ("reference", "-2"):
        previews = tmp_path / f"previews{choice}"
        assert main(["reconstruct", str(root), "-o", str(tmp_path / f"out{choice}"), "--preview",
                     str(previews), "--method", "merge", "--quiet", "--no-progress",
                     "--preview-exposure", choice]) == 0
        pngs = sorted(previews.glob("*.png"))
        assert len(pngs) == 2
        means[choice] = np.mean([cv2.imread(str(p)).astype(np.float32).mean() for p in pngs])
    assert means["-2"] < 0.7 * means["reference"], means
