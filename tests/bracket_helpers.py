"""Test helpers: simulated handheld JPEG brackets with EXIF written by the test."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import piexif
from PIL import Image


def exif_bytes(exposure_seconds: float | None, iso: int | None = 100,
               f_number: float | None = 4.0, orientation: int = 1) -> bytes:
    """A piexif EXIF block with the given exposure settings."""
    exif_ifd = {}
    if exposure_seconds is not None:
        # rational with a large denominator so e.g. 1/250 s stays exact
        exif_ifd[piexif.ExifIFD.ExposureTime] = (round(exposure_seconds * 1_000_000), 1_000_000)
    if iso is not None:
        exif_ifd[piexif.ExifIFD.ISOSpeedRatings] = iso
    if f_number is not None:
        exif_ifd[piexif.ExifIFD.FNumber] = (round(f_number * 10), 10)
    return piexif.dump({"0th": {piexif.ImageIFD.Orientation: orientation}, "Exif": exif_ifd})


def save_jpeg(path: Path, rgb_u8: np.ndarray, exif: bytes | None = None) -> Path:
    """Write an 8-bit RGB array as a JPEG (quality 95) with an optional EXIF block."""
    buf = io.BytesIO()
    kwargs = {"exif": exif} if exif else {}
    Image.fromarray(rgb_u8).save(buf, "JPEG", quality=95, **kwargs)
    path.write_bytes(buf.getvalue())
    return path


def scene_radiance(h: int, w: int, seed: int = 3) -> np.ndarray:
    """A procedural HDR scene normalised so its 99th percentile is 1."""
    try:
        from gmodiff.data.sources import procedural_radiance
    except ImportError:  # simulator not available: a simple textured scene with a bright spot
        procedural_radiance = _fallback_radiance
    rad = procedural_radiance(h, w, seed)
    return (rad / np.percentile(rad, 99)).astype(np.float32)


def _fallback_radiance(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    phase = rng.uniform(0, 6, 3)
    base = 0.02 + 0.3 * np.sin(17 * xx + phase[0]) ** 2 * np.cos(11 * yy + phase[1]) ** 2
    base += 8.0 * np.exp(-((xx - 0.7) ** 2 + (yy - 0.3) ** 2) / 0.004)
    return np.stack([base, 0.8 * base + 0.01, 0.6 * base + 0.02 * yy], -1).astype(np.float32)


def expose(radiance: np.ndarray, relative_exposure: float) -> np.ndarray:
    """Gamma-2.2 camera: 8-bit frame of ``radiance`` at ``relative_exposure``."""
    encoded = np.clip(radiance * relative_exposure, 0, 1) ** (1 / 2.2)
    return np.round(encoded * 255).astype(np.uint8)


def write_bracket(folder: Path, h: int = 64, w: int = 96, stops=(-2.0, 0.0, 2.0),
                  shift_fraction: float = 0.03, base_seconds: float = 1 / 60,
                  with_exif: bool = True, seed: int = 3) -> tuple[list[Path], np.ndarray, dict]:
    """Handheld-style bracket: each frame a window of a larger scene shifted by a few percent.

    Returns the frame paths (in a shuffled, non-exposure order), the reference (0 EV) view's
    radiance relative to the 0 EV exposure, and per stop value the (x, y) pixel displacement of
    that frame's content relative to the reference (what an aligner should find).
    """
    margin = int(np.ceil(shift_fraction * max(h, w))) + 1
    big = scene_radiance(h + 2 * margin, w + 2 * margin, seed)
    rng = np.random.default_rng(seed)
    paths, displacements = [], {}
    order = [1, 0, 2] if len(stops) == 3 else list(range(len(stops)))
    for k in order:
        s = stops[k]
        if s == 0:
            dy = dx = 0
        else:
            dy, dx = (rng.choice([-1, 1], 2) * shift_fraction * np.array([h, w])).round().astype(int)
        displacements[s] = (-float(dx), -float(dy))
        view = big[margin + dy:margin + dy + h, margin + dx:margin + dx + w]
        exif = exif_bytes(base_seconds * 2.0 ** s) if with_exif else None
        paths.append(save_jpeg(folder / f"IMG_{k:02d}.jpg", expose(view, 2.0 ** s), exif))
    reference_view = big[margin:margin + h, margin:margin + w]
    return paths, reference_view, displacements
