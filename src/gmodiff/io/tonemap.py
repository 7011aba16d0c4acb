"""The SDR rendition of linear HDR: one local tone mapper for every 8-bit picture gmodiff makes.

Input is linear RGB already multiplied by the preview gain, so 1.0 is the white of a normal
exposure (the reference frame's clipping point at ``--preview-exposure reference``). The steps:

1. the log2 of each pixel's largest channel (its "max-RGB norm": tone mapping it keeps every
   channel in range, so a bright blue sky stays blue instead of clipping to white), split into
   an edge-aware *base* (large-scale lighting) and *detail* by a fast guided filter (He & Sun
   2015): the filter's linear coefficients are solved on a block-averaged copy at most
   ``guide_side`` pixels long and applied at full size with the full-size norm as the guide, so
   edges stay sharp and the cost stays per pixel;
2. the base is compressed only where it is bright (above ``highlight_knee`` stops, so skies and
   lamps come down to just under white) and, gently, where it is very dark; detail is kept (×
   ``detail``), so clouds, foliage and textures keep their local contrast;
3. a filmic shoulder on the norm: linear (identity) below ``knee``, rolling off to exactly 1.0
   at ``white``: pictures reach white and mid-tones are exposed as the camera's JPEG;
4. colour by ratio to the norm (saturation and hue kept, unlike a per-channel curve that greys
   out bright blue skies); only pixels far over white (``desaturate_from``..``desaturate_to``
   stops: the sun, lamps) blend towards white, as film and cameras render them;
5. sRGB encoding to 8 bits.

Everything at full size runs in row bands (:mod:`gmodiff.io.bands`); the low-resolution solve is
computed block row by block row in a fixed order, so a banded run gives the whole-image bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from gmodiff.io import bands
from gmodiff.io.bands import row_bands
from gmodiff.srgb import linear_to_srgb

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)
_FLOOR = np.float32(2.0 ** -16)
"""Floor of the log domain (16 stops under white): black stays finite."""


@dataclass(frozen=True)
class RenditionConfig:
    """Parameters of :func:`render_sdr` (levels are linear, 1 = nominal white; ``*_knee`` and
    headroom values are log2 stops)."""

    white: float = 2.0
    """Most level the shoulder maps to exactly 255 (one stop above nominal white); an image
    whose brightest base sits lower gets a lower white point, so it still reaches white."""
    white_headroom: float = 0.15
    """Stops above the (compressed) base's 99.5th percentile where the white point goes."""
    knee: float = 0.5
    """The shoulder is the identity below this luminance (mid-tones as shot)."""
    highlight_knee: float = -1.0
    """Base levels above this (stops) are compressed when the image's highlights need it."""
    highlight_target: float = 0.25
    """Stops: the base's 99.5th percentile is brought down to about this level."""
    min_compression: float = 0.3
    """Strongest highlight compression of the base (slope); keeps bright areas ordered."""
    shadow_knee: float = -7.0
    """Base levels below this (stops) are lifted with slope ``shadow_compression``."""
    shadow_compression: float = 0.85
    softness: float = 0.5
    """Width (stops) of the soft knees, so the compression has no visible kink."""
    detail: float = 1.1
    """Gain on the detail layer (log domain): local contrast slightly above the scene's."""
    guide_side: int = 512
    """Longest side of the grid the guided filter is solved on."""
    radius: float = 1 / 24
    """Guided-filter radius as a fraction of the longest side (scale-free: any size looks alike)."""
    eps: float = 0.25
    """Guided-filter regulariser (stops²): edges above ~1 stop stay in the base, texture is detail."""
    norm_mix: float = 0.75
    """Tone-mapped level: 0 = luminance, 1 = the largest channel (keeps bright blue skies blue
    but renders them darker than a camera would); a channel still over 1 scales the pixel down."""
    desaturate_from: float = 3.0
    desaturate_to: float = 5.0
    """Stops over nominal white (of the input norm) where colour starts / has finished fading to
    white: a sky 2 stops over keeps its blue, the sun is white."""


DEFAULT_RENDITION = RenditionConfig()


def _norm(linear: np.ndarray, config: RenditionConfig) -> np.ndarray:
    """The level tone-mapped per pixel: luminance and the largest channel, mixed."""
    lum = linear @ _LUMA
    return np.maximum(lum + np.float32(config.norm_mix) * (linear.max(axis=-1) - lum), _FLOOR)


def _clean(band: np.ndarray, gain: float) -> np.ndarray:
    """float32 band × gain with NaN/inf as black and negatives clamped."""
    band = np.nan_to_num(np.asarray(band, dtype=np.float32), nan=0.0, posinf=0.0, neginf=0.0)
    return np.maximum(band * np.float32(gain), 0.0)


def _block_means(hdr: np.ndarray, gain: float, step: int, config: RenditionConfig) -> np.ndarray:
    """log2 norm averaged over ``step``×``step`` blocks (edges replicated), float64.

    Chunks are whole block rows and every sum is element-wise in a fixed order, so the result
    does not depend on the chunk size.
    """
    height, width = hdr.shape[:2]
    rows_out, cols_out = -(-height // step), -(-width // step)
    out = np.empty((rows_out, cols_out), dtype=np.float64)
    chunk = step * max(1, bands.BAND_ROWS // step)
    for top in range(0, height, chunk):
        log_lum = np.log2(_norm(_clean(hdr[top:top + chunk], gain), config)).astype(np.float64)
        pad_rows = -log_lum.shape[0] % step
        pad_cols = -width % step
        if pad_rows or pad_cols:
            log_lum = np.pad(log_lum, ((0, pad_rows), (0, pad_cols)), mode="edge")
        acc = log_lum[0::step].copy()
        for k in range(1, step):
            acc += log_lum[k::step]
        total = acc[:, 0::step].copy()
        for k in range(1, step):
            total += acc[:, k::step]
        out[top // step: top // step + total.shape[0]] = total / (step * step)
    return out


def _box(image: np.ndarray, radius: int) -> np.ndarray:
    size = 2 * radius + 1
    return cv2.boxFilter(image, -1, (size, size), normalize=True, borderType=cv2.BORDER_REFLECT)


def _guided_coefficients(guide: np.ndarray, radius: int, eps: float
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Self-guided filter on ``guide``: its smoothed coefficients (a, b) and output a·I + b."""
    mean = _box(guide, radius)
    var = np.maximum(_box(guide * guide, radius) - mean * mean, 0.0)
    a = var / (var + eps)
    b = mean - a * mean
    mean_a, mean_b = _box(a, radius), _box(b, radius)
    return mean_a, mean_b, mean_a * guide + mean_b


def _interp_index(n_full: int, n_small: int, step: int, sl: slice | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Bilinear source indices and weights mapping full-size positions to block centres."""
    positions = np.arange(n_full, dtype=np.float64)
    if sl is not None:
        positions = positions[sl]
    u = np.clip((positions - (step - 1) / 2) / step, 0.0, n_small - 1)
    lo = np.floor(u).astype(np.intp)
    hi = np.minimum(lo + 1, n_small - 1)
    return lo, hi, (u - lo).astype(np.float32)


def _upsample(small: np.ndarray, rows: tuple, cols: tuple) -> np.ndarray:
    r0, r1, fr = rows
    c0, c1, fc = cols
    small = small.astype(np.float32)
    by_row = small[r0] * (1 - fr)[:, None] + small[r1] * fr[:, None]
    return by_row[:, c0] * (1 - fc) + by_row[:, c1] * fc


def _softplus(x: np.ndarray, width: float) -> np.ndarray:
    return width * np.logaddexp(0.0, x / width)


def _compress(base, slope_high: float, slope_low: float, config: RenditionConfig):
    """The base layer with highlights (and deep shadows) compressed, soft knees."""
    return (base - (1.0 - slope_high) * _softplus(base - config.highlight_knee, config.softness)
            + (1.0 - slope_low) * _softplus(config.shadow_knee - base, config.softness))


def _compression(base: np.ndarray, config: RenditionConfig) -> tuple[float, float, float]:
    """(highlight slope, shadow slope, white level) for this image's base layer (slope 1.0 =
    left as is)."""
    high = float(np.percentile(base, 99.5))
    slope_high = 1.0
    if high > config.highlight_target:
        slope_high = (config.highlight_target - config.highlight_knee) / (high - config.highlight_knee)
        slope_high = min(1.0, max(config.min_compression, slope_high))
    low = float(np.percentile(base, 0.5))
    slope_low = config.shadow_compression if low < config.shadow_knee else 1.0
    top = float(_compress(np.float64(high), slope_high, slope_low, config))
    white = float(np.clip(2.0 ** (top + config.white_headroom), 1.0, config.white))
    return slope_high, slope_low, white


def _shoulder(y: np.ndarray, white: float, config: RenditionConfig) -> np.ndarray:
    """Identity below ``knee``, exponential roll-off above, scaled so ``white`` maps to 1."""
    knee = config.knee
    span = 1.0 - knee

    def curve(v):
        return np.where(v <= knee, v, knee + span * -np.expm1(-(np.maximum(v, knee) - knee) / span))

    return np.minimum(curve(y) / float(curve(np.float64(white))), 1.0)


def render_sdr(hdr: np.ndarray, gain: float = 1.0,
               config: RenditionConfig = DEFAULT_RENDITION) -> np.ndarray:
    """Linear HDR (H, W, 3) × ``gain`` → uint8 sRGB picture (see the module docstring).

    NaN/inf count as black, negatives as 0. Runs in row bands with a small whole-image solve.
    """
    hdr = np.asarray(hdr)
    if hdr.ndim != 3 or hdr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {hdr.shape}")
    height, width = hdr.shape[:2]
    out = np.empty(hdr.shape, dtype=np.uint8)
    if height == 0 or width == 0:
        return out
    step = max(1, math.ceil(max(height, width) / config.guide_side))
    small = _block_means(hdr, gain, step, config)
    radius = max(1, round(config.radius * max(small.shape)))
    coef_a, coef_b, base_small = _guided_coefficients(small, radius, config.eps)
    slope_high, slope_low, white = _compression(base_small, config)
    cols = _interp_index(width, small.shape[1], step)
    for rows in row_bands(height):
        linear = _clean(hdr[rows], gain)
        norm = _norm(linear, config)
        log_norm = np.log2(norm)
        row_index = _interp_index(height, small.shape[0], step, rows)
        base = _upsample(coef_a, row_index, cols) * log_norm + _upsample(coef_b, row_index, cols)
        detail = log_norm - base
        base = _compress(base, slope_high, slope_low, config)
        norm_out = _shoulder(np.exp2(base + config.detail * detail), white, config).astype(np.float32)
        # Colour by ratio to the norm: hue and saturation as in the scene, every channel ≤ 1.
        colour = linear * (norm_out / norm)[..., None]
        fade = np.clip((log_norm - config.desaturate_from)
                       / (config.desaturate_to - config.desaturate_from), 0.0, 1.0)[..., None]
        colour += (norm_out[..., None] - colour) * fade
        # A channel over 1 (the norm is a little under the largest channel) is scaled down with
        # the others: blending towards grey instead turns noisy bright skies into white specks.
        colour /= np.maximum(colour.max(axis=-1), 1.0)[..., None]
        display = linear_to_srgb(np.clip(colour, 0.0, 1.0))
        out[rows] = np.clip(np.rint(display * 255.0), 0, 255)
    return out
