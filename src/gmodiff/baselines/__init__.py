"""Classical (non-learned) multi-exposure merges used for comparison.

Every method is ``fn(scene) -> float32 (H, W, 3)`` linear HDR relative to the t=1 exposure,
aligned to the reference frame (the ground truth's convention). Every one linearises with the
camera response estimated from the bracket itself (``gmodiff.camera.calibration``, the estimate the
networks' canonical inputs use), not an assumed gamma 2.2; ``debevec-calibrated`` is OpenCV's
own self-calibration (CalibrateDebevec from the same frames), the classical peer of issue #28.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gmodiff.baselines.debevec import debevec_merge
from gmodiff.baselines.merge import deghost_merge, reference_only, triangle_merge
from gmodiff.camera.calibration import estimate_response
from gmodiff.io.scene import Scene


def with_estimated_response(merge: Callable[..., np.ndarray]) -> Callable[[Scene], np.ndarray]:
    """``merge(scene, inverse=...)`` with the inverse response estimated from the scene's bracket."""

    def run(scene: Scene) -> np.ndarray:
        inverse = estimate_response(scene.frames, scene.exposure_times).linearise
        return merge(scene, inverse=inverse)

    run.__name__ = run.__qualname__ = getattr(merge, "__name__", "merge")
    run.__doc__ = merge.__doc__
    return run


def debevec_calibrated(scene: Scene) -> np.ndarray:
    """OpenCV's self-calibrated Debevec: CalibrateDebevec + MergeDebevec from the bracket alone."""
    return debevec_merge(scene, response="calibrate")


CLASSICAL_METHODS: dict[str, Callable[[Scene], np.ndarray]] = {
    "reference": with_estimated_response(reference_only),
    "merge": with_estimated_response(triangle_merge),
    "deghost": with_estimated_response(deghost_merge),
    "debevec": debevec_merge,
    "debevec-calibrated": debevec_calibrated,
}
"""Name → baseline. ``classical`` in the CLI means the best of these, ``deghost``."""

BEST_CLASSICAL = "deghost"

__all__ = ["BEST_CLASSICAL", "CLASSICAL_METHODS", "debevec_calibrated", "debevec_merge",
           "deghost_merge", "reference_only", "triangle_merge", "with_estimated_response"]
