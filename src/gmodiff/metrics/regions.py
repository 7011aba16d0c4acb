"""PSNR-μ / PSNR-l restricted to the regions a refiner should improve (issue 17).

Whole-image PSNR is dominated by the well-exposed pixels any method gets right; the one-step
refiner is meant to help where the regressor cannot know the answer. Three regions, each a
boolean (H, W) mask in the reference frame's coordinates:

- ``clipped``: pixels clipped in the reference LDR frame (any channel ≥ :data:`CLIPPED_LEVEL`);
- ``unreliable``: pixels DaReg's DA mask marks as likely wrong (mask ≥ :data:`UNRELIABLE_LEVEL`;
  the mask is the probability that the gain map is wrong there, spec §3 stage 2);
- ``motion``: pixels covered by a moving object in any frame, as the simulator records it
  (``Scene.motion_mask``, ``motion_mask.png``), where that coverage is ≥ :data:`MOTION_LEVEL`.

A region with fewer than :data:`MIN_REGION_PIXELS` pixels gives NaN (no score), and means over
scenes skip NaN, so a scene without (say) clipped pixels does not count as a perfect score.
"""

from __future__ import annotations

import math

import numpy as np

from gmodiff.gainmap import TONEMAP_MU, tonemap
from gmodiff.metrics.quality import psnr

CLIPPED_LEVEL = 0.99
"""A reference-frame pixel is clipped when any channel of its LDR value reaches this."""
UNRELIABLE_LEVEL = 0.5
"""DA-mask probability from which DaReg's gain map counts as unreliable."""
MOTION_LEVEL = 0.5
"""Moving-object coverage (soft, from the simulator's alpha) from which a pixel is moving."""
MIN_REGION_PIXELS = 64
"""Smaller regions are not scored (too few pixels for a stable PSNR)."""
REGIONS = ("clipped", "unreliable", "motion")
"""Region names, in report order."""


def clipped_mask(reference: np.ndarray, level: float = CLIPPED_LEVEL) -> np.ndarray:
    """Pixels of the reference LDR frame (H, W, C) in [0, 1] with any channel ≥ ``level``."""
    reference = np.asarray(reference)
    if reference.ndim == 2:
        return reference >= level
    return np.any(reference >= level, axis=-1)


def unreliable_mask(da_mask: np.ndarray, level: float = UNRELIABLE_LEVEL) -> np.ndarray:
    """Pixels whose DA mask (H, W) (probability the gain map is wrong) is ≥ ``level``."""
    return np.asarray(da_mask) >= level


def motion_region(motion_mask: np.ndarray, level: float = MOTION_LEVEL) -> np.ndarray:
    """Pixels whose moving-object coverage (H, W) in [0, 1] is ≥ ``level``."""
    return np.asarray(motion_mask) >= level


def region_masks(reference: np.ndarray | None = None, da_mask: np.ndarray | None = None,
                 motion_mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """The boolean region masks that can be built from what is given (absent inputs are skipped)."""
    masks: dict[str, np.ndarray] = {}
    if reference is not None:
        masks["clipped"] = clipped_mask(reference)
    if da_mask is not None:
        masks["unreliable"] = unreliable_mask(da_mask)
    if motion_mask is not None:
        masks["motion"] = motion_region(motion_mask)
    return masks


def _masked(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    mask = np.asarray(mask, dtype=bool)
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    if mask.shape != gt.shape[:2]:
        raise ValueError(f"region mask shape {mask.shape} differs from the image's {gt.shape[:2]}")
    if int(mask.sum()) < MIN_REGION_PIXELS:
        return None
    return pred[mask], gt[mask]


def masked_psnr_l(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """PSNR on linear HDR (data range 1) over the pixels of ``mask``; NaN for a tiny region."""
    pair = _masked(pred, gt, mask)
    return math.nan if pair is None else psnr(pair[0], pair[1], 1.0)


def masked_psnr_mu(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> float:
    """PSNR on μ-law tone-mapped HDR (μ = 5000) over the pixels of ``mask``; NaN for a tiny region."""
    pair = _masked(pred, gt, mask)
    if pair is None:
        return math.nan
    # As psnr_mu: T is undefined below -1/μ and radiance is non-negative, so clamp stray negatives.
    pred_mu, gt_mu = (tonemap(np.maximum(x, 0.0), TONEMAP_MU) for x in pair)
    return psnr(pred_mu, gt_mu, 1.0)


def region_metrics(pred: np.ndarray, gt: np.ndarray, masks: dict[str, np.ndarray],
                   fractions: bool = False) -> dict[str, float]:
    """``psnr_mu_<region>`` and ``psnr_l_<region>`` per mask (plus ``frac_<region>``, the
    region's share of the pixels, with ``fractions``)."""
    scores: dict[str, float] = {}
    for name in [r for r in REGIONS if r in masks] + [r for r in masks if r not in REGIONS]:
        mask = masks[name]
        scores[f"psnr_mu_{name}"] = masked_psnr_mu(pred, gt, mask)
        scores[f"psnr_l_{name}"] = masked_psnr_l(pred, gt, mask)
        if fractions:
            scores[f"frac_{name}"] = float(np.mean(mask)) if mask.size else 0.0
    return scores


def nan_mean(values) -> float:
    """Mean of the finite-or-infinite values, skipping NaN (regions a scene lacks); NaN if none."""
    kept = [float(v) for v in values if not (isinstance(v, float) and math.isnan(v))]
    return sum(kept) / len(kept) if kept else math.nan
