"""Metrics: agreement with scikit-image, PU21 closed form, optional wrappers, evaluate_pair."""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from gmodiff.gainmap import tonemap
from gmodiff.metrics import (CORE_METRICS, MetricUnavailableError, available, cvvdp_jod,
                             evaluate_pair, hdr_flip, psnr_l, psnr_mu, pu21_encode, pu21_psnr,
                             pu21_ssim, ssim, ssim_l, ssim_mu)


def _pair(seed=0, h=24, w=31, noise=0.02):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    gt = np.stack([np.sin(6 * xx) * 0.4 + 0.5, yy * 0.9, (xx * yy) ** 2], -1)
    gt = np.clip(gt * rng.uniform(0.2, 1.0), 0, 1)
    pred = np.clip(gt + rng.normal(0, noise, gt.shape), 0, None)
    return pred, gt


def _sk_ssim(a, b, data_range=1.0):
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=data_range, channel_axis=-1 if a.ndim == 3 else None)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linear_and_mu_metrics_agree_with_skimage(seed):
    pred, gt = _pair(seed)
    assert psnr_l(pred, gt) == pytest.approx(peak_signal_noise_ratio(gt, pred, data_range=1), abs=1e-4)
    assert ssim_l(pred, gt) == pytest.approx(_sk_ssim(pred, gt), abs=1e-4)
    tp, tg = tonemap(pred), tonemap(gt)
    assert psnr_mu(pred, gt) == pytest.approx(peak_signal_noise_ratio(tg, tp, data_range=1), abs=1e-4)
    assert ssim_mu(pred, gt) == pytest.approx(_sk_ssim(tp, tg), abs=1e-4)


def test_metric_basics():
    pred, gt = _pair()
    assert psnr_l(gt, gt) == math.inf and ssim_l(gt, gt) == pytest.approx(1.0)
    # known value: a uniform error of 0.1 is 20 dB
    assert psnr_l(gt + 0.1, gt) == pytest.approx(20.0)
    # more noise, lower scores
    worse, _ = _pair(noise=0.1)
    assert psnr_mu(worse, gt) < psnr_mu(pred, gt) and ssim_mu(worse, gt) < ssim_mu(pred, gt)
    # grey images and data range
    assert ssim(gt[..., 0] * 255, pred[..., 0] * 255, 255) == pytest.approx(
        _sk_ssim(gt[..., 0] * 255, pred[..., 0] * 255, 255), abs=1e-4)
    with pytest.raises(ValueError, match="shape"):
        psnr_l(pred[:-1], gt)
    with pytest.raises(ValueError, match="11"):
        ssim_l(pred[:8, :8], gt[:8, :8])
    with pytest.raises(ValueError, match="NaN"):
        psnr_mu(np.full_like(gt, np.nan), gt)


def test_pu21_encoding_closed_form():
    values = pu21_encode(np.array([0.001, 0.005, 1.0, 100.0, 10000.0, 1e6]))
    assert values[0] == values[1]  # clamped at 0.005 cd/m²
    assert values[4] == values[5]  # clamped at 10000 cd/m²
    assert values[3] == pytest.approx(256.0, abs=1.0)  # 100 cd/m² ≈ 256 by design
    p = (0.353487901, 0.3734658629, 8.277049286e-05, 0.9062562627, 0.09150303166, 0.9099517204,
         596.3148142)
    y = 1.0
    expect = p[6] * (((p[0] + p[1] * y**p[3]) / (1 + p[2] * y**p[3])) ** p[4] - p[5])
    assert values[2] == pytest.approx(expect)
    grid = pu21_encode(np.logspace(-2.3, 4, 200))
    assert np.all(np.diff(grid) > 0) and grid.min() >= 0
    assert pu21_encode(100.0, "banding") != pytest.approx(values[3])
    with pytest.raises(ValueError, match="variant"):
        pu21_encode(1.0, "nope")


def test_pu21_metrics():
    pred, gt = _pair()
    assert pu21_psnr(gt, gt) == math.inf and pu21_ssim(gt, gt) == pytest.approx(1.0)
    # absolute scale comes from max(gt) = 1000 cd/m², so a global gain on both changes nothing
    assert pu21_psnr(pred * 7, gt * 7) == pytest.approx(pu21_psnr(pred, gt))
    assert pu21_ssim(pred * 7, gt * 7) == pytest.approx(pu21_ssim(pred, gt))
    worse, _ = _pair(noise=0.1)
    assert pu21_psnr(worse, gt) < pu21_psnr(pred, gt) < 80
    assert pu21_ssim(worse, gt) < pu21_ssim(pred, gt) < 1
    # matches a direct computation: PSNR with peak 256 on PU values of the scaled images
    scale = 1000 / gt.max()
    pu_p, pu_g = pu21_encode(pred * scale), pu21_encode(gt * scale)
    direct = 10 * math.log10(256**2 / np.mean((pu_p - pu_g) ** 2))
    assert pu21_psnr(pred, gt) == pytest.approx(direct)


@pytest.mark.skipif(any(available().values()), reason="optional metric packages installed")
def test_optional_metrics_absent():
    pred, gt = _pair()
    assert cvvdp_jod(pred, gt) is None and hdr_flip(pred, gt) is None
    with pytest.raises(MetricUnavailableError, match="metrics"):
        cvvdp_jod(pred, gt, required=True)
    with pytest.raises(MetricUnavailableError, match="flip-evaluator"):
        hdr_flip(pred, gt, required=True)


def test_evaluate_pair():
    pred, gt = _pair()
    scores = evaluate_pair(pred, gt, extra=True)
    assert list(scores)[:6] == list(CORE_METRICS)
    assert scores["psnr_l"] == pytest.approx(psnr_l(pred, gt))
    assert all(isinstance(v, float) for v in scores.values())


def test_broken_optional_package_gives_clear_error(tmp_path, monkeypatch):
    (tmp_path / "flip_evaluator.py").write_text("raise RuntimeError('operator torchvision::nms')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    # the real flip-evaluator (requirements.txt) may already be imported by an earlier test
    monkeypatch.delitem(sys.modules, "flip_evaluator", raising=False)
    pred, gt = _pair()
    with pytest.raises(MetricUnavailableError, match="fails to import.*torchvision::nms"):
        hdr_flip(pred, gt)
