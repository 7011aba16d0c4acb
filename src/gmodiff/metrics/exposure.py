"""Where an HDR prediction's radiance level is wrong: per-band ratios and a gain-fitted PSNR-μ.

Two diagnostics that split global exposure errors from local ones:

- :func:`band_ratios`: the median of predicted / true luminance inside bands of true luminance
  given as a fraction of the ground truth's peak (default bands :data:`RADIANCE_BANDS`). A model
  that lifts deep shadows shows ratios well above 1 in the lowest bands and ≈ 1 near the peak.
- :func:`psnr_mu_gain_fitted`: PSNR-μ after the prediction is multiplied by the one gain per
  image that best matches the ground truth in log space (the median of log(pred / gt) over
  valid pixels). A large gain-fitted gain in PSNR-μ means a global level error; none means the
  error is local.

Luminance is Rec. 709 (the PU21 helper's); the ground truth is clipped at 1 by the simulator,
so pixels at or above :data:`CLIPPED_FRACTION` of the peak are left out of both fits.
"""

from __future__ import annotations

import math

import numpy as np

from gmodiff.metrics.pu21 import luminance
from gmodiff.metrics.quality import psnr_mu

RADIANCE_BANDS: tuple[tuple[float, float], ...] = (
    (0.0, 1e-4), (1e-4, 1e-3), (1e-3, 1e-2), (1e-2, 0.1), (0.1, 0.9))
"""Bands of true luminance as a fraction of the ground truth's peak luminance."""
CLIPPED_FRACTION = 0.9
"""Pixels of the ground truth at or above this fraction of its peak count as clipped."""


def _luminances(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    if pred.ndim == 3:
        return luminance(np.maximum(pred, 0.0)), luminance(np.maximum(gt, 0.0))
    return np.maximum(pred, 0.0), np.maximum(gt, 0.0)


def band_label(band: tuple[float, float]) -> str:
    """Short column label of a band, e.g. ``<1e-4`` or ``1e-3–1e-2``."""
    def fmt(value: float) -> str:
        return f"{value:g}" if value >= 0.1 else f"{value:.0e}".replace("e-0", "e-")

    lo, hi = band
    return f"<{fmt(hi)}" if lo <= 0 else f"{fmt(lo)}–{fmt(hi)}"


def band_ratios(pred: np.ndarray, gt: np.ndarray,
                bands: tuple[tuple[float, float], ...] = RADIANCE_BANDS,
                min_pixels: int = 50) -> list[float]:
    """Median predicted / true luminance per band of true luminance / peak (NaN: too few pixels).

    A band holds the pixels with ``lo ≤ gt / peak < hi`` and ``gt > 0``; fewer than
    ``min_pixels`` of them give NaN, so a scene without deep shadows does not vote on them.
    """
    pred_y, gt_y = _luminances(pred, gt)
    peak = float(gt_y.max()) if gt_y.size else 0.0
    if not math.isfinite(peak) or peak <= 0:
        raise ValueError("ground truth must have a positive, finite peak")
    relative = gt_y / peak
    ratios = []
    for lo, hi in bands:
        inside = (relative >= lo) & (relative < hi) & (gt_y > 0)
        if int(inside.sum()) < min_pixels:
            ratios.append(float("nan"))
            continue
        ratios.append(float(np.median(pred_y[inside] / gt_y[inside])))
    return ratios


def dark_fraction(gt: np.ndarray, threshold: float = 1e-3) -> float:
    """Fraction of pixels whose true luminance is below ``threshold`` × its peak."""
    gt_y = _luminances(gt, gt)[1]
    peak = float(gt_y.max())
    return float(np.mean(gt_y < threshold * peak)) if peak > 0 else 1.0


def fit_log_gain(pred: np.ndarray, gt: np.ndarray) -> float:
    """exp(median(log(pred / gt))) over unclipped pixels where both are positive (1 if none).

    Dividing the prediction by this gain removes its global exposure error.
    """
    pred_y, gt_y = _luminances(pred, gt)
    peak = float(gt_y.max()) if gt_y.size else 0.0
    valid = (pred_y > 0) & (gt_y > 0) & (gt_y < CLIPPED_FRACTION * peak)
    if not valid.any():
        return 1.0
    return float(np.exp(np.median(np.log(pred_y[valid] / gt_y[valid]))))


def psnr_mu_gain_fitted(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR-μ of ``pred / fit_log_gain(pred, gt)``, clipped to the ground truth's [0, 1] range."""
    gain = fit_log_gain(pred, gt)
    corrected = np.clip(np.asarray(pred, dtype=np.float64) / gain, 0.0, 1.0)
    return psnr_mu(corrected, gt)
