"""Camera raw input (gmodiff.io.raw, gmodiff.io.frames): synthetic 12-bit Bayer DNGs written here
with known radiance, white balance, colour matrix, black/white levels and exposure."""

from __future__ import annotations

import numpy as np
import pytest

from gmodiff.bracket.prepare import load_bracket
from gmodiff.inputs.canonical import canonical_encoder
from gmodiff.camera.radiance import GAMMA
from gmodiff.errors import ImageReadError, SceneError
from gmodiff.io.frames import RAW_ENCODING, RAW_GAMMA, decode_linear, frame_size, read_frame
from gmodiff.io.raw import read_raw, read_raw_info
from gmodiff.methods import available_methods, reconstruct_scene
from raw_helpers import raw_bracket, sensor_values, smooth_radiance, write_bayer_dng

TIMES = (1.0, 4.0, 16.0)
"""Relative exposures of the synthetic bracket (2 stops apart), t = 1 is 1/1000 s."""


def _well_exposed(encoded: np.ndarray, low: float = 0.08, high: float = 0.85) -> np.ndarray:
    """Pixels of a frame well inside its range (not clipped, not in the noise), 3 px from the edge."""
    linear = decode_linear(encoded)
    ok = (linear.min(axis=2) > low) & (linear.max(axis=2) < high)
    ok[:3], ok[-3:], ok[:, :3], ok[:, -3:] = False, False, False, False
    return ok


def _stops(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(np.log2(np.maximum(a, 1e-9) / np.maximum(b, 1e-9)))


@pytest.fixture(scope="module")
def radiance() -> np.ndarray:
    return smooth_radiance(64, 96, seed=1, stops=9.0)


@pytest.fixture(scope="module")
def bracket(tmp_path_factory, radiance):
    return raw_bracket(tmp_path_factory.mktemp("raw"), radiance, TIMES)


def test_raw_gamma_is_the_networks_gamma():
    assert RAW_GAMMA == GAMMA


def test_raw_reads_linear_srgb_with_levels_white_balance_and_matrix(bracket, radiance):
    """Black level subtracted, white level scaled, as-shot WB and the colour matrix undone:
    the decoded frame is the radiance times the exposure, in linear sRGB."""
    frame = read_raw(bracket[1])
    assert frame.linear.shape == (64, 96, 3) and frame.linear.dtype == np.float32
    ok = _well_exposed(frame.linear ** (1 / 2.2))
    assert ok.mean() > 0.2
    error = _stops(frame.linear[ok], radiance[ok] * TIMES[1])
    assert np.median(error) < 0.01 and error.max() < 0.05, (np.median(error), error.max())


def test_raw_exposure_and_tags_from_the_file(bracket):
    info = read_raw_info(bracket[2])
    assert info.exposure.exposure_time_seconds == pytest.approx(0.016, rel=1e-5)
    assert info.exposure.f_number == pytest.approx(8.0)
    assert info.exposure.iso == pytest.approx(100)
    assert (info.make, info.model) == ("Synthetica", "Bayer One")
    assert info.timestamp is not None and info.timestamp.year == 2026


def test_raw_frames_are_linear_across_the_bracket(bracket, radiance):
    """One scale for every frame (no per-frame "adjust maximum"): 4× the exposure, 4× the value."""
    a, b = read_raw(bracket[0]).linear, read_raw(bracket[1]).linear
    ok = _well_exposed(a ** (1 / 2.2), 0.02, 0.2)
    ratio = np.median(b[ok] / a[ok])
    assert ratio == pytest.approx(4.0, rel=0.01)


def test_raw_bracket_is_a_known_curve_scene(bracket):
    scene, selection = load_bracket(bracket)
    assert scene.encoding == RAW_ENCODING
    assert selection.exposure_source == "exif"
    np.testing.assert_allclose(scene.exposure_times, TIMES, rtol=1e-5)
    # the canonical re-encoding (models with canonical_inputs) passes raw frames through as they
    # are: no camera curve is estimated for them
    encoded = canonical_encoder(scene)(scene.frames)
    for a, b in zip(encoded, scene.frames):
        np.testing.assert_array_equal(a, b)
    assert frame_size(bracket[0]) == (64, 96)


@pytest.mark.parametrize("method", [m for m in available_methods() if m != "dareg"])
def test_every_method_reconstructs_a_raw_bracket(bracket, radiance, method):
    scene, _ = load_bracket(bracket)
    result = reconstruct_scene(scene, method)
    assert result.hdr.shape == radiance.shape
    assert np.all(np.isfinite(result.hdr)) and result.hdr.min() >= 0


def test_deghost_is_exact_where_a_frame_is_well_exposed(bracket, radiance):
    """The curve is known, so the classical merge gives the radiance back (0.05 stops) wherever
    any frame of the bracket exposed it well."""
    scene, _ = load_bracket(bracket)
    hdr = reconstruct_scene(scene, "deghost").hdr
    ok = np.zeros(radiance.shape[:2], bool)
    for frame in scene.frames:
        ok |= _well_exposed(frame)
    assert ok.mean() > 0.5
    error = _stops(hdr[ok], radiance[ok])
    assert error.max() < 0.05, (float(np.median(error)), float(error.max()))


def test_dng_orientation_is_applied(tmp_path, radiance):
    path = write_bayer_dng(tmp_path / "portrait.dng", sensor_values(radiance, 4.0), 0.004,
                           orientation=6)
    frame = read_raw(path)
    assert frame.linear.shape == (96, 64, 3) and frame.info.orientation == 6
    assert frame_size(path) == (96, 64)


@pytest.mark.parametrize("orientation", [1, 6, 8])
def test_clipped_sensor_values_make_the_pixel_white_in_the_upright_image(tmp_path, radiance,
                                                                         orientation):
    """Where a sensor value clips, the matrix would make the pixel's other channels wrong: the
    whole pixel is white, at the right place after the rotation."""
    exposure = 16.0
    path = write_bayer_dng(tmp_path / "o.dng", sensor_values(radiance, exposure), 0.016,
                           orientation=orientation)
    white = read_raw(path).linear.min(axis=2) >= 1.0
    camera = (radiance * exposure) @ np.array([[0.8, 0.15, 0.05], [0.1, 0.8, 0.1],
                                               [0.05, 0.2, 0.75]]).T * [0.5, 1.0, 0.7]
    expected = np.rot90(camera.max(axis=2) >= 1.0, {1: 0, 6: 3, 8: 1}[orientation])
    assert white.shape == expected.shape
    inner = expected & (np.rot90(camera.max(axis=2), {1: 0, 6: 3, 8: 1}[orientation]) > 1.1)
    assert inner.sum() > 100 and white[inner].all()
    assert not white[np.rot90(camera.max(axis=2) < 0.8, {1: 0, 6: 3, 8: 1}[orientation])].any()


def test_mixing_raw_and_jpeg_is_refused(tmp_path, bracket):
    from bracket_helpers import exif_bytes, save_jpeg

    jpeg = save_jpeg(tmp_path / "x.jpg", np.full((64, 96, 3), 120, np.uint8), exif_bytes(1 / 60))
    with pytest.raises(SceneError, match="mixes raw"):
        load_bracket([bracket[0], bracket[1], jpeg])


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty", "tiff-not-raw"])
def test_bad_raw_files_are_one_line_errors(tmp_path, bracket, damage):
    path = tmp_path / "bad.dng"
    data = bracket[1].read_bytes()
    if damage == "garbage":
        path.write_bytes(b"this is not a raw file at all" * 10)
    elif damage == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "empty":
        path.write_bytes(b"")
    else:
        import tifffile

        tifffile.imwrite(path, np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageReadError) as info:
        read_frame(path)
    message = str(info.value)
    assert "bad.dng" in message and "\n" not in message
