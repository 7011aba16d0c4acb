"""Fuzz the Ultra HDR JPEG reader: random bytes, mutated valid files, hostile metadata and sizes.

``ultrahdr.read`` must return finite, non-negative HDR or raise a ``GmodiffError`` naming the
file, within 2 s and with peak allocation bounded by the reader's size cap, never what a corrupt
SOF header claims.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import FUZZ_SETTINGS, guarded_call, mutate
from gmodiff.io import ultrahdr
from gmodiff.io.jpeg_segments import header_segments

_edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                  min_size=1, max_size=6)
MAX_BYTES = 64 << 20


def _hdr(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 0.05 + 0.4 * np.sin(5 * xx / w + 2 * yy / h) ** 2 + 3.0 * (xx > w / 2)
    return np.stack([base, 0.7 * base, 0.5 * base + 0.01], -1).astype(np.float32)


@pytest.fixture(scope="module")
def valid(tmp_path_factory) -> bytes:
    path = tmp_path_factory.mktemp("uhdr") / "seed.jpg"
    ultrahdr.write_ultrahdr(path, _hdr(16, 24), radiance_scale=2.0)
    return path.read_bytes()


def _check(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.jpg"
    path.write_bytes(data)
    image, err = guarded_call(ultrahdr.read, path, seconds=2.0, max_bytes=MAX_BYTES)
    if err is not None:
        assert err.path == path, f"error does not name the file: {err}"
        return
    assert image.sdr.dtype == np.uint8 and image.sdr.ndim == 3 and image.sdr.shape[2] == 3
    assert image.hdr.dtype == np.float32 and image.hdr.shape == image.sdr.shape
    assert np.isfinite(image.hdr).all(), "reader returned NaN/inf HDR"
    assert np.isfinite(image.radiance_scale) and image.radiance_scale > 0


def test_seed_file_reads(tmp_path, valid):
    _check(tmp_path, valid)


@FUZZ_SETTINGS
@given(prefix=st.sampled_from([b"", b"\xff\xd8", b"\xff\xd8\xff\xe1\x00\x10"]),
       body=st.binary(max_size=1024))
def test_random_bytes(tmp_path, prefix, body):
    _check(tmp_path, prefix + body)


@FUZZ_SETTINGS
@given(edits=_edits)
def test_mutated_valid_file(tmp_path, valid, edits):
    _check(tmp_path, mutate(valid, edits))


@FUZZ_SETTINGS
@given(edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1200), st.integers(0, 255)),
                      min_size=1, max_size=6))
def test_mutated_headers(tmp_path, valid, edits):
    """Edits confined to the first 1200 bytes: the XMP, ISO 21496-1 and MPF segments."""
    head, tail = valid[:1200], valid[1200:]
    _check(tmp_path, mutate(head, edits) + tail)


def _replace_attr(data: bytes, name: bytes, value: bytes) -> bytes:
    """Set an hdrgm attribute of the gain-map XMP, padded with spaces to keep every offset."""
    gain_map_xmp = data.index(b"hdrgm:GainMapMax")
    start = data.index(b"hdrgm:" + name + b'="', gain_map_xmp - 2000) + len(name) + 8
    end = data.index(b'"', start)
    assert len(value) <= end - start
    return data[:start] + value.ljust(end - start) + data[end:]


def _without_iso(data: bytes) -> bytes:
    """Blank the ISO 21496-1 block of the gain-map image so the XMP metadata is used."""
    return data.replace(b"urn:iso:std:iso:ts:21496:-1\x00", b"urn:iso:std:iso:ts:XXXXX:-1\x00")


@pytest.mark.parametrize("name,value", [(b"Gamma", b"0"), (b"GainMapMax", b"1e30"),
                                        (b"GainMapMin", b"-1e30"), (b"GainMapMax", b"nan"),
                                        (b"OffsetSDR", b"-1"), (b"GainMapMin", b"inf")])
def test_hostile_xmp_metadata(tmp_path, valid, name, value):
    _check(tmp_path, _replace_attr(_without_iso(valid), name, value))


def _sof_offsets(data: bytes) -> list[int]:
    """Offsets of the height field of every SOF0 segment (primary and gain-map JPEGs)."""
    offsets, start = [], 0
    while (start := data.find(b"\xff\xd8\xff", start)) >= 0:
        try:
            offsets += [seg.start + 5 for seg in header_segments(data, start) if seg.marker == 0xC0]
        except ValueError:
            pass
        start += 3
    return offsets


@pytest.mark.parametrize("which", [0, 1])
@pytest.mark.parametrize("height,width", [(65535, 65535), (30000, 30000), (20001, 16)])
def test_huge_claimed_size_rejected_without_allocating(tmp_path, valid, which, height, width):
    offsets = _sof_offsets(valid)
    assert len(offsets) == 2
    at = offsets[which]
    data = valid[:at] + struct.pack(">HH", height, width) + valid[at + 4:]
    path = tmp_path / "huge.jpg"
    path.write_bytes(data)
    _, err = guarded_call(ultrahdr.read, path, seconds=2.0, max_bytes=MAX_BYTES)
    assert err is not None and "huge.jpg" in str(err)
