"""Will these images fit in memory? An estimate from their headers, checked before decoding.

The per-side caps (``MAX_SIDE``) stop corrupt headers; this stops a valid but huge bracket
(three 20000×20000 frames need tens of GB) from being decoded until the machine runs out, by
comparing what decoding and merging will hold against the memory this process can still get.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from gmodiff.errors import ImageReadError
from gmodiff.memory import available_memory, format_bytes

BYTES_PER_FRAME_PIXEL = 24
"""Held per pixel of each frame while loading and merging: the float32 RGB frame (12 B) plus
the decoder's buffer and the frame's share of the working copies and result (12 B)."""
BYTES_PER_HDR_PIXEL = 12
"""A float32 RGB radiance image (ground truth)."""


def estimate_bytes(frame_sizes: Sequence[tuple[int, int]],
                   hdr_sizes: Sequence[tuple[int, int]] = ()) -> int:
    """Bytes needed to load and merge frames of these (height, width) plus HDR images."""
    frames = sum(h * w for h, w in frame_sizes) * BYTES_PER_FRAME_PIXEL
    return frames + sum(h * w for h, w in hdr_sizes) * BYTES_PER_HDR_PIXEL


def check_fits_in_memory(frame_paths: Sequence[Path], hdr_paths: Sequence[Path] = (),
                         available: int | None = None) -> int:
    """Refuse, before decoding, images whose estimated footprint exceeds the available memory.

    Sizes come from the file headers (the per-side caps apply too). Returns the estimate in
    bytes; raises ``ImageReadError`` naming the largest frame and the memory it would need.
    """
    from gmodiff.io.hdr import hdr_size
    from gmodiff.io.frames import frame_size

    frame_paths = [Path(p) for p in frame_paths]
    frame_sizes = [frame_size(p) for p in frame_paths]
    hdr_sizes = [hdr_size(p) for p in hdr_paths]
    needed = estimate_bytes(frame_sizes, hdr_sizes)
    available = available_memory() if available is None else available
    if available is not None and needed > available and frame_paths:
        largest = max(range(len(frame_paths)), key=lambda i: frame_sizes[i][0] * frame_sizes[i][1])
        height, width = frame_sizes[largest]
        raise ImageReadError(
            f"{len(frame_paths)} frames of {width}x{height} need about {format_bytes(needed)} "
            f"of memory, only {format_bytes(available)} is available", frame_paths[largest],
            "downscale or crop the frames, or free memory")
    return needed
