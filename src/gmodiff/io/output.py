"""One place that picks the HDR output format from the file extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmodiff.errors import OutputError
from gmodiff.io.hdr import HDR_SUFFIXES, write_hdr

ULTRAHDR_SUFFIXES = (".jpg", ".jpeg")
OUTPUT_SUFFIXES = HDR_SUFFIXES + ULTRAHDR_SUFFIXES


def check_output_path(path: str | Path) -> Path:
    """Fail early (before any compute) on an output extension we cannot write."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"unsupported output extension '{path.suffix}'", path,
                          "use .hdr (Radiance), .exr (OpenEXR) or .jpg (Ultra HDR JPEG)")
    return path


def write_output(path: str | Path, hdr: np.ndarray, float_exr: bool = False,
                 radiance_scale: float | None = None) -> None:
    """Write linear HDR by extension: .hdr Radiance, .exr OpenEXR (half unless ``float_exr``),
    .jpg/.jpeg Ultra HDR (``radiance_scale`` sets SDR white; None = auto). Atomic."""
    path = check_output_path(path)
    suffix = path.suffix.lower()
    if suffix in ULTRAHDR_SUFFIXES:
        from gmodiff.io.ultrahdr import write_ultrahdr

        write_ultrahdr(path, hdr, radiance_scale=radiance_scale)
    else:
        write_hdr(path, hdr, half=not float_exr)
