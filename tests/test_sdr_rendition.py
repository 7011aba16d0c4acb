"""The SDR rendition (gmodiff.io.tonemap): reaches white, keeps colour and mid-tones, is the one
function behind the preview, the Ultra HDR base and the web view, and bands give the same bytes."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from gmodiff.io import bands
from gmodiff.io.preview import tonemap_preview
from gmodiff.io.tonemap import RenditionConfig, render_sdr


def _old_reinhard(hdr: np.ndarray, gain: float) -> np.ndarray:
    """The rendition before issue 29: per-channel x/(1+x), sRGB."""
    x = np.maximum(hdr * gain, 0.0)
    y = x / (1.0 + x)
    enc = np.where(y <= 0.0031308, 12.92 * y, 1.055 * np.power(y, 1 / 2.4) - 0.055)
    return np.clip(np.rint(enc * 255), 0, 255).astype(np.uint8)


def _landscape(h: int = 96, w: int = 128) -> np.ndarray:
    """Blue sky (1.5× nominal white) with a sun disk (200×) over textured ground at mid-grey."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    hdr = np.empty((h, w, 3), np.float32)
    sky = yy < h // 2
    hdr[sky] = np.array([0.25, 0.45, 1.0], np.float32) * 1.5 / 0.45  # luminance 1.5, blue 3.3
    ground = 0.18 * (1 + 0.3 * rng.standard_normal((h, w))).clip(0.2, 2)
    hdr[~sky] = (ground[..., None] * np.array([0.9, 1.0, 0.8]))[~sky]
    sun = (yy - h // 5) ** 2 + (xx - w // 3) ** 2 < 16
    hdr[sun] = 200.0
    return hdr


def _saturation(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.float64)
    hi, lo = rgb.max(-1), rgb.min(-1)
    return (hi - lo) / np.maximum(hi, 1)


def test_bright_input_reaches_white_and_the_sun_is_white():
    hdr = _landscape()
    out = render_sdr(hdr, 1.0)
    sun = (hdr > 100).all(-1)
    assert (out[sun] == 255).all()  # white, not Reinhard's grey (old: 254 at 200×, 188 at 1×)
    # a flat area at 1.5 stops over nominal white (fog, overcast sky) reaches near white too
    fog = render_sdr(np.full((32, 32, 3), 2.0, np.float32), 1.0)
    assert fog.min() >= 240
    assert _old_reinhard(np.full((1, 1, 3), 2.0, np.float32), 1.0).max() < 230


def test_blue_sky_keeps_its_saturation_and_hue():
    hdr = _landscape()
    sky = np.zeros(hdr.shape[:2], bool)
    sky[5:40, 60:120] = True
    new, old = render_sdr(hdr, 1.0)[sky], _old_reinhard(hdr, 1.0)[sky]
    assert np.median(_saturation(new)) > np.median(_saturation(old)) + 0.1  # 0.31 vs 0.17
    assert (new.argmax(-1) == 2).all()  # still blue
    assert np.median(new[:, 2]) >= 250  # and bright


def _stops_from_as_shot(value: float, linear: float) -> float:
    """How far (stops) an 8-bit sRGB value is from the sRGB encoding of ``linear``."""
    v = value / 255
    decoded = v / 12.92 if v <= 0.04045 else ((v + 0.055) / 1.055) ** 2.4
    return float(np.log2(decoded / linear))


def test_mid_grey_is_rendered_as_shot():
    """Mid-tones stay within a third of a stop of the exposure's sRGB level (the camera JPEG's);
    the curve only lifts them a little when the image has no highlights to make room for."""
    flat = np.full((40, 40, 3), 0.18, np.float32)
    assert 0 <= _stops_from_as_shot(render_sdr(flat, 1.0).mean(), 0.18) < 0.35
    scene = np.full((40, 40, 3), 0.18, np.float32)
    scene[:20] = 2.0  # a bright sky above
    assert abs(_stops_from_as_shot(render_sdr(scene, 1.0)[30:].mean(), 0.18)) < 0.2
    levels = [render_sdr(np.full((8, 8, 3), v, np.float32), 1.0).mean() for v in
              (0.0, 0.01, 0.1, 0.5, 1.0, 4.0, 100.0)]
    assert np.all(np.diff(levels) >= 0) and levels[0] == 0


def test_detail_is_kept_in_compressed_highlights():
    """A textured bright sky keeps visible texture after its base is brought under white."""
    rng = np.random.default_rng(1)
    sky = 8.0 * np.exp2(0.5 * rng.standard_normal((64, 64)))[..., None].repeat(3, -1)
    out = render_sdr(sky.astype(np.float32), 1.0).astype(np.float64)
    assert out.std() > 8 and out.mean() < 250


def test_preview_ultrahdr_base_and_web_view_are_the_same_rendition(tmp_path):
    from gmodiff.io.ultrahdr import encode_ultrahdr
    from gmodiff.serve.render import HDRCache, preview_png

    hdr = _landscape(48, 64)
    np.testing.assert_array_equal(tonemap_preview(hdr, 0.7), render_sdr(hdr, 0.7))
    data = encode_ultrahdr(hdr, 0.7)
    with Image.open(io.BytesIO(data)) as im:
        base = np.asarray(im.convert("RGB"), np.float32)
    assert np.median(np.abs(base - render_sdr(hdr, 0.7))) <= 1.0  # JPEG error only
    np.save(tmp_path / "main.npy", hdr)
    cache = HDRCache()
    _, auto = cache.get(tmp_path / "main.npy")
    with Image.open(io.BytesIO(preview_png(cache, tmp_path / "main.npy", tmp_path / "main.npy", 1.0))) as im:
        web = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(web, render_sdr(hdr, auto * 2.0))


@pytest.mark.parametrize("shape", [(45, 37), (61, 90)])
def test_banded_rendition_equals_one_band(monkeypatch, shape):
    rng = np.random.default_rng(4)
    hdr = (rng.random((*shape, 3), dtype=np.float32) ** 4 * 50).astype(np.float32)
    hdr[3, 3] = np.nan
    hdr[5, 1] = -1.0
    config = RenditionConfig(guide_side=16)  # blocks of 3–6 px: the low-res solve is exercised
    monkeypatch.setattr(bands, "BAND_ROWS", 10_000)
    whole = render_sdr(hdr, 1.3, config)
    monkeypatch.setattr(bands, "BAND_ROWS", 8)
    np.testing.assert_array_equal(render_sdr(hdr, 1.3, config), whole)
    monkeypatch.setattr(bands, "BAND_ROWS", 7)  # bands that split blocks
    np.testing.assert_array_equal(render_sdr(hdr, 1.3, config), whole)
