"""Per-pixel writers run in row bands (gmodiff.io.bands) and give the whole-image bytes."""

from __future__ import annotations

import numpy as np
import pytest

from gmodiff.io import bands
from gmodiff.io.bands import row_bands
from gmodiff.io.hdr import write_radiance
from gmodiff.io.preview import auto_exposure, tonemap_preview
from gmodiff.io.ultrahdr import UltraHDRConfig, encode_ultrahdr


def test_row_bands_cover_every_row_once(monkeypatch):
    monkeypatch.setattr(bands, "BAND_ROWS", 4)
    assert [(s.start, s.stop) for s in row_bands(10)] == [(0, 4), (4, 8), (8, 10)]
    assert list(row_bands(0)) == []


def _outputs(hdr: np.ndarray, tmp_path, tag: str) -> dict:
    finite = np.nan_to_num(hdr, nan=0.0)
    path = tmp_path / f"{tag}.hdr"
    write_radiance(path, np.maximum(finite, 0))
    return {
        "ultrahdr": encode_ultrahdr(finite, 0.7),
        "ultrahdr_auto": encode_ultrahdr(finite, config=UltraHDRConfig(gain_map_downscale=2)),
        "preview": tonemap_preview(finite, 1.3).tobytes(),
        "preview_auto": tonemap_preview(hdr).tobytes(),  # the NaN counts as black
        "auto": auto_exposure(hdr),  # the NaN is left out
        "radiance": path.read_bytes(),
    }


def test_banded_writers_match_one_band(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    hdr = (rng.random((45, 37, 3), dtype=np.float32) ** 4 * 50).astype(np.float32)
    hdr[3, 3] = -1e-7  # a tiny negative the writers clamp
    hdr[7, 2] = np.nan
    monkeypatch.setattr(bands, "BAND_ROWS", 10_000)
    whole = _outputs(hdr, tmp_path, "whole")
    monkeypatch.setattr(bands, "BAND_ROWS", 8)  # 6 bands, the last one short
    banded = _outputs(hdr, tmp_path, "banded")
    for key in whole:
        assert banded[key] == whole[key], key
