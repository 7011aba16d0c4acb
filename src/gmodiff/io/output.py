"""One place that picks the HDR output format from the file extension."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmodiff.io.dng import dng_metadata, write_dng
from gmodiff.io.hdr import write_hdr
from gmodiff.io.paths import DNG_SUFFIXES, ULTRAHDR_SUFFIXES, supported_output
from gmodiff.io.ultrahdr import write_ultrahdr


def write_output(path: str | Path, hdr: np.ndarray, float_exr: bool = False,
                 radiance_scale: float | None = None, metadata=None,
                 source: str | Path | None = None, exposure: float | None = None) -> None:
    """Write linear HDR by extension: .hdr Radiance, .exr OpenEXR (half unless ``float_exr``),
    .jpg/.jpeg Ultra HDR (``radiance_scale`` sets SDR white; None = auto), .dng linear float
    DNG (``gmodiff.io.dng``; its metadata is read from ``source``, the reference frame's file).
    Atomic: a folder that turned unwritable since :func:`check_output_path` is the atomic
    writer's OutputError. ``metadata`` (:class:`gmodiff.io.metadata.CarriedMetadata`) goes into
    .jpg and .exr files. ``exposure`` multiplies the .hdr/.exr pixels and is stated in their
    headers (the file's units; see :func:`gmodiff.io.hdr.declared_exposure`); an Ultra HDR
    file's radiance, as :func:`gmodiff.io.ultrahdr.read` returns it, is in the same units."""
    path = supported_output(Path(path))
    suffix = path.suffix.lower()
    if suffix in DNG_SUFFIXES:
        write_dng(path, hdr, dng_metadata(source),
                  display_scale=radiance_scale if radiance_scale is not None else 1.0)
    elif suffix in ULTRAHDR_SUFFIXES:
        write_ultrahdr(path, hdr, radiance_scale=radiance_scale,
                       exif=metadata.exif if metadata is not None else None,
                       exposure=1.0 if exposure is None else exposure)
    else:
        attributes = metadata.attributes if metadata is not None and suffix == ".exr" else None
        write_hdr(path, hdr, half=not float_exr, exposure=exposure, attributes=attributes or None)
