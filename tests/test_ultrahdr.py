"""Ultra HDR JPEG: round trip through our reader, container layout, Pillow MPO, gainmap-js.

The gainmap-js check is independent of our reader: Node's @monogrid/gainmap-js
``extractGainmapFromJPEG`` finds the metadata (ISO 21496-1, else hdrgm XMP) and splits the two
JPEG streams via the MPF index; we decode those two JPEGs with Pillow and rebuild HDR with the
standard formula from *its* metadata.
"""

from __future__ import annotations

import base64
import io
import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.MpoImagePlugin import MpoImageFile

from gmodiff.errors import HDRValueError, ImageReadError
from gmodiff.io import ultrahdr
from gmodiff.io.jpeg_segments import header_segments, parse_mpf

REPO = Path(__file__).resolve().parents[1]
TOOLS = REPO / "tools"
SCALE = 4.0
# Bound on the relative error of decoded HDR vs the HDR we encoded, over well-exposed pixels
# (SDR base between 5% and 95%): median and 99th percentile. Measured: 0.7% / 3.6% (max 7%).
MEDIAN_BOUND = 0.02
P99_BOUND = 0.06


def _hdr(h: int = 64, w: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    x, y = xx / w, yy / h
    base = 0.02 + 0.3 * np.sin(7 * x + 3 * y) ** 2 + 2.0 * np.exp(-((x - 0.7) ** 2 + (y - 0.3) ** 2) / 0.01)
    return np.stack([base, 0.7 * base + 0.03 * y, 0.5 * base + 0.05 * x], -1).astype(np.float32)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("uhdr") / "out.jpg"
    hdr = _hdr()
    ultrahdr.write_ultrahdr(path, hdr, radiance_scale=SCALE)
    return path, hdr


def _well_exposed_errors(decoded: np.ndarray, target: np.ndarray, sdr: np.ndarray) -> np.ndarray:
    mask = np.all((sdr > 0.05 * 255) & (sdr < 0.95 * 255), axis=2)
    assert mask.mean() > 0.3
    return (np.abs(decoded - target) / target)[mask]


def test_round_trip_through_our_reader(written):
    path, hdr = written
    image = ultrahdr.read(path)
    assert image.sdr.shape == hdr.shape and image.sdr.dtype == np.uint8
    assert image.gain_map.shape == hdr.shape
    assert image.radiance_scale == pytest.approx(SCALE)
    assert image.metadata.gain_map_max[0] > image.metadata.gain_map_min[0]
    assert image.metadata.hdr_capacity_max == pytest.approx(image.metadata.gain_map_max[0], rel=1e-6)
    errors = _well_exposed_errors(image.radiance, hdr, image.sdr)
    assert np.median(errors) < MEDIAN_BOUND and np.percentile(errors, 99) < P99_BOUND
    # the highlights really are above SDR white
    assert image.hdr.max() > 2.0


def test_container_layout_matches_libultrahdr(written):
    path, _ = written
    data = path.read_bytes()
    segments = header_segments(data)
    xmp = [s.payload for s in segments if s.payload.startswith(b"http://ns.adobe.com/xap/1.0/")]
    assert len(xmp) == 1
    assert b'hdrgm:Version="1.0"' in xmp[0] and b"Container:Directory" in xmp[0]
    assert b'Item:Semantic="GainMap"' in xmp[0]
    iso = [s.payload for s in segments if s.payload.startswith(ultrahdr.ISO_NAMESPACE)]
    assert [len(p) - len(ultrahdr.ISO_NAMESPACE) for p in iso] == [4]  # version-only block
    mpf = [s for s in segments if s.payload.startswith(b"MPF\x00")]
    images = parse_mpf(mpf[0])
    assert len(images) == 2 and images[0].start == 0
    assert images[1].start == images[0].size and images[1].start + images[1].size == len(data)
    length = int(xmp[0].split(b'Item:Length="')[1].split(b'"')[0])
    assert length == images[1].size
    gain_map_segments = header_segments(data, images[1].start)
    payloads = [s.payload for s in gain_map_segments]
    assert any(b"hdrgm:GainMapMax" in p for p in payloads)
    full_iso = [p for p in payloads if p.startswith(ultrahdr.ISO_NAMESPACE)]
    meta = ultrahdr.decode_iso_metadata(full_iso[0][len(ultrahdr.ISO_NAMESPACE):])
    xmp_meta = ultrahdr.parse_hdrgm_xmp(next(p for p in payloads if b"hdrgm:GainMapMax" in p))
    np.testing.assert_allclose(meta.gain_map_max, xmp_meta.gain_map_max, rtol=1e-6)


def test_pillow_reads_a_two_frame_mpo(written):
    path, hdr = written
    # Pillow 13's Image.open deliberately reports Ultra HDR files (hdrgm XMP) as plain JPEG, so
    # its MPO reader is asked directly: the MPF index must expose both frames.
    with Image.open(path) as im:
        assert im.format == "JPEG" and im.size == (hdr.shape[1], hdr.shape[0])
    with MpoImageFile(path) as mpo:
        assert mpo.n_frames == 2
        mpo.seek(1)
        mpo.load()
        assert mpo.size == (hdr.shape[1], hdr.shape[0])


def test_iso_metadata_round_trip_per_channel():
    meta = ultrahdr.GainMapMetadata(gain_map_min=(-0.5, -0.25, 0.0), gain_map_max=(3.0, 3.5, 2.25),
                                    gamma=(1.0, 1.5, 2.0), hdr_capacity_min=0.0, hdr_capacity_max=3.5)
    back = ultrahdr.decode_iso_metadata(ultrahdr.encode_iso_metadata(meta))
    for a, b in zip((back.gain_map_min, back.gain_map_max, back.gamma, back.offset_sdr),
                    (meta.gain_map_min, meta.gain_map_max, meta.gamma, meta.offset_sdr)):
        np.testing.assert_allclose(a, b, rtol=1e-7)


def test_downscaled_gain_map_still_decodes(tmp_path):
    path = tmp_path / "small.jpg"
    hdr = _hdr()
    ultrahdr.write_ultrahdr(path, hdr, SCALE, ultrahdr.UltraHDRConfig(gain_map_downscale=4))
    image = ultrahdr.read(path)
    assert image.gain_map.shape[:2] == (hdr.shape[0] // 4, hdr.shape[1] // 4)
    errors = _well_exposed_errors(image.radiance, hdr, image.sdr)
    assert np.median(errors) < 0.1  # a smooth scene survives a 4× smaller gain map


def test_non_ultrahdr_and_corrupt_files_raise_our_errors(tmp_path, written):
    plain = tmp_path / "plain.jpg"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(plain)
    with pytest.raises(ImageReadError, match="not an Ultra HDR"):
        ultrahdr.read(plain)
    data = written[0].read_bytes()
    for name, corrupt in [("trunc.jpg", data[: len(data) // 3]), ("noise.jpg", b"\xff\xd8" + bytes(range(256)) * 4),
                          ("tail.jpg", data[: len(data) - 200])]:
        (tmp_path / name).write_bytes(corrupt)
        with pytest.raises(ImageReadError):
            ultrahdr.read(tmp_path / name)


def test_nan_hdr_is_refused_without_output(tmp_path):
    hdr = _hdr()
    hdr[0, 0, 0] = np.nan
    with pytest.raises(HDRValueError):
        ultrahdr.write_ultrahdr(tmp_path / "bad.jpg", hdr)
    assert list(tmp_path.iterdir()) == []


def _gainmap_js(path: Path) -> dict:
    if shutil.which("node") is None:
        pytest.skip("node is not installed: the gainmap-js check needs Node.js (make install)")
    if not (TOOLS / "node_modules" / "@monogrid" / "gainmap-js").is_dir():
        # node is here, so the check must run: a missing install is a failure, not a skip
        pytest.fail("tools/node_modules is missing: run `make install` (npm ci --prefix tools)")
    proc = subprocess.run(["node", str(TOOLS / "decode_gainmap.mjs"), str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_gainmap_js_decodes_our_file(written):
    path, hdr = written
    out = _gainmap_js(path)
    meta = out["metadata"]
    decode = lambda b64: np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("RGB"))  # noqa: E731
    sdr, gain_map = decode(out["sdr"]), decode(out["gainMap"]) / 255.0
    assert sdr.shape == hdr.shape
    lo, hi = np.array(meta["gainMapMin"]), np.array(meta["gainMapMax"])
    gamma, off_sdr, off_hdr = np.array(meta["gamma"]), np.array(meta["offsetSdr"]), np.array(meta["offsetHdr"])
    # standard gain-map formula, full boost (display headroom ≥ HDRCapacityMax → weight 1)
    log_gain = lo + (hi - lo) * gain_map ** (1 / gamma)
    rebuilt = (ultrahdr.srgb_to_linear(sdr / 255.0) + off_sdr) * np.exp2(log_gain) - off_hdr
    errors = _well_exposed_errors(rebuilt / SCALE, hdr, sdr)
    assert np.median(errors) < MEDIAN_BOUND, np.median(errors)
    assert np.percentile(errors, 99) < P99_BOUND, np.percentile(errors, 99)
    assert meta["hdrCapacityMax"] == pytest.approx(hi[0], rel=1e-6)


@pytest.mark.filterwarnings("ignore:Image appears to be a malformed MPO")
def test_mutated_files_raise_only_our_errors(tmp_path, written):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    data = written[0].read_bytes()

    @settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.integers(0, len(data) - 1), st.binary(min_size=1, max_size=16), st.booleans())
    def check(position, noise, truncate):
        mutated = data[:position] if truncate else data[:position] + noise + data[position + len(noise):]
        target = tmp_path / "m.jpg"
        target.write_bytes(mutated)
        try:
            image = ultrahdr.read(target)
        except (ImageReadError, HDRValueError) as err:  # corrupt structure / NaN-producing metadata
            assert "\n" not in str(err)
            return
        assert image.hdr.shape[2] == 3 and np.all(np.isfinite(image.hdr))

    check()
