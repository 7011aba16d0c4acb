"""The IEC 61966-2-1 sRGB transfer curve, written once: a linear toe, then a 1/2.4 power.

The simulator's sRGB camera, the standard curves of the response estimate, the photographs
lifted to radiance for training, the SDR preview and the Ultra HDR JPEG's base picture all use
it. Both directions compute in the input's float type (callers cast where they need to).
"""

from __future__ import annotations

import numpy as np


def srgb_to_linear(encoded: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] → linear light (the EOTF)."""
    encoded = np.asarray(encoded)
    return np.where(encoded <= 0.04045, encoded / 12.92, np.power((encoded + 0.055) / 1.055, 2.4))


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] → sRGB-encoded values (the inverse EOTF)."""
    linear = np.asarray(linear)
    # The power sees no value under the toe, so negative inputs raise no warning.
    return np.where(linear <= 0.0031308, 12.92 * linear,
                    1.055 * np.power(np.maximum(linear, 0.0031308), 1 / 2.4) - 0.055)
