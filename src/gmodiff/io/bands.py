"""Row bands for per-pixel image work on full-size photos.

Per-pixel renditions and encoders (tone mapping, Ultra HDR gain, Radiance RGBE) make several
float temporaries per pixel; on a whole 24 MP image that is gigabytes. Done band by band they give
the same bytes (every operation is per pixel) with temporaries the size of one band.
"""

from __future__ import annotations

from collections.abc import Iterator

BAND_ROWS = 256
"""Rows per band: with 6000-pixel rows a band's float64 temporaries stay near 100 MB."""


def row_bands(height: int) -> Iterator[slice]:
    """Consecutive row slices of at most ``BAND_ROWS`` rows covering ``height`` rows."""
    for top in range(0, height, BAND_ROWS):
        yield slice(top, min(top + BAND_ROWS, height))
