"""Bracket simulator, camera responses and radiance sources (spec §6)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from gmodiff.camera.response import (
    RESPONSE_FAMILIES,
    GammaResponse,
    SRGBResponse,
    random_response,
    response_by_name,
)
from gmodiff.data.simulate import SimulationConfig, simulate, simulate_scene, simulate_to_folder
from gmodiff.data.sources import perspective_views, procedural_radiance
from gmodiff.errors import ConfigError, HDRValueError
from gmodiff.gainmap import GM_OFFSET

H, W = 48, 64


@pytest.fixture(scope="module")
def radiance() -> np.ndarray:
    return procedural_radiance(H, W, seed=4)


@pytest.mark.parametrize("family", RESPONSE_FAMILIES)
def test_responses_are_monotone_unit_curves_with_inverse(family):
    rng = np.random.default_rng(1)
    for _ in range(5):
        response = random_response(rng, family)
        x = np.linspace(0.0, 1.0, 2001)
        y = response.forward(x)
        assert y[0] == pytest.approx(0.0, abs=1e-6) and y[-1] == pytest.approx(1.0, abs=1e-6)
        assert np.all(np.diff(y.astype(np.float64)) >= 0), response.name
        assert np.abs(response.inverse(y) - x).max() < 1e-4, response.name


def test_response_names():
    assert response_by_name("gamma2.2") == GammaResponse(2.2)
    assert isinstance(response_by_name("sRGB"), SRGBResponse)
    with pytest.raises(ConfigError):
        response_by_name("banana")


def test_procedural_radiance_has_high_dynamic_range():
    for seed in range(4):
        rad = procedural_radiance(64, 96, seed)
        assert rad.shape == (64, 96, 3) and rad.dtype == np.float32
        assert rad.min() >= 0 and np.isfinite(rad).all()
        dark = np.percentile(rad.mean(axis=-1), 1)
        assert rad.max() / dark >= 1e4
    assert not np.array_equal(procedural_radiance(32, 32, 0), procedural_radiance(32, 32, 1))


def test_perspective_views_sample_the_panorama():
    # A panorama whose radiance is the longitude: a view looking anywhere sees a smooth ramp.
    pano = np.repeat(np.linspace(1.0, 2.0, 128, dtype=np.float32)[None, :, None], 64, 0)
    pano = np.repeat(pano, 3, axis=2)
    views = perspective_views(pano, 3, fov_deg=60, size=(20, 30), rng=0)
    assert len(views) == 3 and all(v.shape == (20, 30, 3) for v in views)
    for view in views:
        assert 1.0 <= view.min() and view.max() <= 2.0
    again = perspective_views(pano, 3, fov_deg=60, size=(20, 30), rng=0)
    assert all(np.array_equal(a, b) for a, b in zip(views, again))


def test_simulated_scene_shapes_and_exposures(radiance):
    for ev in (2.0, 3.0):
        scene = simulate_scene(radiance, SimulationConfig(ev_spacing_stops=ev), seed=0)
        assert len(scene.frames) == 3 and scene.reference_index == 1
        np.testing.assert_allclose(scene.exposure_times, [1.0, 2**ev, 2 ** (2 * ev)])
        for frame in scene.frames:
            assert frame.shape == (H, W, 3) and frame.dtype == np.float32
            assert frame.min() >= 0 and frame.max() <= 1
            # 16-bit quantised values
            np.testing.assert_allclose(frame * 65535, np.rint(frame * 65535), atol=1e-2)
        gt = scene.ground_truth
        assert gt.shape == (H, W, 3) and 0 <= gt.min() and gt.max() <= 1
        means = [float(f.mean()) for f in scene.frames]
        assert means[0] < means[1] < means[2]


def test_same_seed_same_scene_other_seed_differs(radiance):
    config = SimulationConfig(ev_spacing_stops=(2.0, 3.0))
    a = simulate_scene(radiance, config, seed=7)
    b = simulate_scene(radiance, config, seed=7)
    c = simulate_scene(radiance, config, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
    assert np.array_equal(a.ground_truth, b.ground_truth)
    assert not np.array_equal(a.frames[1], c.frames[1])


def test_motion_only_on_non_reference_frames(radiance):
    base = dict(ev_spacing_stops=2.0, noise=False, response="gamma2.2")
    still = simulate(radiance, SimulationConfig(motion=False, **base), seed=3)
    moving = simulate(radiance, SimulationConfig(motion=True, moving_objects=(2, 2), **base),
                      seed=3)
    # Without noise the reference frame is a pure function of the ground truth...
    ref = moving.scene.reference
    expected = np.rint(np.clip(moving.scene.ground_truth * 4.0, 0, 1) ** (1 / 2.2) * 65535) / 65535
    np.testing.assert_allclose(ref, expected, atol=2 / 65535)
    assert not moving.motion_masks[1].any()
    np.testing.assert_array_equal(moving.shakes[1], np.eye(2, 3))
    # ...while the other frames moved (camera shake and objects).
    for k in (0, 2):
        assert moving.motion_masks[k].max() > 0.5
        assert not np.allclose(moving.shakes[k], np.eye(2, 3))
    # The static simulation's frames are consistent exposures of its ground truth.
    for k, t in enumerate(still.scene.exposure_times):
        linear = np.clip(still.scene.ground_truth * t, 0, 1)
        np.testing.assert_allclose(still.scene.frames[k], linear ** (1 / 2.2), atol=1e-3)


def test_ground_truth_bound_holds_for_gamma_22(radiance):
    for seed in range(3):
        for ev in (2.0, 3.0):
            scene = simulate_scene(radiance, SimulationConfig(ev_spacing_stops=ev,
                                                              response="gamma2.2"), seed=seed)
            assert np.all(scene.ground_truth <= scene.reference + GM_OFFSET)


@pytest.mark.parametrize("family", RESPONSE_FAMILIES)
def test_gain_map_ratio_never_clips_for_any_response(radiance, family):
    # With >= 2 stops to the reference, every drawn curve keeps H / (L_ref + 1/64) <= 1.
    for seed in range(2):
        scene = simulate_scene(radiance, SimulationConfig(response=family), seed=seed)
        assert np.all(scene.ground_truth / (scene.reference + GM_OFFSET) <= 1.0)


def test_bad_radiance_rejected():
    with pytest.raises(HDRValueError):
        simulate_scene(np.full((16, 16, 3), np.nan, np.float32))
    with pytest.raises(HDRValueError):
        simulate_scene(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ConfigError):
        SimulationConfig(ev_spacing_stops=9.0)


def _digest(folder) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_simulate_to_folder_is_byte_identical(tmp_path):
    config = SimulationConfig(size=(32, 48), ev_spacing_stops=3.0)
    first = simulate_to_folder("procedural", tmp_path / "a", config, seed=5, count=2,
                               progress=False)
    simulate_to_folder("procedural", tmp_path / "b", config, seed=5, count=2, progress=False)
    assert [p.name for p in first] == ["procedural_000", "procedural_001"]
    names = sorted(p.name for p in first[0].iterdir())
    # motion_mask.png (issue 17) is the only addition; the other files' bytes did not change.
    assert names == ["HDRImg.hdr", "exposure.txt", "input_1.tif", "input_2.tif", "input_3.tif",
                     "motion_mask.png"]
    assert (first[0] / "exposure.txt").read_text().split() == ["0", "3", "6"]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
