"""Output paths checked before any compute: a supported extension, a writable folder, not an input."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gmodiff.errors import OutputError
from gmodiff.io.hdr import HDR_SUFFIXES

ULTRAHDR_SUFFIXES = (".jpg", ".jpeg")
OUTPUT_SUFFIXES = HDR_SUFFIXES + ULTRAHDR_SUFFIXES
MIN_FREE_BYTES = 64 * 1024
"""A folder on a file system with less free space than this is "full" before any compute."""


def check_output_path(path: str | Path) -> Path:
    """Fail early (before any compute) on an output extension or folder we cannot write."""
    path = supported_output(Path(path))
    check_writable_folder(path.parent, path)
    return path


def supported_output(path: Path) -> Path:
    """``path`` if its extension is one we write, else an OutputError naming the choices."""
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
