"""User-fixable failures.

Every error a user can fix by changing their input has its own type here. The CLI turns any
``GmodiffError`` into a single line on stderr and exit code 2; messages name the file and the fix.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")
"""C0/C1 control characters (ESC starts terminal escape sequences), line separators and the
bidirectional overrides that can make a name display as another."""


def _escape(match: re.Match) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` safe to print on a terminal: the bytes of non-UTF-8 file names (held as
    surrogates) shown as U+FFFD, so ``print`` cannot fail with UnicodeEncodeError, and control
    characters (ANSI escapes, newlines, bidi overrides) written as ``\\x1b``-style escapes, so a
    file name can neither recolour the terminal nor split or disguise a message."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "replace").decode("utf-8")
    return _CONTROL.sub(_escape, text)


def display_path(path: str | Path) -> str:
    """``path`` as printable text (see :func:`printable`)."""
    return printable(os.fspath(path) if isinstance(path, (str, os.PathLike)) else str(path))


class GmodiffError(Exception):
    """Base class: a failure the user can fix. ``str(err)`` is the one-line message."""

    exit_code: int = 2

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None):
        self.path = Path(path) if path is not None else None
        self.fix = fix
        parts = [f"{display_path(path)}: {message}" if path is not None else message]
        if fix:
            parts.append(fix)
        text = " — ".join(parts).replace("\n", " ")
        # Messages quote paths too (e.g. "the file '…'"): keep the whole line printable.
        super().__init__(printable(text))


class ImageReadError(GmodiffError):
    """An image file is missing, unreadable, or not an image we support."""


class SceneError(GmodiffError):
    """A scene folder or bracket set is malformed (frame count, sizes, bit depths...)."""


class ExposureError(GmodiffError):
    """Exposure data is missing, unparsable, or inconsistent."""


class HDRValueError(GmodiffError):
    """HDR radiance contains NaN/inf or negative values."""


class CheckpointError(GmodiffError):
    """A checkpoint or weights folder is missing, corrupt, or does not match the model."""


class BackboneError(GmodiffError):
    """A diffusers backbone folder is missing or incomplete."""


class ConfigError(GmodiffError):
    """A config file is missing or has invalid fields."""


class OutputError(GmodiffError):
    """An output could not be written (unsupported extension, disk full, permissions)."""


class OutOfMemoryError(GmodiffError):
    """The image does not fit in memory at these settings (tiling or a smaller image helps)."""


class MetricUnavailableError(GmodiffError):
    """An optional metric's package (HDR-FLIP) or environment (cvvdp) is not installed."""


class MetricsEnvError(MetricUnavailableError):
    """The environment that runs ColorVideoVDP (``make metrics-env``) is missing or broken."""


# Library option names → command-line flags, for the messages of library errors. Library errors
# name options as code spells them (`weights`, `tile=16`); both front ends (the CLI and the web
# page) show the flag that sets each one (--weights, --tile 16).
OPTION_FLAGS = {"weights": "--weights", "backbone": "--backbone", "tile": "--tile", "steps": "--steps",
                "seed": "--seed", "device": "--device", "dtype": "--dtype", "fuse_lora": "--fuse-lora",
                "refine": "--refine", "allow_missing": "--allow-missing", "max_memory": "--max-memory",
                "ev": "--ev", "times": "--times", "reference": "--reference", "align": "--align"}
"""Library option names (``ReconstructOptions`` and ``BracketOptions`` fields) → the flags that
set them."""
_OPTION = re.compile(r"`(\w+)(?:=([^`]*))?`")


def as_flags(message: str) -> str:
    """A library message with its `option` / `option=value` mentions written as CLI flags."""
    def flag(match: re.Match) -> str:
        name, value = match.group(1), match.group(2)
        if name not in OPTION_FLAGS:
            return match.group(0).strip("`")
        if value in ("True", "False"):  # a boolean option is a --flag/--no-flag pair
            return OPTION_FLAGS[name] if value == "True" else "--no-" + OPTION_FLAGS[name][2:]
        return OPTION_FLAGS[name] + (f" {value}" if value is not None else "")

    return _OPTION.sub(flag, message)
