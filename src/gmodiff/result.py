"""``Reconstruction``: the one result type every reconstruction method returns."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Reconstruction:
    """An HDR result: linear float32 (H, W, 3) relative to t=1, plus optional intermediates."""

    hdr: np.ndarray
    gain_map: np.ndarray | None = None
    """(H, W, 3) in [0, 1]: the gain map the HDR was decoded from (learned methods)."""
    mask: np.ndarray | None = None
    """(H, W) in [0, 1]: DaReg's degradation-aware mask."""
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage; ``total`` (``total_s`` from ``GMODiffPipeline``) is always present."""
    method: str = ""
    coarse_gain_map: np.ndarray | None = None
    """DaReg's gain map before refinement (equal to ``gain_map`` when the refiner did not run)."""
    refined: bool | None = None
    """Whether a refiner ran; None for methods that have none."""
