"""Linear float DNG output (gmodiff.io.dng): read back by LibRaw (rawpy) and by tifffile."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pytest

from gmodiff.cli import main
from gmodiff.io.dng import DngMetadata, read_dng, write_dng
from gmodiff.io.hdr import read_hdr
from raw_helpers import raw_bracket, smooth_radiance

META = DngMetadata(make="Synthetica", model="Bayer One", orientation=1,
                   exposure_time_seconds=1 / 250, f_number=8.0, iso=200,
                   captured=datetime(2026, 12, 4, 10, 0, 1, 250000), focal_length_mm=35.0)


def _hdr(height: int = 40, width: int = 56, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.exp2(rng.uniform(-8, 5, (height, width, 3))).astype(np.float32)


def _stops(a, b):
    return np.abs(np.log2(np.maximum(a, 1e-12) / np.maximum(b, 1e-12)))


def test_tifffile_reads_the_radiance_and_tags_back(tmp_path):
    hdr = _hdr()
    path = tmp_path / "x.dng"
    write_dng(path, hdr, META, display_scale=4.0)
    back = read_dng(path)
    assert _stops(back.radiance / 4.0, hdr).max() < 1e-5  # float32: exact to rounding
    assert back.tags["PhotometricInterpretation"] == 34892 and back.tags["SampleFormat"] == (3, 3, 3)
    assert back.tags["Make"] == "Synthetica" and back.tags["Model"] == "Bayer One"
    assert tuple(back.tags["DNGVersion"]) == (1, 4, 0, 0)
    assert back.exif["ExposureTime"] == (1, 250) and back.exif["ISOSpeedRatings"] == 200
    assert back.exif["DateTimeOriginal"] == "2026:12:04 10:00:01"
    assert back.exif["SubsecTimeOriginal"] == "25"
    assert not list(tmp_path.glob(".*"))  # atomic: no temporary file left


def test_libraw_reads_the_float_dng(tmp_path):
    """An independent reader: LibRaw converts the floats to integers (peak → 16383), so the
    radiance ratios survive within 0.01 stops wherever the integers have the precision."""
    import rawpy

    hdr = _hdr()
    path = tmp_path / "x.dng"
    write_dng(path, hdr, META, display_scale=1.0)
    with rawpy.imread(str(path)) as raw:
        values = raw.raw_image.astype(np.float64)
        other = raw.other
        assert raw.num_colors == 3 and values.shape == hdr.shape
    stored = hdr / hdr.max()
    ok = stored > 0.02  # ≥ 330 of LibRaw's 16383 levels
    assert ok.mean() > 0.2
    ratio = np.log2(values[ok] / stored[ok])
    assert np.abs(ratio - np.median(ratio)).max() < 0.01
    assert other.shutter_speed == pytest.approx(1 / 250, rel=1e-4)
    assert other.aperture == pytest.approx(8.0) and other.iso_speed == pytest.approx(200)
    assert other.focal_length == pytest.approx(35.0)


@pytest.mark.parametrize("orientation", [6, 8, 3])
def test_orientation_is_the_cameras_and_readers_turn_the_pixels_upright(tmp_path, orientation):
    import rawpy

    hdr = _hdr(32, 48)  # LibRaw refuses images under 22 px on a side
    path = tmp_path / "o.dng"
    write_dng(path, hdr, DngMetadata(orientation=orientation))
    back = read_dng(path)
    assert back.tags["Orientation"] == orientation
    np.testing.assert_allclose(back.radiance, hdr, rtol=1e-6)
    with rawpy.imread(str(path)) as raw:
        assert raw.sizes.flip == {6: 6, 8: 5, 3: 3}[orientation]
        upright = raw.postprocess(gamma=(1, 1), no_auto_bright=True, output_bps=16,
                                  output_color=rawpy.ColorSpace.raw, user_flip=None)
    assert upright.shape == hdr.shape


def test_bad_values_and_no_partial_file(tmp_path):
    from gmodiff.errors import HDRValueError

    hdr = _hdr()
    hdr[0, 0, 0] = np.nan
    with pytest.raises(HDRValueError):
        write_dng(tmp_path / "x.dng", hdr)
    assert list(tmp_path.iterdir()) == []


def test_cli_writes_a_dng_of_a_raw_bracket_with_its_exif(tmp_path, capsys):
    """``gmodiff reconstruct *.dng -o x.dng``: the same radiance as the float EXR (0.01 stops),
    and the reference frame's camera, exposure and capture time."""
    import rawpy

    files = raw_bracket(tmp_path / "in", smooth_radiance(48, 64, seed=2), (1.0, 4.0, 16.0),
                        make="Synthetica", model="Bayer One", iso=400,
                        datetime="2026:12:04 10:00:07")
    args = ["reconstruct", *map(str, files), "--method", "deghost", "--no-progress",
            "--align", "none"]
    assert main([*args, "-o", str(tmp_path / "x.dng")]) == 0
    assert main([*args, "-o", str(tmp_path / "x.exr"), "--float"]) == 0
    capsys.readouterr()
    back = read_dng(tmp_path / "x.dng")
    reference = read_hdr(tmp_path / "x.exr")
    # Both files are in reference-white units: the EXR states the reference's exposure (4, the
    # scene's shortest frame being 1) in its header, the DNG holds it in BaselineExposure.
    bright = reference > 4e-3
    assert _stops(back.radiance[bright], reference[bright]).max() < 0.01
    assert back.tags["Make"] == "Synthetica" and back.exif["ISOSpeedRatings"] == 400
    assert back.exif["ExposureTime"] == (1, 250)  # the reference frame: 4 × 1/1000 s
    assert back.exif["DateTimeOriginal"] == "2026:12:04 10:00:07"
    with rawpy.imread(str(tmp_path / "x.dng")) as raw:
        assert raw.other.shutter_speed == pytest.approx(1 / 250, rel=1e-4)
