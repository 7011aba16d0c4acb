"""Fuzz the ``exposure.txt`` parser, directly and through ``load_scene`` on a real scene folder.

Any bytes must either parse to finite exposure values or raise ``ExposureError`` naming the
file; through ``load_scene`` a scene that loads must have finite, strictly increasing exposure
times with the shortest at 1. Each call is time- and allocation-guarded.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fuzz_support import FUZZ_SETTINGS, guarded_call, mutate
from gmodiff.errors import ExposureError
from gmodiff.io import scene as scene_io
from gmodiff.io.ldr import write_ldr
from gmodiff.io.scene import load_scene, read_exposure_stops

_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-10**30, 10**30).map(str),
    st.sampled_from(["0", "2", "4", "-2", "nan", "inf", "-inf", "1e400", "1_0", "0x10", "٣",
                     "+1.5", ".", "e", "--1", "1,5", "2.0\x00", "1e-400", "NaN", "Infinity"]),
)
_separators = st.sampled_from([" ", "\n", "\t", "\r\n", ", ", "\x0b", "\u3000", ""])


@st.composite
def _exposure_text(draw) -> bytes:
    tokens = draw(st.lists(_numbers, max_size=6))
    text = "".join(t + draw(_separators) for t in tokens)
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    return text.encode(encoding, errors="replace")


_increasing_triples = st.lists(st.floats(-1e300, 1e300), min_size=3, max_size=3, unique=True).map(
    lambda values: " ".join(repr(v) for v in sorted(values)).encode())
_exposure_bytes = st.one_of(_exposure_text(), st.binary(max_size=512), _increasing_triples,
                            st.tuples(st.sampled_from([b"0\n2\n4\n", b"-2 0 2", b"0 1.5 3\n"]),
                                      st.lists(st.tuples(st.integers(0, 3), st.integers(0, 99),
                                                         st.integers(0, 255)), max_size=4))
                            .map(lambda pair: mutate(*pair)))


def _check_stops(path, data: bytes) -> np.ndarray | None:
    path.write_bytes(data)
    stops, err = guarded_call(read_exposure_stops, path, seconds=1.0,
                              max_bytes=(1 << 20) + 64 * len(data))
    if err is not None:
        assert isinstance(err, ExposureError) and err.path == path, repr(err)
        return None
    assert stops.dtype == np.float64 and stops.ndim == 1
    assert np.isfinite(stops).all()
    return stops


@FUZZ_SETTINGS
@given(data=_exposure_bytes)
def test_parser_on_fuzzed_bytes(tmp_path, data):
    _check_stops(tmp_path / "exposure.txt", data)


@pytest.fixture(scope="module")
def scene_folder(tmp_path_factory):
    """A valid three-frame 8x8 scene whose exposure.txt each example overwrites."""
    folder = tmp_path_factory.mktemp("fuzz-scene")
    rng = np.random.default_rng(0)
    for k in range(1, 4):
        write_ldr(folder / f"input_{k}.tif", rng.random((8, 8, 3)).astype(np.float32))
    return folder


@FUZZ_SETTINGS
@given(data=_exposure_bytes)
def test_load_scene_on_fuzzed_exposure(scene_folder, data):
    (scene_folder / "exposure.txt").write_bytes(data)
    scene, err = guarded_call(load_scene, scene_folder, seconds=2.0, max_bytes=8 << 20)
    if err is not None:
        assert isinstance(err, ExposureError), repr(err)
        return
    times = np.asarray(scene.exposure_times)
    assert times.shape == (3,) and np.isfinite(times).all(), times
    # Stops closer than float64 can resolve after 2**x may give equal times; never decreasing.
    assert times.min() == 1.0 and np.all(np.diff(times) >= 0), times


def test_huge_exposure_file_rejected_without_reading_it(tmp_path):
    """A multi-megabyte exposure.txt (e.g. a mis-named image) is refused before it is read."""
    path = tmp_path / "exposure.txt"
    with open(path, "wb") as f:
        f.truncate(200 << 20)  # sparse 200 MB file: costs no disk
    _, err = guarded_call(read_exposure_stops, path, seconds=1.0, max_bytes=1 << 20)
    assert isinstance(err, ExposureError) and "exposure.txt" in str(err)
    assert scene_io.MAX_EXPOSURE_FILE_BYTES <= 1 << 20


def test_absurd_exposure_span_rejected(tmp_path, scene_folder):
    """Stops so far apart that 2**stops overflows are refused, not turned into inf times."""
    (scene_folder / "exposure.txt").write_text("0 1 1e300\n")
    _, err = guarded_call(load_scene, scene_folder, seconds=2.0)
    assert isinstance(err, ExposureError) and "exposure.txt" in str(err)
