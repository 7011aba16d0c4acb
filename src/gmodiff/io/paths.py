"""Output paths checked before any compute: a supported extension, a writable folder, not an input."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from gmodiff.errors import OutputError
from gmodiff.io.hdr import HDR_SUFFIXES

ULTRAHDR_SUFFIXES = (".jpg", ".jpeg")
DNG_SUFFIXES = (".dng",)
OUTPUT_SUFFIXES = HDR_SUFFIXES + ULTRAHDR_SUFFIXES + DNG_SUFFIXES
MIN_FREE_BYTES = 64 * 1024
"""A folder on a file system with less free space than this is "full" before any compute."""


def check_output_path(path: str | Path) -> Path:
    """Fail early (before any compute) on an output extension or folder we cannot write, or an
    output name that is an existing folder."""
    path = Path(path)
    check_not_a_folder(path)
    path = supported_output(path)
    check_writable_folder(path.parent, path)
    return path


def supported_output(path: Path) -> Path:
    """``path`` if its extension is one we write, else an OutputError naming the choices."""
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise OutputError(f"unsupported output extension '{path.suffix}'", path,
                          "use .hdr (Radiance), .exr (OpenEXR), .jpg (Ultra HDR JPEG) or .dng "
                          "(linear float DNG)")
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


def check_not_a_folder(path: Path, what: str = "output") -> None:
    """Refuse an output name that is an existing folder (the write would fail after compute)."""
    if path.is_dir():
        example = "result.png" if what == "preview" else "result.exr"
        raise OutputError(f"the {what} name is an existing folder", path,
                          f"name a file, e.g. {path / example}")


def check_distinct_outputs(outputs: Iterable[tuple[str, str | Path]]) -> None:
    """Refuse two outputs of a run with the same path (by any name: relative, symlink, hard
    link): the later write would silently replace the earlier. ``outputs`` are (what, path)."""
    taken: dict[tuple, str] = {}  # a resolved path, or an existing file's (device, inode)
    for what, path in outputs:
        path = Path(path)
        keys: list[tuple] = [("path", str(path.resolve()))]
        try:
            info = os.stat(path)
            keys.append(("inode", info.st_dev, info.st_ino))
        except OSError:  # not written yet
            pass
        for key in keys:
            if key in taken:
                raise OutputError(f"the {what} and the {taken[key]} would be the same file", path,
                                  f"give the {what} another name")
        taken.update((key, what) for key in keys)


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
