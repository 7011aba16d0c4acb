"""EXIF exposure parsing and relative exposure (t · ISO/ISO_ref · (N_ref/N)²)."""

from __future__ import annotations

import numpy as np
import pytest
from bracket_helpers import exif_bytes, save_jpeg
from hypothesis import given, settings
from hypothesis import strategies as st

from gmodiff.errors import ExposureError, GmodiffError, ImageReadError
from gmodiff.io.exif import ExposureInfo, exposures_from_exif, parse_exif_bytes, read_exif, relative_exposures

GREY = np.full((8, 8, 3), 128, np.uint8)


def test_reads_time_iso_aperture_orientation(tmp_path):
    path = save_jpeg(tmp_path / "a.jpg", GREY, exif_bytes(1 / 250, iso=400, f_number=2.8, orientation=6))
    info = read_exif(path)
    assert info.exposure_time_seconds == pytest.approx(1 / 250)
    assert info.iso == 400
    assert info.f_number == pytest.approx(2.8)
    assert info.orientation == 6


def test_relative_exposure_folds_iso_and_aperture():
    infos = [ExposureInfo(1 / 100, 100, 4.0), ExposureInfo(1 / 100, 400, 4.0), ExposureInfo(1 / 100, 100, 2.0)]
    # ISO ×4 → 4× the exposure; f/2 instead of f/4 → 4× the light
    np.testing.assert_allclose(relative_exposures(infos), [1, 4, 4])


def test_iso_ignored_unless_every_frame_has_it():
    infos = [ExposureInfo(1 / 100, None, None), ExposureInfo(1 / 25, 800, None)]
    np.testing.assert_allclose(relative_exposures(infos), [1, 4])


def test_missing_exposure_time_names_the_file_and_the_flags(tmp_path):
    good = save_jpeg(tmp_path / "good.jpg", GREY, exif_bytes(1 / 50))
    bare = save_jpeg(tmp_path / "bare.jpg", GREY)
    with pytest.raises(ExposureError) as err:
        exposures_from_exif([good, bare])
    from gmodiff.errors import as_flags

    # The library names options as code spells them; both front ends show them as flags.
    assert "bare.jpg" in str(err.value) and "--ev -2,0,2" in as_flags(str(err.value))
    assert "\n" not in str(err.value)


def test_zero_denominator_is_treated_as_missing(tmp_path):
    import piexif

    block = piexif.dump({"Exif": {piexif.ExifIFD.ExposureTime: (1, 0)}})
    assert parse_exif_bytes(block).exposure_time_seconds is None


def test_not_an_image_is_an_image_read_error(tmp_path):
    path = tmp_path / "x.jpg"
    path.write_bytes(b"not a jpeg at all")
    with pytest.raises(ImageReadError):
        read_exif(path)


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=300))
def test_random_exif_bytes_never_crash(data):
    info = parse_exif_bytes(data)
    assert isinstance(info, ExposureInfo)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.integers(0, 400))
def test_corrupted_exif_in_a_jpeg_raises_only_our_errors(tmp_path_factory, noise, position):
    block = bytearray(exif_bytes(1 / 30, iso=200))
    position = min(position, len(block) - 1)
    block[position:position + len(noise)] = noise
    path = save_jpeg(tmp_path_factory.mktemp("fuzz") / "f.jpg", GREY)
    raw = path.read_bytes()
    # splice a (corrupt) APP1 Exif segment right after SOI
    payload = b"Exif\x00\x00" + bytes(block)[:60000]
    seg = b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload
    path.write_bytes(raw[:2] + seg + raw[2:])
    try:
        info = read_exif(path)
    except GmodiffError:
        return
    assert isinstance(info, ExposureInfo)


def test_tiff_exif_sub_ifd_and_ifd0_tags(tmp_path):
    from PIL import Image
    import tifffile

    pillow_tiff = tmp_path / "a.tif"
    Image.fromarray(GREY).save(pillow_tiff, exif=exif_bytes(1 / 125, iso=200, f_number=5.6))
    info = read_exif(pillow_tiff)
    assert (info.exposure_time_seconds, info.iso, info.f_number) == (pytest.approx(0.008), 200, pytest.approx(5.6))
    # 16-bit TIFF with ExposureTime / ISO written straight into IFD0 (as some converters do)
    raw_tiff = tmp_path / "b.tif"
    tifffile.imwrite(raw_tiff, np.zeros((8, 8, 3), np.uint16),
                     extratags=[(0x829A, 5, 1, (1, 250), True), (0x8827, 3, 1, 400, True)])
    info = read_exif(raw_tiff)
    assert info.exposure_time_seconds == pytest.approx(1 / 250) and info.iso == 400
