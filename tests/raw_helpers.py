"""Synthetic camera raw files for tests: 12-bit Bayer DNGs written with tifffile, known radiance.

The "camera" sees linear sRGB through a colour-mixing matrix and a white-balance tint
(``NEUTRAL``: the raw values of a white object), so a correct reader must undo both, subtract
the black level and scale by the white level. The DNG's ColorMatrix1 (XYZ → camera) says exactly
that, so LibRaw can recover linear sRGB; the scene radiance is smooth (no demosaicing error to
speak of) apart from optional sharp patches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

BLACK, WHITE = 256, 4095
"""12-bit data in 16-bit samples, with a black offset like real sensors."""
NEUTRAL = np.array([0.5, 1.0, 0.7])
"""Raw values of white (AsShotNeutral): red and blue are weaker on the sensor."""
MIX = np.array([[0.80, 0.15, 0.05], [0.10, 0.80, 0.10], [0.05, 0.20, 0.75]])
"""The camera's colour mixing (rows sum to 1: white stays white)."""
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])


def smooth_radiance(height: int = 64, width: int = 96, seed: int = 0,
                    stops: float = 8.0) -> np.ndarray:
    """Linear sRGB radiance (relative to t = 1) spanning ``stops`` stops, smooth and colourful."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    yy, xx = yy / max(height - 1, 1), xx / max(width - 1, 1)
    level = np.exp2(stops * xx - stops)  # left: deep shadow, right: 1.0
    phase = rng.uniform(0, 2 * np.pi, 3)
    tint = np.stack([0.6 + 0.3 * np.sin(2.0 * yy + xx + p) for p in phase], axis=-1)
    return (level[..., None] * tint).astype(np.float32)


def mosaic(camera: np.ndarray) -> np.ndarray:
    """RGGB Bayer mosaic of camera-space RGB (H, W, 3) → (H, W)."""
    out = np.empty(camera.shape[:2], np.float64)
    out[0::2, 0::2] = camera[0::2, 0::2, 0]
    out[0::2, 1::2] = camera[0::2, 1::2, 1]
    out[1::2, 0::2] = camera[1::2, 0::2, 1]
    out[1::2, 1::2] = camera[1::2, 1::2, 2]
    return out


def _rationals(values, denominator: int = 1_000_000) -> list[int]:
    out = []
    for value in values:
        out += [int(round(float(value) * denominator)), denominator]
    return out


def sensor_values(radiance: np.ndarray, exposure: float, noise: float = 0.0,
                  seed: int = 0) -> np.ndarray:
    """12-bit raw samples (H, W) uint16 of ``radiance`` exposed ``exposure`` times (t = 1 units)."""
    camera = (radiance.astype(np.float64) * exposure) @ MIX.T * NEUTRAL
    values = mosaic(camera)
    if noise:
        values = values + np.random.default_rng(seed).normal(0, noise, values.shape)
    data = BLACK + np.clip(values, 0.0, 1.0) * (WHITE - BLACK)
    return np.rint(data).astype(np.uint16)


def write_bayer_dng(path: str | Path, samples: np.ndarray, exposure_seconds: float,
                    iso: int = 100, f_number: float = 8.0,
                    datetime: str = "2026:12:04 10:00:00", subsec: str | None = None,
                    make: str = "Synthetica", model: str = "Bayer One",
                    orientation: int = 1, exposure_mode: int | None = None,
                    bias_ev: float | None = None) -> Path:
    """Write a Bayer DNG (CFA, BlackLevel, WhiteLevel, ColorMatrix1, AsShotNeutral and EXIF)."""
    import tifffile

    path = Path(path)
    color_matrix = np.diag(NEUTRAL) @ MIX @ XYZ_TO_SRGB  # XYZ → camera (D65)
    seconds = float(exposure_seconds)
    exposure = (int(round(seconds * 1_000_000)), 1_000_000)
    tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, f"{make} {model}", True),  # UniqueCameraModel
        (50714, "H", 1, (BLACK,), True),
        (50717, "H", 1, (WHITE,), True),
        (50721, "2i", 9, _rationals(color_matrix.ravel()), True),  # ColorMatrix1
        (50778, "H", 1, (21,), True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, _rationals(NEUTRAL), True),  # AsShotNeutral
        (271, "s", 0, make, True),
        (272, "s", 0, model, True),
        (274, "H", 1, (orientation,), True),
        (306, "s", 0, datetime, True),
        (33434, "2I", 1, exposure, True),  # ExposureTime (TIFF/EP, IFD0)
        (33437, "2I", 1, (int(round(f_number * 10)), 10), True),  # FNumber
        (34855, "H", 1, (iso,), True),  # ISOSpeedRatings
        (36867, "s", 0, datetime, True),  # DateTimeOriginal
    ]
    if subsec is not None:
        tags.append((37521, "s", 0, subsec, True))  # SubSecTimeOriginal
    if exposure_mode is not None:
        tags.append((41986, "H", 1, (exposure_mode,), True))  # ExposureMode (2 = auto bracket)
    if bias_ev is not None:
        tags.append((37380, "2i", 1, (int(round(bias_ev * 3)), 3), True))  # ExposureBiasValue
    tifffile.imwrite(path, samples, photometric=32803, extratags=tags, subfiletype=0)
    return path


def raw_bracket(folder: Path, radiance: np.ndarray, times=(1.0, 4.0, 16.0),
                unit_seconds: float = 1 / 1000, names=None, **kwargs) -> list[Path]:
    """One DNG per exposure (``times`` relative to t = 1, ``unit_seconds`` seconds each)."""
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f"IMG_{i + 1:04d}.dng" for i in range(len(times))]
    return [write_bayer_dng(folder / name, sensor_values(radiance, t), t * unit_seconds, **kwargs)
            for name, t in zip(names, times)]
