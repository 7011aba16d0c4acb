"""One brightness scale for every output: in .exr/.hdr files 1.0 is the reference frame's white,
whatever the bracket or method, the header says so, and the Ultra HDR JPEG decodes to it."""

from __future__ import annotations

import numpy as np
import pytest

from bracket_helpers import exif_bytes, expose, save_jpeg, scene_radiance
from gmodiff.bracket.prepare import load_bracket
from gmodiff.cli import main
from gmodiff.io.hdr import declared_exposure, read_hdr

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _bracket(folder, stops, radiance):
    folder.mkdir()
    return [save_jpeg(folder / f"f{i}.jpg", expose(radiance, 2.0 ** s), exif_bytes(2.0 ** s / 100))
            for i, s in enumerate(stops)]


def _level(hdr, radiance):
    """Median ratio of output to the 0 EV view's radiance where the 0 EV frame sees well."""
    seen = expose(radiance, 1.0) / 255.0
    well = (seen.min(axis=2) > 0.1) & (seen.max(axis=2) < 0.9)
    return float(np.median((hdr @ _LUMA)[well] / (radiance @ _LUMA)[well]))


@pytest.mark.parametrize("stops", [(-2, 0, 2), (-3, 0, 3), (-4, -2, 0, 2, 4), (0, 2), (-6, -3, 0, 3, 6)],
                         ids=str)
@pytest.mark.parametrize("method", ["merge", "deghost", "reference"])
def test_files_are_in_reference_white_units(tmp_path, capsys, stops, method):
    radiance = scene_radiance(48, 64, seed=4) * 0.6
    paths = _bracket(tmp_path / "b", stops, radiance)
    for suffix in (".exr", ".hdr"):
        out = tmp_path / f"o{suffix}"
        assert main(["reconstruct", *map(str, paths), "-o", str(out), "--method", method,
                     "--align", "none", "--quiet"]) == 0
        assert _level(read_hdr(out), radiance) == pytest.approx(1.0, abs=0.05)
        # The header states the factor from the scene's units (the shortest frame used = 1).
        selection = load_bracket(paths)[1]
        shortest_used = selection.stops[selection.used[0]]
        assert declared_exposure(out) == pytest.approx(2.0 ** -shortest_used, rel=1e-6)


def test_exr_header_names_the_reference_exposure(tmp_path, capsys):
    import OpenEXR

    radiance = scene_radiance(48, 64, seed=4) * 0.6
    paths = _bracket(tmp_path / "b", (-2, 0, 2), radiance)
    out = tmp_path / "o.exr"
    assert main(["reconstruct", *map(str, paths), "-o", str(out), "--method", "merge",
                 "--align", "none", "--quiet"]) == 0
    header = OpenEXR.File(str(out), header_only=True).parts[0].header
    # 1.0 in the file is white at the reference's shutter time (1/100 s here).
    assert header["expTime"] == pytest.approx(1 / 100, rel=1e-3)
    assert header["gmodiffExposure"] == pytest.approx(4.0)


def test_ultra_hdr_decodes_to_the_hdr_file(tmp_path, capsys):
    from gmodiff.io import ultrahdr

    radiance = scene_radiance(96, 128, seed=6) * 2.0  # highlights above the reference's white
    paths = _bracket(tmp_path / "b", (-2, 0, 2), radiance)
    outs = {}
    for suffix in (".jpg", ".exr"):
        outs[suffix] = tmp_path / f"o{suffix}"
        assert main(["reconstruct", *map(str, paths), "-o", str(outs[suffix]), "--method",
                     "merge", "--align", "none", "--quiet"]) == 0
    hdr = read_hdr(outs[".exr"])
    decoded = ultrahdr.read(outs[".jpg"])
    lit = (hdr @ _LUMA) > 0.05
    for values in (decoded.hdr, decoded.radiance):  # display-referred = file units by default
        stops = np.abs(np.log2(np.maximum(values[lit], 1e-6) / np.maximum(hdr[lit], 1e-6)))
        assert np.percentile(stops, 95) < 0.3, np.percentile(stops, 95)
        assert abs(np.median(np.log2((values @ _LUMA)[lit] / (hdr @ _LUMA)[lit]))) < 0.05
