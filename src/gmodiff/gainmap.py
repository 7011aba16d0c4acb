"""Gain-map math: the μ-law gain map GMODiff predicts, and the HDR tone curve used in losses.

Spec §2: ``GM = C(H / (L_ref + 1/64))`` with the μ-law compressor ``C(x) = ln(1+100x)/ln(101)``,
and ``H = (L_ref + 1/64) · C⁻¹(GM)``. Every function accepts numpy arrays or torch tensors and
returns the same kind. The ISO 21496-1 log2 gain maps used for Ultra HDR export live in
``gmodiff.io.ultrahdr`` (they are re-encoded from HDR, never from these bytes).
"""

from __future__ import annotations

import math
from typing import TypeVar

import numpy as np

try:  # torch is a core dependency, but keep the codec importable without it
    import torch
except ImportError:  # pragma: no cover
    torch = None

Array = TypeVar("Array")

GM_MU = 100.0
"""μ of the gain-map compressor."""
GM_OFFSET = 1.0 / 64.0
"""α: offset added to the reference LDR so dark pixels still carry gain."""
TONEMAP_MU = 5000.0
"""μ of the evaluation/loss tone curve T(x) (spec §5)."""


def _is_torch(x) -> bool:
    return torch is not None and isinstance(x, torch.Tensor)


def _log1p(x):
    return torch.log1p(x) if _is_torch(x) else np.log1p(x)


def _clip(x, lo, hi):
    return torch.clamp(x, lo, hi) if _is_torch(x) else np.clip(x, lo, hi)


def mu_compress(x: Array, mu: float = GM_MU) -> Array:
    """μ-law compressor ``ln(1 + μx) / ln(1 + μ)``."""
    return _log1p(mu * x) / math.log1p(mu)


def mu_expand(y: Array, mu: float = GM_MU) -> Array:
    """Inverse of :func:`mu_compress`: ``((1 + μ)**y − 1) / μ``."""
    if _is_torch(y):
        return torch.expm1(y * math.log1p(mu)) / mu
    return np.expm1(y * math.log1p(mu)) / mu


def tonemap(hdr: Array, mu: float = TONEMAP_MU) -> Array:
    """The μ-law tone curve T(x) with μ=5000 used by PSNR-μ and the training losses."""
    return mu_compress(hdr, mu)


def encode_gain_map(hdr: Array, ldr_ref: Array, clip: bool = True) -> Array:
    """Gain map in [0, 1] that lifts the non-linear reference LDR ``ldr_ref`` to ``hdr``.

    With Kalantari normalisation ``hdr <= ldr_ref + 1/64`` holds, so the ratio lies in [0, 1];
    ``clip`` guards against noise pushing it slightly outside.
    """
    ratio = hdr / (ldr_ref + GM_OFFSET)
    if clip:
        ratio = _clip(ratio, 0.0, 1.0)
    return mu_compress(ratio, GM_MU)


def decode_gain_map(gain_map: Array, ldr_ref: Array) -> Array:
    """HDR radiance from a gain map in [0, 1] and the non-linear reference LDR."""
    return (ldr_ref + GM_OFFSET) * mu_expand(gain_map, GM_MU)


def to_signed(gain_map: Array) -> Array:
    """Map a [0, 1] gain map to the VAE's [−1, 1] range."""
    return 2.0 * gain_map - 1.0


def from_signed(x: Array) -> Array:
    """Map the VAE's [−1, 1] output back to a [0, 1] gain map, clamped."""
    return _clip((x + 1.0) / 2.0, 0.0, 1.0)


def hdr_upper_bound(ldr_ref: Array) -> Array:
    """The largest HDR value a gain map in [0, 1] can express: ``L_ref + 1/64``."""
    return ldr_ref + GM_OFFSET
