"""What the three network frames leave out of a plain bracket, put back after reconstruction.

- **Frames beyond the chosen ones** (e.g. −6 and +6 EV when the network takes −3/0/+3): the
  network never sees them, so their range would be lost. They are merged classically into the
  result where the network's own outermost frame has no data: a darker frame fills highlights where
  the short frame is clipped, a brighter one fills shadows where the long frame is near black.
  Nearest frames first, each only where the previous source failed, with smooth weights.
  An extra frame shot at another moment may show a moving object (or miss one): it is merged
  only where it agrees with the frame it stands in for (:func:`agreement`), so a moving object
  seen only in an extra frame leaves no trace.
- **Brackets with a reused slot** (two frames, or a reference at one end): the network sees a
  duplicated frame it was never trained on and its output level drifts (0.6–0.8 stops dark on
  two-frame brackets with the bundled model), and not by one gain: on 0/+2 brackets its shadows
  came out ~0.5 stop dark and its bright areas ~0.2–0.5 stop bright once the median was right.
  So the result gets a tone curve, not a gain: per band of its own luminance, the ratio of
  medians to the reference frame's radiance (``LDR^2.2 / t``, the convention every classical
  merge here uses) on the reference's well-exposed pixels, kept monotone and held flat beyond
  the measured bands (the reference's clipped highlights take the brightest band's gain).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from gmodiff.camera.radiance import GAMMA, linearise
from gmodiff.io.scene import Scene

CLIP_START, CLIP_END = 0.85, 0.98
"""A frame's pixel counts as clipped from CLIP_END (max channel), trusted below CLIP_START."""
DARK_START, DARK_END = 0.08, 0.02
"""A frame's pixel counts as near black below DARK_END (max channel), trusted above DARK_START."""
WELL_EXPOSED = (0.01, 0.95)
MIN_WELL_EXPOSED = 64
"""Fewer well-exposed reference pixels than this: no level correction (nothing to anchor to)."""
TONE_BANDS = 16
"""Luminance bands of the tone correction (fewer when there are fewer than
``MIN_WELL_EXPOSED`` well-exposed pixels per band)."""
AGREE_STOPS = (0.7, 1.5)
"""An extra frame is trusted fully up to this disagreement (stops) with the frame it replaces,
not at all beyond: JPEG tone curves bend shadows off the gamma-2.2 model by up to ~0.5 stop."""
NOISE_FLOOR = 0.02
"""Encoded level below which frames are noise: disagreements are measured above it."""
GROW_PX = 3
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


@dataclass
class ExtraFrame:
    """A usable frame outside the network's three, aligned to the reference."""

    frame: np.ndarray
    exposure: float
    """Relative exposure in the scene's units (the scene's shortest frame is 1)."""
    path: Path


def _smoothstep(x: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _radiance(frame: np.ndarray, exposure: float) -> np.ndarray:
    return linearise(np.clip(frame, 0.0, 1.0), exposure)


def agreement(extra: np.ndarray, extra_exposure: float, source: np.ndarray,
              source_exposure: float) -> np.ndarray:
    """(H, W) trust in ``extra`` where it stands in for ``source``: 1 where the two frames see
    the same radiance, 0 on a moving object that either one shows alone.

    ``extra`` is re-exposed to ``source``'s exposure (clipped as that frame would clip it) and the
    two are compared in stops above a noise floor, channel by channel: where ``source`` is
    clipped a darker frame must be at least as bright as the clipping allows, where it is black a
    brighter frame must be dark enough — exactly the pixels the frame would be merged into.
    Disagreements are blurred and grown like the deghosting merge's
    (:func:`gmodiff.baselines.merge.consistency`), so ghost edges do not leak.
    """
    predicted = np.clip(_radiance(extra, extra_exposure) * np.float32(source_exposure), 0.0, 1.0)
    observed = np.power(np.clip(source, 0.0, 1.0), GAMMA, dtype=np.float32)
    floor = np.float32(NOISE_FLOOR ** GAMMA)
    stops = np.abs(np.log2((predicted + floor) / (observed + floor))).max(axis=2)
    stops = cv2.GaussianBlur(stops.astype(np.float32), (0, 0), 1.5)
    low, high = AGREE_STOPS
    trust = np.clip((high - stops) / (high - low), 0.0, 1.0).astype(np.float32)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * GROW_PX + 1, 2 * GROW_PX + 1))
    return cv2.erode(trust, kernel)


def extend_range(hdr: np.ndarray, scene: Scene, extras: list[ExtraFrame]) -> np.ndarray:
    """``hdr`` with highlights/shadows filled from frames darker/brighter than the scene's."""
    if not extras:
        return hdr
    out = np.array(hdr, dtype=np.float32, copy=True)
    times = np.asarray(scene.exposure_times, dtype=np.float64)
    darker = sorted((e for e in extras if e.exposure < times[0]), key=lambda e: -e.exposure)
    brighter = sorted((e for e in extras if e.exposure > times[-1]), key=lambda e: e.exposure)
    source, source_exposure = scene.frames[0], float(times[0])
    for extra in darker:
        # Where the previous source is clipped and this frame is not.
        weight = (_smoothstep(source.max(axis=2), CLIP_START, CLIP_END)
                  * (1 - _smoothstep(extra.frame.max(axis=2), CLIP_START, CLIP_END))
                  * agreement(extra.frame, extra.exposure, source, source_exposure))
        out += weight[..., None] * (_radiance(extra.frame, extra.exposure) - out)
        source, source_exposure = extra.frame, extra.exposure
    source, source_exposure = scene.frames[-1], float(times[-1])
    for extra in brighter:
        weight = (_smoothstep(source.max(axis=2), DARK_START, DARK_END)
                  * (1 - _smoothstep(extra.frame.max(axis=2), CLIP_START, CLIP_END))
                  * agreement(extra.frame, extra.exposure, source, source_exposure))
        out += weight[..., None] * (_radiance(extra.frame, extra.exposure) - out)
        source, source_exposure = extra.frame, extra.exposure
    return out


def tone_curve(hdr: np.ndarray, scene: Scene) -> tuple[np.ndarray, np.ndarray] | None:
    """(log2 luminance of ``hdr``, log2 gain) per band that brings ``hdr`` to the reference
    frame's radiance on its well-exposed pixels; None when too few pixels are well exposed."""
    reference = scene.reference
    low, high = WELL_EXPOSED
    well = (reference.min(axis=2) > low) & (reference.max(axis=2) < high)
    count = int(well.sum())
    if count < MIN_WELL_EXPOSED:
        return None
    t_ref = float(scene.exposure_times[scene.reference_index])
    measured = _radiance(reference[well], t_ref) @ _LUMA
    predicted = np.asarray(hdr, dtype=np.float32)[well] @ _LUMA
    keep = (predicted > 1e-8) & (measured > 0)
    measured, predicted = measured[keep], predicted[keep]
    bands = min(TONE_BANDS, predicted.size // MIN_WELL_EXPOSED)
    if bands < 1:
        return None
    # Quantile bands of the prediction, so each holds as many pixels.
    order = np.argsort(predicted, kind="stable")
    x, y = [], []
    for part in np.array_split(order, bands):
        x.append(np.log2(np.median(predicted[part])))
        y.append(np.log2(np.median(measured[part])))
    x, y = np.asarray(x), np.maximum.accumulate(np.asarray(y))  # a tone curve never inverts
    keep = np.concatenate([[True], np.diff(x) > 1e-6])
    return x[keep], (y - x)[keep]


def anchor_level(hdr: np.ndarray, scene: Scene) -> np.ndarray:
    """``hdr`` with the tone curve of :func:`tone_curve` applied (luminance only, hue kept), so
    its well-exposed pixels sit at the reference frame's level band by band."""
    curve = tone_curve(hdr, scene)
    if curve is None:
        return hdr
    x, gain = curve
    hdr = np.asarray(hdr, dtype=np.float32)
    luma = np.maximum(hdr @ _LUMA, 1e-12)
    # np.interp holds the end gains flat beyond the measured bands.
    factor = np.exp2(np.interp(np.log2(luma), x, gain)).astype(np.float32)
    return hdr * factor[..., None]
