"""Global alignment: ECC recovers a known sub-pixel shift, MTB an integer one, fallbacks warn."""

from __future__ import annotations

import numpy as np
import pytest

from gmodiff.bracket.align import align_frames, align_scene, warp_frame
from gmodiff.errors import ConfigError
from gmodiff.io.scene import Scene


def _radiance(h: int, w: int, dx: float = 0.0, dy: float = 0.0) -> np.ndarray:
    """Smooth analytic scene sampled at (x - dx, y - dy): an exact sub-pixel shift."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    x, y = (xx - dx) / w, (yy - dy) / h
    base = (0.05 + 0.4 * np.sin(9 * x + 2 * y) ** 2
            + 1.2 * np.exp(-((x - 0.6) ** 2 + (y - 0.4) ** 2) / 0.01)
            + 0.2 * np.cos(13 * y * x + 5 * y) ** 2)
    rgb = np.stack([base, 0.8 * base + 0.05, 0.6 * base + 0.1], -1)
    return np.maximum(rgb, 0.01).astype(np.float32)


def _frame(h, w, shift, t):
    return np.clip((_radiance(h, w, *shift) * t / 4) ** (1 / 2.2), 0, 1).astype(np.float32)


H, W = 96, 128
TIMES = [1.0, 4.0, 16.0]
SHIFTS = [(3.3, -2.6), (0.0, 0.0), (-4.2, 1.7)]


def _displacement(h: np.ndarray) -> np.ndarray:
    centre = h @ np.array([W / 2, H / 2, 1.0])
    return centre[:2] / centre[2] - [W / 2, H / 2]


def test_ecc_recovers_known_subpixel_shift_within_half_a_pixel():
    frames = [_frame(H, W, s, t) for s, t in zip(SHIFTS, TIMES)]
    result = align_frames(frames, TIMES, 1, "ecc")
    assert result.methods == ["ecc", "reference", "ecc"]
    assert result.warnings == []
    for h, shift in zip(result.homographies, SHIFTS):
        assert np.abs(_displacement(h) - shift).max() < 0.5
    # the warped frame now matches the reference view where it is well exposed
    aligned = result.frames[0] ** 2.2 / TIMES[0]
    target = _frame(H, W, (0, 0), TIMES[0]) ** 2.2 / TIMES[0]
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(aligned[inner] - target[inner]).mean() < 0.1 * np.abs(
        frames[0][inner] ** 2.2 / TIMES[0] - target[inner]).mean()


def test_mtb_recovers_integer_shift():
    shifts = [(3.0, -3.0), (0.0, 0.0), (-4.0, 2.0)]
    frames = [_frame(H, W, s, t) for s, t in zip(shifts, TIMES)]
    result = align_frames(frames, TIMES, 1, "mtb")
    assert result.methods == ["mtb", "reference", "mtb"]
    for h, shift in zip(result.homographies, shifts):
        np.testing.assert_allclose(_displacement(h), shift, atol=1.0)


def test_none_leaves_frames_untouched():
    frames = [_frame(H, W, s, t) for s, t in zip(SHIFTS, TIMES)]
    result = align_frames(frames, TIMES, 1, "none")
    assert all(a is b for a, b in zip(result.frames, frames))


def test_unalignable_frame_falls_back_with_a_warning(capfd, caplog):
    rng = np.random.default_rng(0)
    frames = [rng.random((H, W, 3)).astype(np.float32), _frame(H, W, (0, 0), 4.0),
              np.zeros((H, W, 3), np.float32)]
    result = align_frames(frames, TIMES, 1, "ecc")
    assert result.methods[1] == "reference"
    assert result.warnings, "a failed fit must be reported"
    assert all(m in ("ecc", "mtb", "identity") for m in (result.methods[0], result.methods[2]))
    assert result.methods[2] == "identity"  # a black frame has nothing to align on
    # Warnings are returned, not printed: the CLI reports each one exactly once.
    assert capfd.readouterr().err == ""
    assert not [r for r in caplog.records if r.name.startswith("gmodiff")]


def test_align_scene_keeps_exposures_and_reference():
    frames = [_frame(H, W, s, t) for s, t in zip(SHIFTS, TIMES)]
    scene = Scene(frames=frames, exposure_times=np.array(TIMES), reference_index=1)
    aligned, result = align_scene(scene, "ecc")
    assert aligned.reference is scene.reference
    np.testing.assert_array_equal(aligned.exposure_times, scene.exposure_times)


def test_unknown_method_is_a_config_error():
    with pytest.raises(ConfigError):
        align_frames([np.zeros((8, 8, 3), np.float32)] * 2, [1, 2], 0, "sift")


def test_identity_warp_is_exact():
    frame = _frame(H, W, (0, 0), 4.0)
    np.testing.assert_allclose(warp_frame(frame, np.eye(3)), frame, atol=1e-6)


def test_handheld_jpeg_bracket_is_aligned(tmp_path):
    from bracket_helpers import write_bracket

    from gmodiff.bracket.prepare import load_bracket

    paths, _, displacements = write_bracket(tmp_path, h=96, w=128, shift_fraction=0.04)
    scene, _ = load_bracket(paths)
    _, result = align_scene(scene, "ecc")
    assert result.methods == ["ecc", "reference", "ecc"]
    for h, stop in zip(result.homographies, (-2.0, 0.0, 2.0)):
        assert np.abs(h[:2, 2] - displacements[stop]).max() < 0.5
