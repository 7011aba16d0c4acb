"""Global alignment of handheld brackets: warp every non-reference frame onto the reference.

Frames are compared on *exposure-normalised* luminance: each frame is linearised (gamma 2.2,
spec §1), divided by its exposure time, and both images of a pair are clipped to the radiance
range that is well exposed in both, so the pair looks alike wherever either could see detail.

Methods: ``ecc`` (default) fits a homography with OpenCV's ``findTransformECC`` coarse to fine
(translation on the coarsest level, homography above), on an image downscaled to at most
``max_size`` pixels; ``mtb`` finds an integer translation with median-threshold bitmaps;
``none`` leaves frames alone. A failed or implausible ECC fit falls back to MTB, then to the
identity, each time with a warning, because a bad warp is worse than none.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from gmodiff.errors import ConfigError
from gmodiff.camera.radiance import GAMMA
from gmodiff.io.scene import Scene
from gmodiff.pixelmath import power

ALIGN_METHODS = ("none", "mtb", "ecc")
DARK_LEVEL = 0.02
"""Encoded values below this are treated as noise when comparing frames."""
SATURATION_LEVEL = 0.95
"""Encoded values above this are treated as clipped."""
MAX_SHIFT_FRACTION = 0.15
"""A fitted warp moving any corner further than this fraction of the diagonal is rejected."""
MIN_CORRELATION = 0.3

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


class AlignmentFailed(RuntimeError):
    """An alignment estimator gave no usable warp (internal: triggers the fallback)."""


@dataclass
class AlignmentResult:
    """Aligned frames, the 3×3 warps (reference pixel → frame pixel) and how each was found."""

    frames: list[np.ndarray]
    homographies: list[np.ndarray]
    methods: list[str]
    warnings: list[str] = field(default_factory=list)


def normalised_pair(reference: np.ndarray, frame: np.ndarray, t_reference: float,
                    t_frame: float) -> tuple[np.ndarray, np.ndarray]:
    """Exposure-normalised, common-range-clipped luminance of two frames, gamma-encoded."""
    def radiance(img: np.ndarray, t: float) -> np.ndarray:
        return (power(np.clip(img, 0.0, 1.0), GAMMA) @ _LUMA) / np.float32(t)

    lo = max(DARK_LEVEL ** GAMMA / t_reference, DARK_LEVEL ** GAMMA / t_frame)
    hi = min(SATURATION_LEVEL ** GAMMA / t_reference, SATURATION_LEVEL ** GAMMA / t_frame)
    if hi <= lo:  # no overlap in what both frames saw: compare unclipped (alignment may fail)
        lo, hi = 0.0, max(1.0 / t_reference, 1.0 / t_frame)

    def encode(img: np.ndarray, t: float) -> np.ndarray:
        rad = np.clip(radiance(img, t), lo, hi)
        return power(rad / np.float32(hi), 1 / GAMMA)

    return encode(reference, t_reference), encode(frame, t_frame)


def _scale_homography(h: np.ndarray, factor: float) -> np.ndarray:
    s = np.diag([factor, factor, 1.0])
    return s @ h @ np.linalg.inv(s)


def _check_plausible(h: np.ndarray, width: int, height: int) -> None:
    corners = np.array([[0, 0, 1], [width, 0, 1], [0, height, 1], [width, height, 1]], float).T
    moved = h @ corners
    if np.any(np.abs(moved[2]) < 1e-6):
        raise AlignmentFailed("degenerate homography")
    moved = moved[:2] / moved[2]
    if np.max(np.linalg.norm(moved - corners[:2], axis=0)) > MAX_SHIFT_FRACTION * np.hypot(width, height):
        raise AlignmentFailed("fitted warp moves the image implausibly far")


def estimate_ecc(reference: np.ndarray, frame: np.ndarray, max_size: int = 512,
                 min_level_size: int = 48) -> np.ndarray:
    """Homography (reference pixel → frame pixel) maximising ECC, coarse to fine."""
    height, width = reference.shape
    scale = min(1.0, max_size / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    levels = [(cv2.resize(reference, size, interpolation=cv2.INTER_AREA),
               cv2.resize(frame, size, interpolation=cv2.INTER_AREA))]
    while min(levels[-1][0].shape) >= 2 * min_level_size:
        levels.append(tuple(cv2.pyrDown(img) for img in levels[-1]))
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 100, 1e-6)
    h = np.eye(3, dtype=np.float32)
    correlation = 0.0
    for depth, (ref_level, frame_level) in enumerate(reversed(levels)):
        if depth > 0:
            h = _scale_homography(h, 2.0).astype(np.float32)
        coarsest = depth == 0 and len(levels) > 1
        try:
            if coarsest:  # translation first: robust when the shift is the main motion
                warp = h[:2].copy()
                correlation, warp = cv2.findTransformECC(
                    ref_level, frame_level, warp, cv2.MOTION_TRANSLATION, criteria, None, 5)
                h = np.vstack([warp, [0, 0, 1]]).astype(np.float32)
            else:
                correlation, h = cv2.findTransformECC(
                    ref_level, frame_level, h, cv2.MOTION_HOMOGRAPHY, criteria, None, 5)
        except cv2.error as exc:
            raise AlignmentFailed(f"ECC did not converge ({str(exc).splitlines()[-1]})") from exc
    if not np.isfinite(correlation) or correlation < MIN_CORRELATION:
        raise AlignmentFailed(f"ECC correlation {correlation:.2f} is too low")
    h = _scale_homography(h.astype(np.float64), 1.0 / scale)
    h /= h[2, 2]
    _check_plausible(h, width, height)
    return h


def _threshold(img: np.ndarray) -> float:
    """Median of the pixels not at the clip limits (frames are already exposure-normalised)."""
    inside = img[(img > img.min()) & (img < img.max())]
    return float(np.median(inside if inside.size else img))


def _threshold_bitmaps(img: np.ndarray, threshold: float, exclusion: float,
                       clip: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Bitmap (above threshold) and the mask of pixels that are informative: not near the
    threshold and not at the common clip limits (clipped areas carry no position)."""
    keep = (np.abs(img - threshold) > exclusion) & (img > clip[0] + 1e-4) & (img < clip[1] - 1e-4)
    return img > threshold, keep


def _shifted(mask: np.ndarray, dx: int, dy: int) -> np.ndarray:
    """``mask`` moved by (dx, dy) pixels, with False shifted in at the borders."""
    out = np.zeros_like(mask)
    h, w = mask.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        mask[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    return out


def estimate_mtb(reference: np.ndarray, frame: np.ndarray, max_bits: int = 6,
                 exclusion: float = 4 / 255) -> np.ndarray:
    """Integer translation (as a homography) from median-threshold bitmaps (Ward 2003).

    Coarse to fine: at each pyramid level the shift found below is doubled and refined by ±1
    pixel, minimising the XOR of the two bitmaps outside the near-median exclusion zone. Both
    images are already exposure-normalised, so one threshold (the reference's median) serves
    both, which keeps clipped areas from dragging the median.
    """
    clip = (min(float(reference.min()), float(frame.min())), max(float(reference.max()), float(frame.max())))
    levels = [(reference, frame)]
    while len(levels) <= max_bits and min(levels[-1][0].shape) >= 32:
        levels.append(tuple(cv2.pyrDown(img) for img in levels[-1]))
    dx = dy = 0
    for ref_level, frame_level in reversed(levels):
        threshold = _threshold(ref_level)
        ref_bits, ref_keep = _threshold_bitmaps(ref_level, threshold, exclusion, clip)
        frame_bits, frame_keep = _threshold_bitmaps(frame_level, threshold, exclusion, clip)
        if min(np.count_nonzero(ref_keep), np.count_nonzero(frame_keep)) < 0.01 * ref_keep.size:
            raise AlignmentFailed("too little texture outside the clipped areas")
        best = None
        # zero first, and only a strictly better shift replaces it: flat images stay put
        for ddx in (0, -1, 1):
            for ddy in (0, -1, 1):
                sx, sy = 2 * dx + ddx, 2 * dy + ddy
                # frame content sits at reference position + shift: move it back by -shift
                moved_bits, moved_keep = _shifted(frame_bits, -sx, -sy), _shifted(frame_keep, -sx, -sy)
                error = np.count_nonzero((ref_bits ^ moved_bits) & ref_keep & moved_keep)
                if best is None or error < best[0]:
                    best = (error, sx, sy)
        _, dx, dy = best
    # The first level's doubling starts from 0, so the result is already at full resolution.
    h = np.array([[1, 0, dx], [0, 1, dy], [0, 0, 1]], dtype=np.float64)
    _check_plausible(h, reference.shape[1], reference.shape[0])
    return h


def warp_frame(frame: np.ndarray, homography: np.ndarray) -> np.ndarray:
    """Resample ``frame`` onto the reference grid (edges replicated, values kept in [0, 1])."""
    height, width = frame.shape[:2]
    out = cv2.warpPerspective(frame, homography, (width, height),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                              borderMode=cv2.BORDER_REPLICATE)
    if out.dtype == np.float32:
        return np.clip(out, 0.0, 1.0, out=out)  # OpenCV's fresh output: no second copy
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def match_residual(reference: np.ndarray, frame: np.ndarray, homography: np.ndarray) -> float:
    """Mean |difference| of normalised luminance after warping, over pixels unclipped in both."""
    warped = cv2.warpPerspective(frame, homography, reference.shape[::-1],
                                 flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                 borderMode=cv2.BORDER_REPLICATE)
    lo = min(float(reference.min()), float(frame.min())) + 1e-4
    hi = max(float(reference.max()), float(frame.max())) - 1e-4
    mask = (reference > lo) & (reference < hi) & (warped > lo) & (warped < hi)
    return float(np.abs(reference - warped)[mask].mean()) if mask.any() else float("inf")


def align_frames(frames: list[np.ndarray], exposure_times, reference_index: int,
                 method: str = "ecc", max_size: int = 512) -> AlignmentResult:
    """Align every frame to ``frames[reference_index]`` with ``method`` (see module doc)."""
    if method not in ALIGN_METHODS:
        raise ConfigError(f"unknown alignment method '{method}'", None,
                          f"use one of: {', '.join(ALIGN_METHODS)}")
    times = [float(t) for t in exposure_times]
    reference = frames[reference_index]
    result = AlignmentResult(frames=[], homographies=[], methods=[])
    for i, frame in enumerate(frames):
        identity = np.eye(3)
        if i == reference_index or method == "none" or frame is reference:
            result.frames.append(frame)
            result.homographies.append(identity)
            result.methods.append("reference" if i == reference_index else "none")
            continue
        ref_lum, frame_lum = normalised_pair(reference, frame, times[reference_index], times[i])
        estimators = [("ecc", lambda: estimate_ecc(ref_lum, frame_lum, max_size))] if method == "ecc" else []
        estimators.append(("mtb", lambda: estimate_mtb(ref_lum, frame_lum)))
        h, used = identity, "identity"
        baseline = match_residual(ref_lum, frame_lum, identity)
        for name, estimate in estimators:
            try:
                candidate = estimate()
                # A fit that matches worse than not moving at all is a false optimum.
                if match_residual(ref_lum, frame_lum, candidate) > baseline * 1.02:
                    raise AlignmentFailed("the fitted warp matches worse than no warp")
                h, used = candidate, name
                break
            except AlignmentFailed as exc:
                message = f"frame {i + 1}: {name} alignment failed ({exc})"
                # Collected, not logged: the caller reports warnings once (the CLI on stderr).
                result.warnings.append(message)
        if used == "identity":
            result.warnings.append(f"frame {i + 1}: left unaligned")
        elif used != method:
            result.warnings.append(f"frame {i + 1}: aligned with the {used} fallback")
        result.frames.append(frame if used == "identity" else warp_frame(frame, h))
        result.homographies.append(h)
        result.methods.append(used)
    return result


def align_scene(scene: Scene, method: str = "ecc", max_size: int = 512) -> tuple[Scene, AlignmentResult]:
    """A copy of ``scene`` with its frames aligned to the reference frame."""
    result = align_frames(scene.frames, scene.exposure_times, scene.reference_index, method, max_size)
    return replace(scene, frames=result.frames), result
