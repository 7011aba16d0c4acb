"""User-fixable failures.

Every error a user can fix by changing their input has its own type here. The CLI turns any
``GmodiffError`` into a single line on stderr and exit code 2; messages name the file and the fix.
"""

from __future__ import annotations

from pathlib import Path


class GmodiffError(Exception):
    """Base class: a failure the user can fix. ``str(err)`` is the one-line message."""

    exit_code: int = 2

    def __init__(self, message: str, path: str | Path | None = None, fix: str | None = None):
        self.path = Path(path) if path is not None else None
        self.fix = fix
        parts = [f"{path}: {message}" if path is not None else message]
        if fix:
            parts.append(fix)
        super().__init__(" — ".join(parts).replace("\n", " "))


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
