"""Full-reference HDR quality metrics (spec §5).

``psnr_mu, psnr_l, ssim_mu, ssim_l`` follow the paper's protocol (μ = 5000, data range 1,
Gaussian SSIM); ``pu21_psnr, pu21_ssim`` use the PU21 encoding with max(GT) = 1000 cd/m²;
``cvvdp_jod`` (run in the metrics environment, ``make metrics-env``) and ``hdr_flip`` wrap
optional packages; :class:`ExtraMetrics` scores them over many pairs. :func:`evaluate_pair`
computes them all.
"""

from __future__ import annotations

import numpy as np

from gmodiff.errors import MetricsEnvError
from gmodiff.metrics.cvvdp_env import CvvdpSession
from gmodiff.metrics.exposure import (RADIANCE_BANDS, band_label, band_ratios, dark_fraction,
                                      fit_log_gain, psnr_mu_gain_fitted)
from gmodiff.metrics.external import MetricUnavailableError, available, cvvdp_jod, hdr_flip
from gmodiff.metrics.extra import EXTRA_METRICS, ExtraMetrics, parse_extra
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


def evaluate_pair(pred: np.ndarray, gt: np.ndarray, extra: bool | ExtraMetrics = False
                  ) -> dict[str, float]:
    """All core metrics of ``pred`` against ``gt``, plus ``extra``'s optional ones.

    ``extra=True`` adds cvvdp/FLIP where they can run (cvvdp through the process's shared
    worker); an :class:`ExtraMetrics` adds exactly its chosen metrics, which must run.
    """
    pred = np.asarray(pred)
    gt = np.asarray(gt)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    scores = {name: float(fn(pred, gt)) for name, fn in CORE_METRICS.items()}
    if isinstance(extra, ExtraMetrics):
        scores.update(extra.score(pred, gt))
    elif extra:
        with ExtraMetrics(required=False) as session:
            scores.update(session.score(pred, gt))
    return scores


__all__ = [
    "CORE_METRICS", "EXTRA_METRICS", "CvvdpSession", "ExtraMetrics", "MetricUnavailableError",
    "MetricsEnvError", "RADIANCE_BANDS", "available", "band_label", "band_ratios", "cvvdp_jod",
    "dark_fraction", "evaluate_pair", "fit_log_gain", "hdr_flip", "parse_extra", "psnr", "psnr_l",
    "psnr_mu", "psnr_mu_gain_fitted", "pu21_encode", "pu21_psnr", "pu21_ssim", "ssim", "ssim_l",
    "ssim_mu",
]
