"""Fuzz the Radiance ``.hdr`` reader: random bytes, mutated valid files, hostile headers.

Every input must either decode to a finite float32 (H, W, 3) image or raise a ``GmodiffError``;
no call may take more than 2 s, and peak allocation must stay proportional to the file size
(the reader checks the claimed size against ``MAX_SIDE`` and against the bytes present before
allocating any pixel buffer).
"""

from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import FUZZ_SETTINGS, guarded_call, mutate
from gmodiff.errors import ImageReadError
from gmodiff.io import hdr as hdr_io
from gmodiff.io.hdr import read_hdr, write_hdr

# RLE packs up to 127 pixels into 2 bytes per component, so a valid file may legitimately
# decode to ~16 pixels per byte; decoding then holds a few float64 copies (~40 B/pixel).
BYTES_PER_INPUT_BYTE = 1024
BASE_BYTES = 2 << 20


def _budget(data: bytes) -> int:
    return BASE_BYTES + BYTES_PER_INPUT_BYTE * len(data)


def _valid_file(tmp_path, h: int, w: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = (rng.random((h, w, 3)) ** 3 * 8).astype(np.float32)
    rgb[: h // 2] = 0.25  # flat rows: long runs in the RLE path
    path = tmp_path / f"seed-{h}x{w}.hdr"
    write_hdr(path, rgb)
    return path.read_bytes()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory) -> list[bytes]:
    """Valid files: new-style RLE (8 <= W <= 32767) and flat (W < 8) scanlines."""
    tmp = tmp_path_factory.mktemp("hdr-seeds")
    return [_valid_file(tmp, 6, 40, 0), _valid_file(tmp, 5, 5, 1), _valid_file(tmp, 3, 130, 2)]


def _check(tmp_path, data: bytes) -> None:
    path = tmp_path / "fuzz.hdr"
    path.write_bytes(data)
    rgb, err = guarded_call(read_hdr, path, seconds=2.0, max_bytes=_budget(data))
    if err is not None:
        assert err.path == path, f"error does not name the file: {err}"
        return
    assert rgb.dtype == np.float32 and rgb.ndim == 3 and rgb.shape[2] == 3
    assert 0 < rgb.shape[0] <= hdr_io.MAX_SIDE and 0 < rgb.shape[1] <= hdr_io.MAX_SIDE
    assert np.isfinite(rgb).all() and rgb.min() >= 0


@FUZZ_SETTINGS
@given(prefix=st.sampled_from([b"", b"#?", b"#?RADIANCE\n", b"#?RGBE\nFORMAT=32-bit_rle_rgbe\n\n"]),
       body=st.binary(max_size=2048))
def test_random_bytes(tmp_path, prefix, body):
    _check(tmp_path, prefix + body)


@FUZZ_SETTINGS
@given(which=st.integers(0, 2),
       edits=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 16), st.integers(0, 255)),
                      min_size=1, max_size=8))
def test_mutated_valid_files(tmp_path, seeds, which, edits):
    _check(tmp_path, mutate(seeds[which], edits))


_axes = st.sampled_from([b"-Y", b"+Y", b"-X", b"+X", b"Y", b"-Z"])
_sizes = st.one_of(st.integers(0, 300), st.integers(0, 10**9), st.sampled_from([20000, 20001]))


@FUZZ_SETTINGS
@given(header=st.lists(st.sampled_from([b"FORMAT=32-bit_rle_rgbe", b"FORMAT=32-bit_rle_xyze",
                                        b"EXPOSURE=2.0", b"# comment", b"GAMMA=1"]), max_size=3),
       a1=_axes, n1=_sizes, a2=_axes, n2=_sizes, body=st.binary(max_size=1024),
       rle_head=st.booleans())
def test_structured_headers(tmp_path, header, a1, n1, a2, n2, body, rle_head):
    resolution = a1 + b" %d " % n1 + a2 + b" %d\n" % n2
    if rle_head:  # make the first scanline look like new-style RLE to reach that decoder
        body = bytes((2, 2, (n2 >> 8) & 0x7F, n2 & 0xFF)) + body
    _check(tmp_path, b"#?RADIANCE\n" + b"\n".join(header) + b"\n\n" + resolution + body)


@pytest.mark.parametrize("resolution", [b"-Y 1000000 +X 1000000", b"-Y 999999999 +X 1",
                                        b"-Y 20000 +X 20000", b"-Y 20001 +X 8",
                                        b"-Y 1 +X 20001"])
def test_huge_claimed_size_rejected_fast_without_allocating(tmp_path, resolution):
    """The cap is MAX_SIDE = 20000 per side; at or under it, missing bytes are caught first."""
    assert hdr_io.MAX_SIDE == 20000
    data = b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + resolution + b"\n" + b"\x02\x02\x4e\x20" * 4
    path = tmp_path / "huge.hdr"
    path.write_bytes(data)
    # "Without allocating" is the 1 MiB allocation bound; the time limit only guards a hang
    # (a speed bound would fail on a loaded machine).
    _, err = guarded_call(read_hdr, path, seconds=60.0, max_bytes=1 << 20)
    assert isinstance(err, ImageReadError)
    assert "huge.hdr" in str(err)
