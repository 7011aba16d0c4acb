"""Classical exposure-merging baselines on a :class:`Scene` (no learning).

Each function returns float32 (H, W, 3) linear HDR relative to the t=1 exposure, aligned to the
reference frame — the ground truth's convention (spec §1). Frames are linearised with an inverse
camera response ``inverse`` (encoded → linear, both in [0, 1]) when one is given, else with the
gamma 2.2 the networks assume (``L**2.2 / t``). The registry in ``gmodiff.baselines`` passes the
response estimated from the bracket (``gmodiff.camera.calibration``): real JPEGs are not gamma 2.2, and
a gamma-2.2 merge of them crushed shadows ×0.13 (issue #28). Canonical frames (already gamma 2.2,
``gmodiff.inputs.canonical``) are merged with the default.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from gmodiff.camera.radiance import GAMMA
from gmodiff.io.scene import Scene

Inverse = Callable[[np.ndarray], np.ndarray]
"""An inverse camera response: encoded values in [0, 1] → linear values in [0, 1]."""
WEIGHT_FLOOR = 1e-4
"""Smallest weight a frame keeps, so a fully rejected pixel still has a defined merge."""


def linearise(ldr: np.ndarray, exposure_time: float, inverse: Inverse | None = None) -> np.ndarray:
    """Non-linear LDR in [0, 1] → linear radiance relative to t=1: ``inverse(L) / t``
    (``L**2.2 / t`` without an inverse response)."""
    encoded = np.clip(ldr, 0.0, 1.0)
    linear = np.power(encoded, GAMMA) if inverse is None else inverse(encoded)
    return (linear / exposure_time).astype(np.float32)


def triangle_weight(ldr: np.ndarray, shortest: bool = False, longest: bool = False) -> np.ndarray:
    """Hat weight ``1 − |2L − 1|``: trust mid-tones, distrust clipped blacks and whites.

    The shortest frame keeps full weight on bright values and the longest on dark values:
    nothing better exists there, so the bracket's ends must carry them.
    """
    weight = 1.0 - np.abs(2.0 * ldr - 1.0)
    if shortest:
        weight = np.where(ldr > 0.5, 1.0, weight)
    if longest:
        weight = np.where(ldr < 0.5, 1.0, weight)
    return np.maximum(weight, 0.0).astype(np.float32)


def reference_only(scene: Scene, inverse: Inverse | None = None) -> np.ndarray:
    """The reference frame linearised; its clipped highlights stay clipped."""
    return linearise(scene.reference, float(scene.exposure_times[scene.reference_index]), inverse)


def _weighted_merge(frames: list[np.ndarray], times, weights: list[np.ndarray],
                    fallback: np.ndarray, inverse: Inverse | None = None) -> np.ndarray:
    numerator = np.zeros_like(fallback, dtype=np.float64)
    denominator = np.zeros_like(fallback, dtype=np.float64)
    for frame, time, weight in zip(frames, times, weights, strict=True):
        numerator += weight * linearise(frame, float(time), inverse)
        denominator += weight
    merged = numerator / np.maximum(denominator, 1e-12)
    return np.where(denominator > 1e-8, merged, fallback).astype(np.float32)


def triangle_merge(scene: Scene, inverse: Inverse | None = None) -> np.ndarray:
    """Per-channel triangle-weighted average of all linearised frames (ghosts where things move)."""
    last = len(scene.frames) - 1
    weights = [triangle_weight(f, shortest=i == 0, longest=i == last)
               for i, f in enumerate(scene.frames)]
    return _weighted_merge(scene.frames, scene.exposure_times, weights,
                           reference_only(scene, inverse), inverse)


# ---------------------------------------------------------------------------------------------
# Reference-guided deghosting


def intensity_mapping(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Map ``source`` into ``target``'s exposure by per-channel histogram matching.

    The intensity mapping function between two exposures of one scene is monotone, so matching
    cumulative histograms recovers it without knowing the camera response (Grossberg & Nayar);
    a few moving pixels barely move the histograms.
    """
    mapped = np.empty_like(source, dtype=np.float32)
    quantiles = np.linspace(0.0, 1.0, 1025)
    for c in range(source.shape[2]):
        src_q = _quantiles(source[..., c], quantiles)
        dst_q = _quantiles(target[..., c], quantiles)
        # Flat runs (clipped regions) make src_q non-strictly increasing; np.interp takes the
        # last matching value, which is fine for a monotone map.
        mapped[..., c] = np.interp(source[..., c], src_q, dst_q)
    return mapped


def _quantiles(values: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """``np.quantile`` (linear method) of many quantiles at once: one sort instead of a
    partition per quantile, which made histogram matching the merge's slowest step."""
    ordered = np.sort(values, axis=None).astype(np.float64)
    position = quantiles * (ordered.size - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, ordered.size - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (position - below)


def _grey(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image.mean(axis=-1), dtype=np.float32)


def estimate_alignment(frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """2×3 Euclidean warp taking reference pixel coordinates into ``frame`` (ECC, identity on failure).

    ``frame`` should already be exposure-matched to ``reference``. Clipped and black pixels are
    masked out so they do not pull the fit.
    """
    template, moving = _grey(reference), _grey(frame)
    usable = ((template > 0.03) & (template < 0.97) & (moving > 0.03) & (moving < 0.97))
    warp = np.eye(2, 3, dtype=np.float32)
    if usable.mean() < 0.05:
        return warp
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)
    mask = usable.astype(np.uint8)
    try:
        still = cv2.computeECC(template, moving, mask)
        fitted, warp = cv2.findTransformECC(template, moving, warp, cv2.MOTION_EUCLIDEAN,
                                            criteria, mask, 5)
    except cv2.error:
        return np.eye(2, 3, dtype=np.float32)
    # Noisy or nearly clipped frames give fits that barely beat "no motion": keep the identity
    # unless the warp explains the frame clearly better.
    if fitted - still < 0.01:
        return np.eye(2, 3, dtype=np.float32)
    h, w = frame.shape[:2]
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], np.float32)
    displacement = np.abs(corners @ warp.T - corners[:, :2]).max()
    # A fit that wanders far is a failure, not camera shake; a sub-quarter-pixel one is noise,
    # and resampling for it would only blur the frame.
    if displacement > 0.1 * max(h, w) or displacement < 0.25:
        return np.eye(2, 3, dtype=np.float32)
    return warp


def warp_to_reference(frame: np.ndarray, warp: np.ndarray) -> np.ndarray:
    """Resample ``frame`` onto the reference grid with a warp from :func:`estimate_alignment`."""
    h, w = frame.shape[:2]
    aligned = cv2.warpAffine(frame, warp, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_REPLICATE)
    return np.clip(aligned, 0.0, 1.0)


def consistency(frame: np.ndarray, reference: np.ndarray, low: float = 0.06,
                high: float = 0.15, blur_sigma: float = 1.5, grow_px: int = 3) -> np.ndarray:
    """Per-pixel trust in ``frame`` (H, W) in [0, 1]: 1 where it agrees with the reference.

    ``frame`` is mapped into the reference's exposure; where the reference is clipped the
    mapping saturates too, so a short frame is only rejected there if it is darker than the
    clipping level allows (and a long frame only if brighter in the reference's blacks).
    The blurred disagreement ramps from ``low`` to ``high``; rejections grow by ``grow_px``
    so ghost edges do not leak.
    """
    mapped = intensity_mapping(frame, reference)
    difference = np.abs(mapped - reference).mean(axis=-1)
    # Where the frame itself is clipped it gets (almost) no merge weight anyway; rejecting it
    # there would only grow rejections into good neighbouring pixels.
    informative = ((frame > 0.02) & (frame < 0.98)).all(axis=-1)
    difference = np.where(informative, difference, 0.0).astype(np.float32)
    difference = cv2.GaussianBlur(difference, (0, 0), blur_sigma)
    trust = np.clip((high - difference) / (high - low), 0.0, 1.0).astype(np.float32)
    if grow_px > 0:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow_px + 1, 2 * grow_px + 1))
        trust = cv2.erode(trust, kernel)
    return trust


def deghost_merge(scene: Scene, align: bool = True, inverse: Inverse | None = None) -> np.ndarray:
    """Reference-guided merge: align each frame globally, drop pixels that disagree, then merge.

    Non-reference frames are registered to the reference (ECC, Euclidean) to undo camera
    shake; pixels whose exposure-matched value still disagrees with the reference (moving
    objects) lose their weight, so the reference alone speaks there.
    """
    ref_index = scene.reference_index
    reference = scene.reference
    last = len(scene.frames) - 1
    frames, weights = [], []
    for index, frame in enumerate(scene.frames):
        weight = triangle_weight(frame, shortest=index == 0, longest=index == last)
        if index == ref_index:
            weight = np.maximum(weight, WEIGHT_FLOOR)
        else:
            if align:
                warp = estimate_alignment(intensity_mapping(frame, reference), reference)
                frame = warp_to_reference(frame, warp)
            weight = weight * consistency(frame, reference)[..., None]
        frames.append(frame)
        weights.append(weight)
    return _weighted_merge(frames, scene.exposure_times, weights, reference_only(scene, inverse),
                           inverse)
