"""The reference frame's EXIF reaches the Ultra HDR JPEG and the EXR, orientation reset to 1."""

from __future__ import annotations

import numpy as np
import piexif
import pytest
from PIL import Image

from bracket_helpers import expose, save_jpeg, scene_radiance
from gmodiff.io.metadata import read_metadata


def _camera_exif(seconds: float, orientation: int = 6) -> bytes:
    return piexif.dump({
        "0th": {piexif.ImageIFD.Make: b"Acme", piexif.ImageIFD.Model: b"Snapper 9",
                piexif.ImageIFD.Orientation: orientation},
        "Exif": {piexif.ExifIFD.ExposureTime: (round(seconds * 1e6), 1_000_000),
                 piexif.ExifIFD.ISOSpeedRatings: 200, piexif.ExifIFD.FNumber: (56, 10),
                 piexif.ExifIFD.DateTimeOriginal: b"2024:05:06 07:08:09"},
        "GPS": {piexif.GPSIFD.GPSLatitudeRef: b"N", piexif.GPSIFD.GPSLatitude: ((48, 1), (51, 1), (30, 1)),
                piexif.GPSIFD.GPSLongitudeRef: b"E", piexif.GPSIFD.GPSLongitude: ((2, 1), (21, 1), (0, 1))},
    })


@pytest.fixture()
def bracket(tmp_path):
    radiance = scene_radiance(40, 56)
    return [save_jpeg(tmp_path / f"f{i}.jpg", expose(radiance, 2.0 ** s), _camera_exif(2.0 ** s / 100))
            for i, s in enumerate([-2, 0, 2])]


def test_ultrahdr_jpeg_and_exr_carry_the_reference_exif(tmp_path, bracket, capsys):
    import OpenEXR

    from gmodiff.cli import main
    from gmodiff.io.ultrahdr import read

    jpg, exr = tmp_path / "o.jpg", tmp_path / "o.exr"
    for out in (jpg, exr):
        assert main(["reconstruct", *map(str, bracket), "-o", str(out), "--method", "merge",
                     "--align", "none", "--quiet"]) == 0
    with Image.open(jpg) as im:
        exif = im.getexif()
        sub = exif.get_ifd(0x8769)
        assert exif[0x010F] == "Acme" and exif[0x0110] == "Snapper 9"
        assert exif[0x0112] == 1  # the pixels are already upright
        assert sub[0x9003] == "2024:05:06 07:08:09"
        assert float(sub[0x829A]) == pytest.approx(0.01, rel=1e-3)  # the 0 EV reference frame
        assert 2 in exif.get_ifd(0x8825)  # GPS kept
    assert np.isfinite(read(jpg).hdr).all()  # still a valid Ultra HDR file for our reader
    header = OpenEXR.File(str(exr), header_only=True).parts[0].header
    assert header["cameraMake"] == "Acme" and header["capDate"] == "2024:05:06 07:08:09"
    assert header["expTime"] == pytest.approx(0.01, rel=1e-3) and header["isoSpeed"] == 200
    assert header["latitude"] == pytest.approx(48.858, abs=1e-3)


def test_frames_without_metadata_carry_nothing(tmp_path):
    path = save_jpeg(tmp_path / "plain.jpg", np.zeros((8, 8, 3), np.uint8))
    meta = read_metadata(path)
    assert meta.exif is None and not meta.attributes
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    assert read_metadata(tmp_path / "broken.jpg").exif is None
