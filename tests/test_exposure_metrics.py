"""Band ratios, dark fraction and the gain-fitted PSNR-μ (gmodiff.metrics.exposure)."""

import math

import numpy as np
import pytest

from gmodiff.metrics import (RADIANCE_BANDS, band_label, band_ratios, dark_fraction, fit_log_gain,
                             psnr_mu, psnr_mu_gain_fitted)


def _ladder(seed: int = 0) -> np.ndarray:
    """Grey radiance spanning 1e-6 .. 1 (peak exactly 1), 64×64×3."""
    rng = np.random.default_rng(seed)
    values = 10 ** rng.uniform(-6, 0, (64, 64))
    values[0, 0] = 1.0
    return np.repeat(values[..., None], 3, axis=-1).astype(np.float32)


def test_band_labels_match_the_issue_table():
    assert [band_label(b) for b in RADIANCE_BANDS] == [
        "<1e-4", "1e-4–1e-3", "1e-3–1e-2", "1e-2–0.1", "0.1–0.9"]


def test_uniform_gain_shows_in_every_band_and_is_fitted():
    gt = _ladder()
    ratios = band_ratios(1.7 * gt, gt)
    assert np.allclose(ratios, 1.7, rtol=1e-4)
    assert fit_log_gain(1.7 * gt, gt) == pytest.approx(1.7, rel=1e-4)


def test_lifted_shadows_show_only_in_the_low_bands():
    gt = _ladder(1)
    pred = np.where(gt < 1e-3, 3.0 * gt, gt)
    ratios = band_ratios(pred, gt)
    assert ratios[0] == pytest.approx(3.0, rel=1e-4) and ratios[1] == pytest.approx(3.0, rel=1e-4)
    assert ratios[2:] == pytest.approx([1.0, 1.0, 1.0], rel=1e-4)


def test_a_band_with_too_few_pixels_is_nan():
    gt = np.full((32, 32, 3), 0.5, np.float32)
    gt[0, 0] = 1.0
    ratios = band_ratios(gt, gt)
    assert all(math.isnan(r) for r in ratios[:4]) and ratios[4] == pytest.approx(1.0)


def test_gain_fitted_psnr_removes_a_global_level_error_only():
    gt = np.clip(_ladder(2), 0, 1)
    dark = 0.5 * gt
    assert psnr_mu(dark, gt) < 25 and math.isinf(psnr_mu_gain_fitted(dark, gt))
    # A local error (noise in half of the image) stays after the gain fit.
    rng = np.random.default_rng(3)
    local = gt.copy()
    local[:32] *= rng.uniform(0.5, 1.5, local[:32].shape).astype(np.float32)
    assert psnr_mu_gain_fitted(local, gt) == pytest.approx(psnr_mu(local, gt), abs=1.0)


def test_dark_fraction_counts_pixels_below_a_thousandth_of_the_peak():
    gt = np.full((10, 10, 3), 1e-4, np.float32)
    gt[:6] = 0.5
    gt[0, 0] = 1.0
    assert dark_fraction(gt) == pytest.approx(0.4)


def test_shape_mismatch_and_black_truth_are_refused():
    with pytest.raises(ValueError):
        band_ratios(np.ones((4, 4, 3)), np.ones((4, 5, 3)))
    with pytest.raises(ValueError):
        band_ratios(np.ones((4, 4, 3)), np.zeros((4, 4, 3)))
