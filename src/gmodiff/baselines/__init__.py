"""Classical (non-learned) multi-exposure merges used for comparison.

Every method is ``fn(scene) -> float32 (H, W, 3)`` linear HDR relative to the t=1 exposure,
aligned to the reference frame (the ground truth's convention).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from gmodiff.baselines.debevec import debevec_merge
from gmodiff.baselines.merge import deghost_merge, reference_only, triangle_merge
from gmodiff.io.scene import Scene

CLASSICAL_METHODS: dict[str, Callable[[Scene], np.ndarray]] = {
    "reference": reference_only,
    "merge": triangle_merge,
    "deghost": deghost_merge,
    "debevec": debevec_merge,
}
"""Name → baseline. ``classical`` in the CLI means the best of these, ``deghost``."""

BEST_CLASSICAL = "deghost"

__all__ = ["BEST_CLASSICAL", "CLASSICAL_METHODS", "debevec_merge", "deghost_merge",
           "reference_only", "triangle_merge"]
