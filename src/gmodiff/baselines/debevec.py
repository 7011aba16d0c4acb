"""OpenCV's classic pipeline as a baseline: AlignMTB (translation) + MergeDebevec.

OpenCV works on 8-bit frames, so the 16-bit inputs are rounded to 8 bits first (part of what
this baseline costs). The response is the one ``gmodiff.camera.calibration`` estimates from the bracket
(``estimated``), OpenCV's own self-calibration from the same frames (``calibrate``,
CalibrateDebevec: the classical peer of issue #28), or a fixed gamma 2.2 (``gamma``).
Debevec's radiance has an arbitrary scale (the calibrated curve is pinned at mid-grey), so the
result is rescaled to the reference frame's linearisation (with ``inverse``, else gamma 2.2) over
its well-exposed pixels: that brings it to the ground truth's t=1 convention using only inputs.
"""

from __future__ import annotations

import cv2
import numpy as np

from gmodiff.baselines.merge import Inverse, linearise
from gmodiff.camera.calibration import estimate_response
from gmodiff.errors import ConfigError
from gmodiff.io.scene import Scene


def _to_bgr8(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rint(np.clip(frame, 0, 1) * 255.0).astype(np.uint8)[..., ::-1])


def mtb_levels(height: int, width: int) -> int:
    """Pyramid depth for AlignMTB that keeps its coarsest level at least ~48 px.

    OpenCV's default (6 levels, ±64 px) searches from a few-pixel-wide level on small images
    and then locks onto wildly wrong shifts even for static scenes.
    """
    return int(np.clip(np.floor(np.log2(min(height, width) / 48.0)), 1, 6))


def align_mtb(frames8: list[np.ndarray], reference_index: int) -> list[np.ndarray]:
    """Translate each 8-bit BGR frame onto the reference with median-threshold bitmaps."""
    height, width = frames8[0].shape[:2]
    if min(height, width) < 16:
        # Too small to align, and OpenCV's AlignMTB crashes the interpreter (segfault) on
        # frames one pixel high or wide.
        return list(frames8)
    align = cv2.createAlignMTB(mtb_levels(height, width), 4, True)
    base = cv2.cvtColor(frames8[reference_index], cv2.COLOR_BGR2GRAY)
    aligned = []
    for index, frame in enumerate(frames8):
        if index == reference_index:
            aligned.append(frame)
            continue
        shift = align.calculateShift(base, cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY))
        aligned.append(align.shiftMat(frame, shift))
    return aligned


RESPONSES = ("estimated", "calibrate", "gamma")
MIN_CALIBRATION_PIXELS = 64
"""CalibrateDebevec samples 70 pixels; on smaller frames the estimated response is used."""


def _response_table(inverse: Inverse | None) -> np.ndarray:
    """An inverse response at the 256 codes as OpenCV wants it ((256, 1, 3) float32)."""
    levels = np.arange(256, dtype=np.float32) / 255.0
    curve = np.power(levels, 2.2) if inverse is None else np.asarray(inverse(levels), np.float32)
    # MergeDebevec takes log(response): keep the black level strictly positive.
    curve = np.maximum(curve, 1e-6)
    return np.repeat(curve[:, None, None], 3, axis=2).astype(np.float32)


def _gamma_response() -> np.ndarray:
    return _response_table(None)


def scale_to_reference(hdr: np.ndarray, scene: Scene, inverse: Inverse | None = None) -> np.ndarray:
    """Rescale ``hdr`` so it matches the reference's linearisation where that is well exposed."""
    reference = scene.reference
    target = linearise(reference, float(scene.exposure_times[scene.reference_index]), inverse)
    usable = (reference > 0.1) & (reference < 0.9) & (hdr > 0)
    if usable.sum() < 16:
        usable = hdr > 0
    if not usable.any():
        return hdr.astype(np.float32)
    scale = float(np.median(target[usable] / hdr[usable]))
    return (hdr * scale).astype(np.float32)


def debevec_merge(scene: Scene, response: str = "estimated", align: bool = True,
                  inverse: Inverse | None = None) -> np.ndarray:
    """AlignMTB + MergeDebevec with the ``estimated``, ``calibrate``d (OpenCV) or ``gamma`` response.

    ``inverse`` is the estimated inverse response (estimated from the bracket here when not
    given); it also sets the output's scale. ``calibrate`` falls back to it on frames too small
    for OpenCV's 70-sample fit.
    """
    if response not in RESPONSES:
        raise ConfigError(f"unknown Debevec response {response!r}",
                          fix=f"use one of {', '.join(RESPONSES)}")
    if response == "gamma":
        inverse = None
    elif inverse is None:
        inverse = estimate_response(scene.frames, scene.exposure_times).linearise
    frames8 = [_to_bgr8(frame) for frame in scene.frames]
    if align:
        frames8 = align_mtb(frames8, scene.reference_index)
    times = np.asarray(scene.exposure_times, dtype=np.float32)
    if response == "calibrate" and scene.height * scene.width >= MIN_CALIBRATION_PIXELS:
        curve = cv2.createCalibrateDebevec().process(frames8, times)
    else:
        curve = _response_table(inverse)
    hdr = cv2.createMergeDebevec().process(frames8, times, curve)
    hdr = np.nan_to_num(np.asarray(hdr, dtype=np.float32)[..., ::-1], nan=0.0, posinf=0.0)
    return scale_to_reference(np.maximum(hdr, 0.0), scene, inverse)
