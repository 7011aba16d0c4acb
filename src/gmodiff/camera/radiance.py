"""The one linearisation every classical road and the network inputs share: ``LDR**2.2 / t``.

A camera's real response is estimated elsewhere (:mod:`gmodiff.camera.calibration`); frames are
re-encoded to this gamma before they reach the networks, so the constant lives here once.
"""

from __future__ import annotations

import numpy as np

from gmodiff.pixelmath import power

GAMMA = 2.2
"""Linearisation gamma the network inputs assume, whatever the camera's real response."""


def linearise(ldr: np.ndarray, exposure_time: float) -> np.ndarray:
    """Gamma-encoded frame in [0, 1] → float32 radiance relative to t = 1 (``LDR**2.2 / t``)."""
    linear = power(ldr, GAMMA)
    linear /= np.float32(exposure_time)
    return linear
