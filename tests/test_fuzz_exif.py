"""Fuzz the EXIF reader: raw blocks, and JPEG/TIFF files whose EXIF is mutated.

``parse_exif_bytes`` never raises (corrupt EXIF counts as absent); ``read_exif`` raises only
``ImageReadError`` (the file is no image). Whatever comes back holds positive finite numbers or
None and an orientation in 1..8. Each call is time- and allocation-guarded.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bracket_helpers import exif_bytes
from fuzz_support import FUZZ_SETTINGS, guarded_call, mutate
from gmodiff.errors import ImageReadError
from gmodiff.io.exif import ExposureInfo, parse_exif_bytes, read_exif

_edits = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                  min_size=1, max_size=8)


def _check_info(info) -> None:
    assert isinstance(info, ExposureInfo)
    for value in (info.exposure_time_seconds, info.iso, info.f_number):
        assert value is None or (math.isfinite(value) and value > 0), info
    assert info.orientation in range(1, 9), info


@pytest.fixture(scope="module")
def blocks() -> list[bytes]:
    """Valid EXIF blocks: full settings, time only, and a rotated one."""
    return [exif_bytes(1 / 250, iso=400, f_number=2.8, orientation=6),
            exif_bytes(2.0, iso=None, f_number=None), exif_bytes(1 / 8000, iso=25600)]


def _jpeg(block: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(buf, "JPEG", exif=block)
    return buf.getvalue()


def _tiff(block: bytes) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 99, np.uint8)).save(buf, "TIFF", exif=block)
    return buf.getvalue()


@FUZZ_SETTINGS
@given(data=st.one_of(st.binary(max_size=1024),
                      st.binary(max_size=512).map(lambda b: b"Exif\x00\x00MM\x00\x2a" + b),
                      st.binary(max_size=512).map(lambda b: b"II\x2a\x00\x08\x00\x00\x00" + b)))
def test_raw_blocks_never_raise(data):
    info, err = guarded_call(parse_exif_bytes, data, seconds=1.0, max_bytes=8 << 20)
    assert err is None, f"parse_exif_bytes raised {err!r}"
    _check_info(info)


@FUZZ_SETTINGS
@given(which=st.integers(0, 2), edits=_edits)
def test_mutated_blocks_never_raise(blocks, which, edits):
    info, err = guarded_call(parse_exif_bytes, mutate(blocks[which], edits), seconds=1.0,
                             max_bytes=8 << 20)
    assert err is None, f"parse_exif_bytes raised {err!r}"
    _check_info(info)


@FUZZ_SETTINGS
@given(which=st.integers(0, 2), container=st.sampled_from([(".jpg", _jpeg), (".tif", _tiff)]),
       edits=_edits)
def test_mutated_files_raise_only_image_read_error(tmp_path, blocks, which, container, edits):
    suffix, build = container
    path = tmp_path / f"frame{suffix}"
    path.write_bytes(mutate(build(blocks[which]), edits))
    info, err = guarded_call(read_exif, path, seconds=2.0, max_bytes=16 << 20)
    if err is not None:
        assert isinstance(err, ImageReadError) and err.path == path, repr(err)
        return
    _check_info(info)
