"""PSNR and SSIM on linear and μ-law tone-mapped HDR, as in spec §5.

PSNR-μ / SSIM-μ compare ``T(x) = ln(1 + 5000x) / ln(5001)``; PSNR-l / SSIM-l compare the linear
values. Data range is 1 for all four (ground truth lives in [0, 1]). SSIM uses an 11×11 Gaussian
window with σ = 1.5, population covariances, K1 = 0.01, K2 = 0.03, ignores the 5-pixel border
the window cannot cover, and averages over channels: the same numbers as
``skimage.metrics.structural_similarity(gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, channel_axis=-1)``, computed in float64.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.ndimage import gaussian_filter

from gmodiff.gainmap import TONEMAP_MU, tonemap

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
"""Gaussian cut-off in σ: radius int(3.5·1.5 + 0.5) = 5, i.e. an 11-pixel window."""
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _pair(pred, gt) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    if not (np.isfinite(pred).all() and np.isfinite(gt).all()):
        raise ValueError("images contain NaN or infinite values")
    return pred, gt


def psnr(pred: np.ndarray, gt: np.ndarray, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, ``10·log10(range² / MSE)`` (inf for identical images)."""
    pred, gt = _pair(pred, gt)
    mse = float(np.mean((pred - gt) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(data_range**2 / mse)


def _ssim_channel(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    def blur(img):
        return gaussian_filter(img, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect")

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x * mu_x
    var_y = blur(y * y) - mu_y * mu_y
    cov_xy = blur(x * y) - mu_x * mu_y
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    pad = int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5)
    return float(ssim_map[pad:-pad, pad:-pad].mean())


def ssim(pred: np.ndarray, gt: np.ndarray, data_range: float = 1.0) -> float:
    """Gaussian-window SSIM (11×11, σ 1.5) averaged over channels; (H, W) or (H, W, C) inputs."""
    pred, gt = _pair(pred, gt)
    if pred.ndim == 2:
        pred, gt = pred[..., None], gt[..., None]
    if pred.ndim != 3 or min(pred.shape[:2]) < 11:
        raise ValueError(f"SSIM needs (H, W[, C]) images of at least 11×11, got {pred.shape}")
    return float(np.mean([_ssim_channel(pred[..., c], gt[..., c], data_range)
                          for c in range(pred.shape[2])]))


def _mu(x: np.ndarray) -> np.ndarray:
    # T is undefined below -1/μ; HDR radiance is non-negative, so clamp stray negatives.
    return tonemap(np.maximum(np.asarray(x, dtype=np.float64), 0.0), TONEMAP_MU)


def psnr_l(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR on linear HDR, data range 1 (no clipping of the prediction)."""
    return psnr(pred, gt, 1.0)


def psnr_mu(pred: np.ndarray, gt: np.ndarray) -> float:
    """PSNR on μ-law tone-mapped HDR (μ = 5000), data range 1."""
    _pair(pred, gt)
    return psnr(_mu(pred), _mu(gt), 1.0)


def ssim_l(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM on linear HDR, data range 1."""
    return ssim(pred, gt, 1.0)


def ssim_mu(pred: np.ndarray, gt: np.ndarray) -> float:
    """SSIM on μ-law tone-mapped HDR (μ = 5000), data range 1."""
    _pair(pred, gt)
    return ssim(_mu(pred), _mu(gt), 1.0)
