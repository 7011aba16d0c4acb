"""Per-pixel reductions over the colour channels of (H, W, C) images.

NumPy's ``min/max/mean/all(axis=-1)`` on interleaved pixels walk a three-element inner loop
per pixel and were 4-11× slower than combining the channel planes elementwise; at 12 MP these
checks and masks cost seconds (issue 25). Same results (``mean`` adds in the same order).
"""

from __future__ import annotations

import numpy as np


def channel_max(image: np.ndarray) -> np.ndarray:
    """Per-pixel maximum over channels, (H, W)."""
    out = image[..., 0].copy()
    for c in range(1, image.shape[-1]):
        np.maximum(out, image[..., c], out=out)
    return out


def channel_min(image: np.ndarray) -> np.ndarray:
    """Per-pixel minimum over channels, (H, W)."""
    out = image[..., 0].copy()
    for c in range(1, image.shape[-1]):
        np.minimum(out, image[..., c], out=out)
    return out


def channel_mean(image: np.ndarray) -> np.ndarray:
    """Per-pixel mean over channels, (H, W), in the image's float type."""
    out = image[..., 0].astype(np.result_type(image.dtype, np.float32), copy=True)
    for c in range(1, image.shape[-1]):
        out += image[..., c]
    out /= out.dtype.type(image.shape[-1])
    return out


def channel_all(mask: np.ndarray) -> np.ndarray:
    """Per-pixel logical AND over channels of a boolean image, (H, W)."""
    out = mask[..., 0].copy()
    for c in range(1, mask.shape[-1]):
        out &= mask[..., c]
    return out
