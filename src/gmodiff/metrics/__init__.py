"""Full-reference HDR quality metrics (spec §5).

``psnr_mu, psnr_l, ssim_mu, ssim_l`` follow the paper's protocol (μ = 5000, data range 1,
Gaussian SSIM); ``pu21_psnr, pu21_ssim`` use the PU21 encoding with max(GT) = 1000 cd/m²;
``cvvdp_jod`` and ``hdr_flip`` wrap optional packages. :func:`evaluate_pair` computes them all.
"""

from __future__ import annotations

import numpy as np

from gmodiff.metrics.exposure import (RADIANCE_BANDS, band_label, band_ratios, dark_fraction,
                                      fit_log_gain, psnr_mu_gain_fitted)
from gmodiff.metrics.external import MetricUnavailableError, available, cvvdp_jod, hdr_flip
from gmodiff.metrics.pu21 import pu21_encode, pu21_psnr, pu21_ssim
from gmodiff.metrics.quality import psnr, psnr_l, psnr_mu, ssim, ssim_l, ssim_mu

CORE_METRICS = {
    "psnr_mu": psnr_mu,
    "psnr_l": psnr_l,
    "ssim_mu": ssim_mu,
    "ssim_l": ssim_l,
    "pu21_psnr": pu21_psnr,
    "pu21_ssim": pu21_ssim,
}
"""Metrics computed for every pair, in report order (higher is better for all)."""


def evaluate_pair(pred: np.ndarray, gt: np.ndarray, extra: bool = False) -> dict[str, float]:
    """All core metrics of ``pred`` against ``gt``; with ``extra``, also cvvdp/FLIP if installed."""
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    scores = {name: float(fn(pred, gt)) for name, fn in CORE_METRICS.items()}
    if extra:
        for name, fn in (("cvvdp_jod", cvvdp_jod), ("hdr_flip", hdr_flip)):
            value = fn(pred, gt)
            if value is not None:
                scores[name] = value
    return scores


__all__ = [
    "CORE_METRICS", "MetricUnavailableError", "RADIANCE_BANDS", "available", "band_label",
    "band_ratios", "cvvdp_jod", "dark_fraction", "evaluate_pair", "fit_log_gain", "hdr_flip",
    "psnr", "psnr_l", "psnr_mu", "psnr_mu_gain_fitted", "pu21_encode", "pu21_psnr", "pu21_ssim",
    "ssim", "ssim_l", "ssim_mu",
]
