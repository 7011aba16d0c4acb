"""Per-pixel float32 maths at camera resolution: a power and an even-grid table lookup.

A 12-MP DaReg run applies these to every tile's crops of every frame (issue 25's profile: 6 s of
the 21 s the tiled DaReg stage spent outside the network). OpenCV does both in one pass over
the data and on all cores: ``cv2.pow`` is 3× ``np.power`` (within 2.5e-6 relative), and a
one-row ``cv2.remap`` interpolates a table 2× faster than indexing it with numpy and 12× faster
than ``np.interp`` (within 6e-8 of the exact interpolation).
"""

from __future__ import annotations

import cv2
import numpy as np

_REMAP_WIDTH = 8192
"""Values go through ``cv2.remap`` as rows of this many (OpenCV needs sides < 32767)."""
_REMAP_ROWS = 16384


def power(values: np.ndarray, exponent: float) -> np.ndarray:
    """``values ** exponent`` as float32, for values ≥ 0 (OpenCV raises absolute values)."""
    array = np.asarray(values, dtype=np.float32)
    if array.size == 0 or array.ndim == 0:
        return np.power(array, np.float32(exponent))
    array = np.ascontiguousarray(array)
    rows = array.reshape(array.shape[0] if array.ndim > 1 else 1, -1)
    return cv2.pow(rows, float(exponent)).reshape(array.shape)


def uniform_lookup(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    """Piecewise-linear ``lut`` sampled on an even grid over [0, 1], at ``values`` (clipped):
    ``np.interp(values, linspace(0, 1, len(lut)), lut)`` in float32."""
    lut = np.ascontiguousarray(lut, dtype=np.float32).reshape(1, -1)
    array = np.asarray(values, dtype=np.float32)
    if lut.shape[1] >= 32767 or array.size == 0:
        return _indexed_lookup(array, lut[0])
    flat = np.clip(array.reshape(-1), 0.0, 1.0)
    flat *= np.float32(lut.shape[1] - 1)
    count = flat.size
    rows = -(-count // _REMAP_WIDTH)
    if rows * _REMAP_WIDTH != count:
        flat = np.concatenate([flat, np.zeros(rows * _REMAP_WIDTH - count, np.float32)])
    grid = flat.reshape(rows, _REMAP_WIDTH)
    out = np.empty_like(grid)
    zeros = np.zeros((min(rows, _REMAP_ROWS), _REMAP_WIDTH), np.float32)
    for start in range(0, rows, _REMAP_ROWS):
        stop = min(rows, start + _REMAP_ROWS)
        out[start:stop] = cv2.remap(lut, grid[start:stop], zeros[:stop - start], cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(-1)[:count].reshape(array.shape)


def _indexed_lookup(values: np.ndarray, lut: np.ndarray) -> np.ndarray:
    cells = lut.size - 1
    position = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * np.float32(cells)
    index = np.minimum(position.astype(np.int32), cells - 1)
    position -= index
    low = lut[index]
    low += position * (lut[index + 1] - low)
    return low
