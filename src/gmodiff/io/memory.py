"""Will these images fit in memory? An estimate from their headers, checked before decoding.

This module is the one place where frame sizes are read from headers and judged before any
pixel is decoded, whatever the format: the per-side cap (``gmodiff.io.ldr.MAX_SIDE``) stops
corrupt headers; the loader's estimate stops a valid but huge bracket (three 20000×20000 frames
need tens of GB) from being decoded until the machine runs out; and a run's own memory plan
(``run_check``, e.g. :func:`gmodiff.memory.plan_memory` for GMODiff) refuses, before decoding,
frames the reconstruction could not hold, so a few-KB file whose header claims 12000×12000 is
refused up front instead of failing minutes later with a MemoryError. Readers of other formats
(camera raw, HEIC) join with :func:`register_header_reader` and call :func:`check_frame_size`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from gmodiff.errors import ImageReadError
from gmodiff.io.raw import is_raw, raw_size
from gmodiff.memory import available_memory, format_bytes

BYTES_PER_FRAME_PIXEL = 24
"""Held per pixel of each frame while loading and merging: the float32 RGB frame (12 B) plus
the decoder's buffer and the frame's share of the working copies and result (12 B)."""
BYTES_PER_HDR_PIXEL = 12
"""A float32 RGB radiance image (ground truth)."""

HeaderReader = Callable[[Path], tuple[int, int]]
"""``reader(path) -> (height, width)`` from a file's header, without decoding its pixels."""
RunCheck = Callable[[Path, int, int], None]
"""``check(path, height, width)``: raises a ``GmodiffError`` when a run cannot hold frames of
this size (called with the largest frame, before any is decoded)."""
_HEADER_READERS: dict[str, HeaderReader] = {}


def register_header_reader(suffixes: Sequence[str], reader: HeaderReader) -> None:
    """Let frames of another format (e.g. ``.arw``, ``.heic``) through the checks made before
    decoding: ``reader(path)`` gives (height, width) from the header; its size is then judged
    by :func:`check_frame_size` and the memory estimate like any JPEG/PNG/TIFF frame."""
    for suffix in suffixes:
        _HEADER_READERS[suffix.lower()] = reader


def check_frame_size(path: str | Path, height: int, width: int) -> None:
    """The per-frame size rule (not empty, at most ``MAX_SIDE`` a side), for any reader to call
    on a header before decoding; raises ``ImageReadError`` naming the file and the size."""
    from gmodiff.io.ldr import check_size

    check_size(Path(path), int(height), int(width))


def frame_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a frame from its header, size rule applied: JPEG/PNG/TIFF by
    :func:`gmodiff.io.ldr.ldr_size`, other formats by their registered header reader."""
    from gmodiff.io.ldr import ldr_size

    path = Path(path)
    reader = _HEADER_READERS.get(path.suffix.lower())
    if reader is None and is_raw(path):
        reader = raw_size
    if reader is None:
        return ldr_size(path)
    height, width = reader(path)
    check_frame_size(path, height, width)
    return int(height), int(width)


def estimate_bytes(frame_sizes: Sequence[tuple[int, int]],
                   hdr_sizes: Sequence[tuple[int, int]] = ()) -> int:
    """Bytes needed to load and merge frames of these (height, width) plus HDR images."""
    frames = sum(h * w for h, w in frame_sizes) * BYTES_PER_FRAME_PIXEL
    return frames + sum(h * w for h, w in hdr_sizes) * BYTES_PER_HDR_PIXEL


def check_fits_in_memory(frame_paths: Sequence[Path], hdr_paths: Sequence[Path] = (),
                         available: int | None = None, run_check: RunCheck | None = None) -> int:
    """Refuse, before decoding, images whose estimated footprint exceeds the available memory.

    Sizes come from the file headers (the per-side caps apply too); ``run_check``, when given,
    is the reconstruction's own plan, called with the largest frame. Returns the estimate in
    bytes; raises ``ImageReadError`` naming the largest frame and the memory it would need.
    """
    from gmodiff.io.hdr import hdr_size

    frame_paths = [Path(p) for p in frame_paths]
    frame_sizes = [frame_size(p) for p in frame_paths]
    hdr_sizes = [hdr_size(p) for p in hdr_paths]
    needed = estimate_bytes(frame_sizes, hdr_sizes)
    if not frame_paths:
        return needed
    largest = max(range(len(frame_paths)), key=lambda i: frame_sizes[i][0] * frame_sizes[i][1])
    height, width = frame_sizes[largest]
    available = available_memory() if available is None else available
    if available is not None and needed > available:
        raise ImageReadError(
            f"{len(frame_paths)} frames of {width}x{height} need about {format_bytes(needed)} "
            f"of memory, only {format_bytes(available)} is available", frame_paths[largest],
            "downscale or crop the frames, or free memory")
    if run_check is not None:
        run_check(frame_paths[largest], height, width)
    return needed
