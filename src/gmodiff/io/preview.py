"""Tone-mapped 8-bit previews of HDR images, for eyeballing results (not for metrics).

One rendition serves every SDR picture the tool makes: the ``--preview`` PNG, the SDR base image
of an Ultra HDR JPEG, the web page's view and the demo previews: a linear gain, then the local
tone mapper of :mod:`gmodiff.io.tonemap` (highlights compressed under white, detail and colour
kept, a shoulder that reaches white, sRGB). The gain is
chosen by :func:`preview_gain` from ``--preview-exposure``: ``reference`` (the default: exposed
like the bracket's reference frame), ``auto`` (99th-percentile luminance to ``AUTO_TARGET``) or a
number of stops relative to the reference exposure (``+1`` one stop brighter).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmodiff.errors import OutputError
from gmodiff.io.atomic import atomic_path
from gmodiff.io.bands import row_bands
from gmodiff.io.tonemap import DEFAULT_RENDITION, render_sdr

AUTO_PERCENTILE = 99.0
"""Luminance percentile that auto exposure maps to ``AUTO_TARGET`` before the curve."""
AUTO_TARGET = DEFAULT_RENDITION.white
"""The rendition's white level: the brightest 1% sit at white before the tone mapper brings
bright areas back under it (brighter than the reference exposure on most brackets)."""


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.2126, 0.7152, 0.0722], dtype=rgb.dtype)


def auto_exposure(hdr: np.ndarray, nonfinite_as_zero: bool = False) -> float:
    """Linear gain that maps the 99th-percentile luminance to ``AUTO_TARGET``; NaN/inf pixels are
    left out, or count as black with ``nonfinite_as_zero``."""
    hdr = np.asarray(hdr)
    luminance = np.empty(hdr.shape[:-1], dtype=np.float64)
    for rows in row_bands(hdr.shape[0]):
        band = np.asarray(hdr[rows], dtype=np.float64)
        if nonfinite_as_zero:
            band = np.nan_to_num(band, nan=0.0, posinf=0.0, neginf=0.0)
        luminance[rows] = _luminance(band)
    finite = luminance[np.isfinite(luminance)]
    level = float(np.percentile(finite, AUTO_PERCENTILE)) if finite.size else 0.0
    return AUTO_TARGET / level if level > 0 else 1.0


PREVIEW_EXPOSURES = ("reference", "auto")
DEFAULT_PREVIEW_EXPOSURE = "reference"


def parse_preview_exposure(text: str | float | None) -> str | float:
    """``reference``, ``auto`` or stops (float) from ``--preview-exposure``; ConfigError else."""
    from gmodiff.errors import ConfigError

    if text is None:
        return DEFAULT_PREVIEW_EXPOSURE
    if isinstance(text, (int, float)):
        value = float(text)
    else:
        word = str(text).strip().lower()
        if word in PREVIEW_EXPOSURES:
            return word
        try:
            value = float(word.removesuffix("ev"))
        except ValueError:
            value = float("nan")
    if not (np.isfinite(value) and abs(value) <= 20):
        raise ConfigError(f"--preview-exposure {text!r}",
                          fix="use reference, auto, or stops from -20 to 20 (e.g. +1 or -0.5)")
    return value


def preview_gain(hdr: np.ndarray, exposure: str | float = DEFAULT_PREVIEW_EXPOSURE,
                 reference_scale: float | None = None) -> float:
    """Linear gain for :func:`tonemap_preview`: ``reference`` = ``reference_scale`` (the reference
    frame's relative exposure time; auto when unknown), ``auto``, or stops × the reference."""
    if exposure == "auto" or (reference_scale is None and exposure == "reference"):
        return auto_exposure(hdr)
    base = float(reference_scale) if reference_scale is not None else auto_exposure(hdr)
    if exposure == "reference":
        return base
    return base * float(2.0 ** float(exposure))


def tonemap_preview(hdr: np.ndarray, exposure: float | None = None) -> np.ndarray:
    """Linear HDR (H, W, 3) → uint8 sRGB picture: gain, then :func:`gmodiff.io.tonemap.render_sdr`.

    ``exposure`` is a linear gain; None picks one from the luminance (see :func:`auto_exposure`).
    NaN/inf pixels count as black.
    """
    hdr = np.asarray(hdr)
    if hdr.ndim != 3 or hdr.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {hdr.shape}")
    gain = auto_exposure(hdr, nonfinite_as_zero=True) if exposure is None else float(exposure)
    return render_sdr(hdr, gain)


def check_preview_path(path: str | Path) -> Path:
    """Fail early (before any compute) on a preview name or folder we cannot write."""
    from gmodiff.io.paths import check_not_a_folder, check_writable_folder

    path = Path(path)
    check_not_a_folder(path, "preview")
    if path.suffix.lower() != ".png":
        raise OutputError(f"previews are PNG, not '{path.suffix}'", path, "use a .png name")
    check_writable_folder(path.parent, path)
    return path


def write_preview(path: str | Path, hdr: np.ndarray, exposure: float | None = None) -> None:
    """Write :func:`tonemap_preview` of ``hdr`` as an 8-bit PNG, atomically."""
    import cv2

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise OutputError(f"previews are PNG, not '{path.suffix}'", path, "use a .png name")
    pixels = tonemap_preview(hdr, exposure)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(pixels[:, :, ::-1]))
    if not ok:
        raise OutputError("PNG encoding failed", path, "check the image array")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())
