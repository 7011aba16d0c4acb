"""Exposure settings from EXIF (JPEG/TIFF): exposure time, ISO, aperture and orientation.

Relative exposure folds all three into one number proportional to the light each frame
recorded: ``t · ISO/ISO_ref · (N_ref/N)²``. Missing tags are ``None``; corrupt EXIF is treated
as absent (a camera file with a broken maker note still has usable pixels), and only a file
that cannot be opened at all raises.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gmodiff.errors import ExposureError, ImageReadError
from gmodiff.io.ldr import HEIF_SUFFIXES, check_input_file, enable_heif

TAG_ORIENTATION = 0x0112
TAG_EXIF_IFD = 0x8769
TAG_EXPOSURE_TIME = 0x829A
TAG_F_NUMBER = 0x829D
TAG_ISO = 0x8827  # PhotographicSensitivity (ISOSpeedRatings)


@dataclass(frozen=True)
class ExposureInfo:
    """Exposure settings of one frame; ``None`` where the tag is missing or unusable."""

    exposure_time_seconds: float | None = None
    iso: float | None = None
    f_number: float | None = None
    orientation: int = 1


def _positive(value) -> float | None:
    """A finite positive float from an EXIF value (rational, int, tuple), else None."""
    if isinstance(value, (tuple, list)):
        if not value:
            return None
        if len(value) == 2 and all(isinstance(v, int) for v in value):  # raw (num, den)
            value = value[0] / value[1] if value[1] else float("nan")
        else:
            value = value[0]
    try:
        number = float(value)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return number if math.isfinite(number) and number > 0 else None


def _info_from_exif(exif: Image.Exif) -> ExposureInfo:
    try:
        sub = dict(exif.get_ifd(TAG_EXIF_IFD))
    except Exception:  # a broken sub-IFD pointer: keep what IFD0 has
        sub = {}
    # TIFF files may carry the exposure tags in IFD0 directly.
    merged = {**dict(exif), **sub}
    orientation = merged.get(TAG_ORIENTATION, 1)
    if not isinstance(orientation, int) or not 1 <= orientation <= 8:
        orientation = 1
    return ExposureInfo(
        exposure_time_seconds=_positive(merged.get(TAG_EXPOSURE_TIME)),
        iso=_positive(merged.get(TAG_ISO)),
        f_number=_positive(merged.get(TAG_F_NUMBER)),
        orientation=orientation,
    )


def parse_exif_bytes(data: bytes) -> ExposureInfo:
    """Exposure settings from a raw EXIF block (``Exif\\0\\0`` prefix optional); never raises."""
    try:
        with warnings.catch_warnings():  # Pillow warns on each corrupt tag; we treat them as absent
            warnings.simplefilter("ignore")
            exif = Image.Exif()
            exif.load(bytes(data))
            return _info_from_exif(exif)
    except Exception:  # any malformed block is just "no EXIF"
        return ExposureInfo()


def read_exif(path: str | Path) -> ExposureInfo:
    """Exposure settings of an image file; raises ``ImageReadError`` if it cannot be opened."""
    path = Path(path)
    check_input_file(path)  # a FIFO would block Image.open forever
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # corrupt tags: Pillow warns, we treat them as absent
            if Path(path).suffix.lower() in HEIF_SUFFIXES:
                enable_heif(Path(path))
            with Image.open(path) as im:
                try:
                    return _info_from_exif(im.getexif())
                except Exception:  # corrupt EXIF: the pixels may still be fine
                    return ExposureInfo()
    except FileNotFoundError as exc:
        raise ImageReadError("file not found", path, "check the path") from exc
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(f"not a readable image ({type(exc).__name__})", path,
                             "pass a JPEG or TIFF frame") from exc


def relative_exposures(infos: Sequence[ExposureInfo],
                       paths: Sequence[str | Path] | None = None) -> np.ndarray:
    """Relative exposure ``t · ISO/ISO_ref · (N_ref/N)²`` per frame, the shortest scaled to 1.

    ISO and f-number are folded in only when every frame has them (a tag present on some frames
    only says nothing reliable about the others).
    """
    names = [str(p) for p in paths] if paths is not None else [f"frame {i + 1}"
                                                                for i in range(len(infos))]
    missing = [n for n, info in zip(names, infos) if info.exposure_time_seconds is None]
    if missing:
        raise ExposureError(f"no usable EXIF ExposureTime in {', '.join(missing)}", None,
                            "give the exposures with `ev` (stops, e.g. `ev=-2,0,2`) or `times`")
    exposure = np.array([i.exposure_time_seconds for i in infos], dtype=np.float64)
    if all(i.iso is not None for i in infos):
        isos = np.array([i.iso for i in infos], dtype=np.float64)
        exposure *= isos / isos[0]
    if all(i.f_number is not None for i in infos):
        f_numbers = np.array([i.f_number for i in infos], dtype=np.float64)
        exposure *= (f_numbers[0] / f_numbers) ** 2
    return exposure / exposure.min()


def exposures_from_exif(paths: Sequence[str | Path]) -> np.ndarray:
    """Relative exposures of image files from their EXIF (see :func:`relative_exposures`)."""
    return relative_exposures([read_exif(p) for p in paths], paths)


# ---------------------------------------------------------------------------------------------
# Declared tone curve (a hint for gmodiff.camera.calibration.estimate_response)

TAG_COLOR_SPACE = 0xA001  # EXIF ColorSpace: 1 = sRGB, 0xFFFF = uncalibrated
_ICC_NAMES = {"srgb": ("sRGB",), "gamma2.2": ("Adobe RGB", "AdobeRGB")}
"""ICC profile names → hint. Adobe RGB (1998) encodes with a pure 2.2 (563/256) power law."""


def _icc_hint(profile: bytes) -> str | None:
    """Hint from an ICC profile's bytes: its description is ASCII ('desc') or UTF-16 ('mluc')."""
    for hint, names in _ICC_NAMES.items():
        for name in names:
            if name.encode("ascii") in profile or name.encode("utf-16-be") in profile:
                return hint
    return None


def encoding_hint(path: str | Path) -> str | None:
    """The tone curve a file declares: ``"srgb"``, ``"gamma2.2"`` or ``None``; never raises.

    An embedded ICC profile wins (Adobe RGB files usually say "uncalibrated" in EXIF); otherwise
    EXIF ColorSpace = 1 means sRGB. A declared curve is only a hint: in-camera tone curves often
    differ from it, and the response estimator checks it against the bracket.
    """
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(path) as im:
                profile = im.info.get("icc_profile")
                if isinstance(profile, bytes) and profile:
                    return _icc_hint(profile)
                exif = im.getexif()
                try:
                    sub = dict(exif.get_ifd(TAG_EXIF_IFD))
                except Exception:
                    sub = {}
                space = {**dict(exif), **sub}.get(TAG_COLOR_SPACE)
                return "srgb" if space == 1 else None
    except Exception:  # unreadable file or tags: no hint (reading pixels reports real errors)
        return None


def bracket_encoding_hint(paths: Sequence[str | Path]) -> str | None:
    """The hint all frames of a bracket agree on, else ``None``."""
    hints = {encoding_hint(p) for p in paths}
    return hints.pop() if len(hints) == 1 else None
