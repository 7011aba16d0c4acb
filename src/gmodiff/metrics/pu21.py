"""PU21 perceptually uniform encoding and PU21-PSNR / PU21-SSIM (spec §5).

PU21 (Mantiuk & Azimi, "PU21: A novel perceptually uniform encoding for adapting existing
quality metrics for HDR", PCS 2021) maps absolute luminance Y in cd/m², clamped to
[0.005, 10000], to

    V = max(p6 · (((p0 + p1·Y^p3) / (1 + p2·Y^p3))^p4 − p5), 0)

with fitted parameters per variant; ``banding_glare`` is the authors' recommended default. The
scale is such that 100 cd/m² encodes to about 256, so PU values read like 8-bit SDR code values.

How gmodiff uses it, following the authors' reference ``pu21_metric``:
- relative HDR is made absolute by one factor so that max(ground truth over all RGB values) is
  1000 cd/m² (the paper's protocol); the same factor is applied to the prediction;
- PU21-PSNR encodes each RGB channel and takes PSNR with peak 256 (pixels brighter than
  100 cd/m² encode above 256; the reference keeps the peak at 256 all the same);
- PU21-SSIM converts to luminance (Rec. 709 weights), encodes it and takes SSIM with dynamic
  range 256. Our SSIM is the Gaussian 11×11, σ 1.5 one of :mod:`gmodiff.metrics.quality`; the
  reference uses MATLAB's ``ssim`` (same window, replicate padding, no border crop), so values
  can differ in the third decimal on small images.
"""

from __future__ import annotations

import numpy as np

from gmodiff.metrics.quality import psnr, ssim

PU21_PARAMS: dict[str, tuple[float, ...]] = {
    "banding": (1.070275272, 0.4088273932, 0.153224308, 0.2520326168, 1.063512885, 1.14115047,
                521.4527484),
    "banding_glare": (0.353487901, 0.3734658629, 8.277049286e-05, 0.9062562627, 0.09150303166,
                      0.9099517204, 596.3148142),
    "peaks": (1.043882782, 0.6459495343, 0.3194584211, 0.374025247, 1.114783422, 1.095360363,
              384.9217577),
    "peaks_glare": (816.885024, 1479.463946, 0.001253215609, 0.9329636822, 0.06746643971,
                    1.573435413, 419.6006374),
}
PU21_L_MIN = 0.005
"""Lowest luminance (cd/m²) PU21 is defined for; darker values are clamped to it."""
PU21_L_MAX = 10000.0
"""Highest luminance (cd/m²) PU21 is defined for; brighter values are clamped to it."""
PU21_PEAK = 256.0
"""PSNR peak / SSIM dynamic range in PU units (≈ the encoding of 100 cd/m²)."""
DISPLAY_PEAK = 1000.0
"""Absolute luminance (cd/m²) the ground truth's maximum is mapped to."""
REC709_LUMINANCE = (0.212656, 0.715158, 0.072186)


def pu21_encode(luminance: np.ndarray, variant: str = "banding_glare") -> np.ndarray:
    """Encode absolute luminance (cd/m²) to PU21 values (≈ 0..600; 100 cd/m² → ≈ 256)."""
    try:
        p0, p1, p2, p3, p4, p5, p6 = PU21_PARAMS[variant]
    except KeyError:
        raise ValueError(f"unknown PU21 variant {variant!r}; "
                         f"use one of {sorted(PU21_PARAMS)}") from None
    y = np.clip(np.asarray(luminance, dtype=np.float64), PU21_L_MIN, PU21_L_MAX)
    y_p = y**p3
    return np.maximum(p6 * (((p0 + p1 * y_p) / (1.0 + p2 * y_p)) ** p4 - p5), 0.0)


def to_absolute(pred: np.ndarray, gt: np.ndarray, peak: float = DISPLAY_PEAK
                ) -> tuple[np.ndarray, np.ndarray]:
    """Scale both images by the one factor that makes max(gt) equal ``peak`` cd/m²."""
    pred = np.maximum(np.asarray(pred, dtype=np.float64), 0.0)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    top = float(gt.max()) if gt.size else 0.0
    if not np.isfinite(top) or top <= 0:
        raise ValueError("ground truth must have a positive, finite maximum")
    factor = peak / top
    return pred * factor, gt * factor


def luminance(rgb: np.ndarray) -> np.ndarray:
    """Rec. 709 / sRGB-primaries luminance of linear RGB (H, W, 3) → (H, W)."""
    return np.asarray(rgb, dtype=np.float64) @ np.asarray(REC709_LUMINANCE)


def pu21_psnr(pred: np.ndarray, gt: np.ndarray, peak: float = DISPLAY_PEAK,
              variant: str = "banding_glare") -> float:
    """PSNR (peak 256) of PU21-encoded RGB, both images scaled so max(gt) = 1000 cd/m²."""
    pred_abs, gt_abs = to_absolute(pred, gt, peak)
    return psnr(pu21_encode(pred_abs, variant), pu21_encode(gt_abs, variant), PU21_PEAK)


def pu21_ssim(pred: np.ndarray, gt: np.ndarray, peak: float = DISPLAY_PEAK,
              variant: str = "banding_glare") -> float:
    """SSIM (dynamic range 256) between PU21-encoded luminances, max(gt)=1000 cd/m²."""
    pred_abs, gt_abs = to_absolute(pred, gt, peak)
    if pred_abs.ndim == 3:
        pred_abs, gt_abs = luminance(pred_abs), luminance(gt_abs)
    return ssim(pu21_encode(pred_abs, variant), pu21_encode(gt_abs, variant), PU21_PEAK)
