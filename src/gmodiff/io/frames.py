"""One reader for bracket frames of any kind: LDR images (``gmodiff.io.ldr``) or camera raw files
(``gmodiff.io.raw``), as the ``Scene`` frames the methods take.

Raw data is linear, so its camera curve is known: a raw frame enters a ``Scene`` as
``linear ** (1 / 2.2)`` (float32, nothing quantised), exactly the encoding the networks' inputs
(``L**2.2 / t``), the classical merges and the canonical re-encoding assume, and the scene says
so (``Scene.encoding == RAW_ENCODING``): no curve is estimated for it, and inverting the
encoding gives back the raw radiance to float precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from gmodiff.camera.radiance import GAMMA
from gmodiff.errors import SceneError
from gmodiff.io.exif import exposures_from_exif, relative_exposures
from gmodiff.io.ldr import ldr_size, read_ldr
from gmodiff.io.raw import is_raw, raw_exposure_info, raw_size, read_raw

RAW_GAMMA = GAMMA
"""The encoding of raw frames in a Scene: the networks' own ``gmodiff.camera.radiance.GAMMA``."""
RAW_ENCODING = "linear-gamma2.2"
"""``Scene.encoding`` of frames that are exactly ``linear ** (1 / RAW_GAMMA)`` (raw input)."""


def encode_linear(linear: np.ndarray) -> np.ndarray:
    """Linear values → the Scene encoding of raw frames, float32 in [0, 1]."""
    return np.power(np.clip(np.asarray(linear, np.float32), 0.0, 1.0),
                    np.float32(1.0 / RAW_GAMMA)).astype(np.float32)


def decode_linear(encoded: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_linear`."""
    return np.power(np.clip(np.asarray(encoded, np.float32), 0.0, 1.0),
                    np.float32(RAW_GAMMA)).astype(np.float32)


def bracket_kind(paths: Sequence[Path]) -> str | None:
    """``RAW_ENCODING`` when every file is a camera raw file, None when none is; a bracket mixing
    the two is refused (a raw frame and a JPEG of one shot differ by an unknown tone curve)."""
    raw = [is_raw(p) for p in paths]
    if all(raw):
        return RAW_ENCODING
    if any(raw):
        first_raw = paths[raw.index(True)]
        other = paths[raw.index(False)]
        raise SceneError(f"the bracket mixes raw files ({first_raw.name}) and other images "
                         f"({other.name})", other,
                         "pass only the raw files of the bracket (or only the JPEG/TIFF frames)")
    return None


def read_frame(path: str | Path) -> np.ndarray:
    """A bracket frame as float32 (H, W, 3) in [0, 1]: LDR as stored, raw encoded linearly."""
    path = Path(path)
    if is_raw(path):
        return encode_linear(read_raw(path).linear)
    return read_ldr(path).pixels


def frame_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a frame from its header (raw: as decoded, upright)."""
    return raw_size(path) if is_raw(path) else ldr_size(path)


def frame_exposures(paths: Sequence[str | Path]) -> np.ndarray:
    """Relative exposures from EXIF (raw files: as LibRaw reads them), the shortest 1."""
    if all(is_raw(p) for p in paths):
        return relative_exposures([raw_exposure_info(p) for p in paths], paths)
    return exposures_from_exif(paths)
