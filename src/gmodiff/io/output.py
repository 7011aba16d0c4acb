"""One place that picks the HDR output format from the file extension."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from gmodiff.errors import OutputError
from gmodiff.io.hdr import HDR_SUFFIXES, write_hdr

ULTRAHDR_SUFFIXES = (".jpg", ".jpeg")
OUTPUT_SUFFIXES = HDR_SUFFIXES + ULTRAHDR_SUFFIXES
MIN_FREE_BYTES = 64 * 1024
"""A folder on a file system with less free space than this is "full" before any compute."""


def check_output_path(path: str | Path) -> Path:
    """Fail early (before any compute) on an output extension or folder we cannot write."""
    path = _supported(Path(path))
    check_writable_folder(path.parent, path)
    return path


def _supported(path: Path) -> Path:
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"unsupported output extension '{path.suffix}'", path,
                          "use .hdr (Radiance), .exr (OpenEXR) or .jpg (Ultra HDR JPEG)")
    return path


def check_writable_folder(folder: Path, target: Path | None = None) -> None:
    """Fail early when ``folder`` cannot be created or written in (missing folders are made at
    write time, so the nearest existing one must be a writable folder). Errors name ``target``,
    or ``folder`` itself."""
    named = target if target is not None else folder
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"'{existing}' is a file, not a folder", named,
                          "choose an output path under a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"no permission to write in '{existing}'", named,
                          "choose an output folder you can write to")
    try:
        stats = os.statvfs(existing)
    except (OSError, AttributeError):  # not every platform or file system says
        return
    if stats.f_bavail * stats.f_frsize < MIN_FREE_BYTES:
        raise OutputError(f"disk full: no free space in '{existing}'", named,
                          "free some space or choose another output folder")


def _same_file(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)  # symlinks and hard links included
    except OSError:  # one of them does not exist (yet)
        return os.path.abspath(a) == os.path.abspath(b)


def check_not_an_input(target: str | Path, inputs: Iterable[str | Path],
                       what: str = "output") -> None:
    """Refuse an output path that is one of the run's input files, by any name (relative path,
    symlink, hard link): writing it would replace an input frame or a ground truth."""
    target = Path(target)
    for source in inputs:
        source = Path(source)
        if source.exists() and _same_file(target, source):
            raise OutputError(f"the {what} would overwrite the input file '{source}'", target,
                              f"choose another {what} name, outside the input files")


def write_output(path: str | Path, hdr: np.ndarray, float_exr: bool = False,
                 radiance_scale: float | None = None, metadata=None,
                 exposure: float | None = None) -> None:
    """Write linear HDR by extension: .hdr Radiance, .exr OpenEXR (half unless ``float_exr``),
    .jpg/.jpeg Ultra HDR (``radiance_scale`` sets SDR white; None = auto). Atomic: a folder that
    turned unwritable since :func:`check_output_path` is the atomic writer's OutputError.
    ``metadata`` (:class:`gmodiff.io.metadata.CarriedMetadata`) goes into .jpg and .exr files.
    ``exposure`` multiplies the .hdr/.exr pixels and is stated in their headers (the file's
    units; see :func:`gmodiff.io.hdr.declared_exposure`); an Ultra HDR file's radiance, as
    :func:`gmodiff.io.ultrahdr.read` returns it, is in the same units."""
    path = _supported(Path(path))
    suffix = path.suffix.lower()
    if suffix in ULTRAHDR_SUFFIXES:
        from gmodiff.io.ultrahdr import write_ultrahdr

        write_ultrahdr(path, hdr, radiance_scale=radiance_scale,
                       exif=metadata.exif if metadata is not None else None,
                       exposure=1.0 if exposure is None else exposure)
    else:
        attributes = metadata.attributes if metadata is not None and suffix == ".exr" else None
        write_hdr(path, hdr, half=not float_exr, exposure=exposure, attributes=attributes or None)
