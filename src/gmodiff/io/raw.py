"""Camera raw frames (CR2/CR3/NEF/ARW/RAF/ORF/RW2/DNG, ...) through LibRaw (``rawpy``), read linearly.

What "linear" means here, step by step (LibRaw does each with these settings):

1. black and white levels come from the file (no ``user_black``/``user_sat``), and LibRaw's
   "adjust maximum" heuristic is off (``adjust_maximum_thr=0``): it would lower the white level
   to each frame's brightest pixel, a different scale per frame of a bracket;
2. the camera's as-shot white balance (``use_camera_wb``), multipliers normalised so the
   smallest is 1: a sensor value at the white level stays at 1, so every output value below 1
   is unclipped in every channel;
3. demosaicing (AHD), then the camera's colour matrix to linear sRGB / Rec.709 primaries;
4. no tone curve (``gamma=(1, 1)``), no automatic brightening (``no_auto_bright``): an output
   of 1 is the sensor's white level, and twice the light gives twice the value.
5. The orientation the camera recorded is applied (pixels come out upright).
6. A pixel whose neighbourhood holds a clipped sensor value (≥ ``CLIP_FRACTION`` of the range
   between black and white level) is set to white in all three channels. The colour matrix
   mixes channels, so one clipped sensor channel makes the others wrong too while they still
   look well exposed (a 2-stops-too-bright red next to clipped green and blue): marked white,
   every merge treats the pixel as clipped and takes it from a shorter frame.

The 16-bit output of that is float32 in [0, 1] (out-of-gamut colours the matrix pushes below 0
or above 1 are clipped, as LibRaw does). Exposure comes from the file's EXIF as LibRaw reads it
(exposure time, ISO, f-number). ``rawpy`` is imported lazily: it is needed only for raw files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from gmodiff.errors import ImageReadError
from gmodiff.io.exif import ExposureInfo
from gmodiff.io.native import captured_native_output, with_native_detail

RAW_SUFFIXES = (".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf",
                ".orf", ".rw2", ".pef", ".srw", ".3fr", ".iiq", ".erf", ".kdc", ".mrw", ".x3f")
"""File extensions (lower case) read as camera raw files."""
MAX_SIDE = 20000
"""Largest accepted raw width or height in pixels (the LDR readers' cap), checked before decoding."""
OUTPUT_PEAK = 65535.0
"""LibRaw's 16-bit output: the sensor's white level maps here."""
CLIP_FRACTION = 0.97
"""Sensor values this close to the white level (of the range above black) count as clipped;
sensors saturate a little below their nominal white level."""
FIX = "replace it with the camera's original raw file (or convert it to DNG with Adobe DNG Converter)"


@dataclass(frozen=True)
class RawInfo:
    """What a raw file says about its shot (from LibRaw, and from the TIFF tags where it has them)."""

    exposure: ExposureInfo
    timestamp: datetime | None = None
    make: str | None = None
    model: str | None = None
    orientation: int = 1
    """EXIF orientation (1-8) the camera recorded; pixels from :func:`read_raw` are already upright."""
    auto_bracket: bool = False
    """EXIF ExposureMode = 2 (auto bracket), where the file's TIFF tags say so."""
    bias_ev: float | None = None
    """EXIF ExposureBiasValue (stops), where the file's TIFF tags have it."""


@dataclass
class RawFrame:
    """A decoded raw frame: float32 (H, W, 3) linear sRGB in [0, 1] (1 = white level)."""

    linear: np.ndarray
    info: RawInfo
    path: Path


def is_raw(path: str | Path) -> bool:
    """True for a file name with a camera raw extension (see :data:`RAW_SUFFIXES`)."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def _libraw_error(exc: Exception, path: Path, said) -> ImageReadError:
    import rawpy

    name = type(exc).__name__
    if isinstance(exc, (rawpy.LibRawFileUnsupportedError, rawpy.NotSupportedError)):
        return ImageReadError("not a raw format LibRaw can read (unsupported camera or not a raw "
                              "file)", path, FIX)
    if isinstance(exc, (rawpy.LibRawIOError, rawpy.LibRawDataError)):
        return ImageReadError(with_native_detail(f"corrupt or truncated raw file ({name})", said),
                              path, FIX)
    if isinstance(exc, MemoryError) or isinstance(exc, rawpy.LibRawUnsufficientMemoryError):
        return ImageReadError("raw file too large to decode in the available memory", path,
                              "free memory, or merge smaller (cropped) DNGs")
    return ImageReadError(with_native_detail(f"not a readable raw file ({name}: {exc})", said),
                          path, FIX)


# LibRaw's flip code → EXIF orientation (LibRaw rotates upright by these when it decodes).
_FLIP_TO_ORIENTATION = {0: 1, 3: 3, 5: 8, 6: 6}


def _shot_info(raw, path: Path) -> RawInfo:
    other = raw.other

    def positive(value) -> float | None:
        value = float(value)
        return value if math.isfinite(value) and value > 0 else None

    tags = _tiff_tags(path)
    exposure = ExposureInfo(exposure_time_seconds=positive(other.shutter_speed),
                            iso=positive(other.iso_speed) or tags.get("iso"),
                            f_number=positive(other.aperture))
    timestamp = tags.get("timestamp")
    if timestamp is None and other.timestamp is not None and other.timestamp.year > 1970:
        timestamp = other.timestamp  # LibRaw's (whole seconds; 1970 means "none")
    bias = tags.get("bias")
    if isinstance(bias, tuple) and len(bias) == 2 and bias[1]:
        bias = bias[0] / bias[1]
    return RawInfo(exposure=exposure, timestamp=timestamp, make=tags.get("make"),
                   model=tags.get("model"),
                   orientation=_FLIP_TO_ORIENTATION.get(int(raw.sizes.flip), 1),
                   auto_bracket=tags.get("exposure_mode") == 2,
                   bias_ev=float(bias) if isinstance(bias, (int, float)) else None)


def _text(value) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("latin-1", "replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\0 ")
    return value or None


def parse_exif_datetime(text, subsec=None) -> datetime | None:
    """``YYYY:MM:DD HH:MM:SS`` (+ SubSecTime digits) → datetime; None when absent or malformed."""
    text = _text(text)
    if text is None:
        return None
    try:
        moment = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    digits = "".join(c for c in (_text(subsec) or "") if c.isdigit())[:6]
    return moment.replace(microsecond=int(digits.ljust(6, "0"))) if digits else moment


_EXIF_IN_IFD0 = (33434, 33437, 34855, 36867, 37521, 37380, 41986)
"""ExposureTime, FNumber, ISO, DateTimeOriginal, SubSecTimeOriginal, ExposureBias, ExposureMode."""


def _tiff_tags(path: Path) -> dict:
    """Make, model, capture time (with sub-seconds) and ISO from a TIFF-based raw (DNG, CR2,
    NEF, ARW, PEF, ...), which LibRaw's Python binding does not expose; {} for other formats
    or unreadable tags (the pixels decide whether the file is usable)."""
    import tifffile

    found: dict = {}
    try:
        with captured_native_output(), tifffile.TiffFile(path) as tif:
            tags = tif.pages[0].tags
            for key, code in (("make", 271), ("model", 272)):
                if code in tags and _text(tags[code].value):
                    found[key] = _text(tags[code].value)
            exif = dict(tags[34665].value) if 34665 in tags else {}
            # TIFF/EP (and so DNG) may keep the EXIF tags in IFD0 itself.
            exif.update({t.name: t.value for t in tags.values() if t.code in _EXIF_IN_IFD0})
            moment = parse_exif_datetime(exif.get("DateTimeOriginal"),
                                         exif.get("SubsecTimeOriginal"))
            if moment is not None:
                found["timestamp"] = moment
            iso = exif.get("ISOSpeedRatings", exif.get("PhotographicSensitivity"))
            iso = iso[0] if isinstance(iso, (tuple, list)) and iso else iso
            if isinstance(iso, (int, float)) and iso > 0:
                found["iso"] = float(iso)
            for key, name in (("exposure_mode", "ExposureMode"), ("bias", "ExposureBiasValue")):
                if name in exif:
                    found[key] = exif[name]
    except Exception:  # not TIFF-based (CR3, RAF, ...) or broken tags: nothing extra
        return found
    return found


def _open(path: Path):
    """An opened ``rawpy.RawPy``; every failure is an ``ImageReadError`` naming the file."""
    try:
        import rawpy
    except ImportError as exc:
        raise ImageReadError("reading raw files needs the rawpy package", path,
                             "pip install rawpy (see requirements.txt)") from exc
    if not path.is_file():
        raise ImageReadError("file not found", path, "check the path")
    with captured_native_output() as said:
        try:
            return rawpy.imread(str(path))
        except Exception as exc:  # LibRaw raises many types on bad files
            raise _libraw_error(exc, path, said) from exc


def _upright_size(raw) -> tuple[int, int]:
    sizes = raw.sizes
    height, width = int(sizes.height), int(sizes.width)
    return (width, height) if int(sizes.flip) in (5, 6) else (height, width)


def _check_size(path: Path, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(f"raw image has an empty size {width}x{height}", path, FIX)
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ImageReadError(f"raw image is {width}x{height}, larger than the {MAX_SIDE}-pixel "
                             "limit", path, "convert it to a cropped DNG first")


def raw_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of the upright decoded image, from the raw file's header."""
    path = Path(path)
    with _open(path) as raw:
        size = _upright_size(raw)
    _check_size(path, *size)
    return size


def read_raw_info(path: str | Path) -> RawInfo:
    """Exposure, capture time, make/model and orientation of a raw file, without decoding it."""
    path = Path(path)
    with _open(path) as raw, captured_native_output() as said:
        try:
            return _shot_info(raw, path)
        except ImageReadError:
            raise
        except Exception as exc:  # LibRaw unpacks on first use of some fields
            raise _libraw_error(exc, path, said) from exc


def read_raw(path: str | Path) -> RawFrame:
    """Decode a raw file linearly (see the module doc) to float32 (H, W, 3) sRGB in [0, 1]."""
    path = Path(path)
    import rawpy

    with _open(path) as raw, captured_native_output() as said:
        _check_size(path, *_upright_size(raw))
        flip = int(raw.sizes.flip)
        try:
            info = _shot_info(raw, path)
            try:  # the sensor data before demosaicing (Bayer/X-Trans files; others have none)
                mosaic = raw.raw_image_visible.copy()
                colours = raw.raw_colors_visible.copy()
                levels = (np.asarray(raw.black_level_per_channel, np.float64),
                          float(raw.white_level))
            except rawpy.LibRawError:
                raise
            except Exception:
                mosaic = colours = levels = None
            rgb = raw.postprocess(
                use_camera_wb=True, output_color=rawpy.ColorSpace.sRGB, output_bps=16,
                gamma=(1.0, 1.0), no_auto_bright=True, adjust_maximum_thr=0.0,
                highlight_mode=rawpy.HighlightMode.Clip, user_flip=None)
        except Exception as exc:
            raise _libraw_error(exc, path, said) from exc
    # LibRaw decodes a truncated or damaged file as far as it can and only says so on stderr
    # (dcraw's "Unexpected end of file" / "Corrupt data near ..."): that is a failure here.
    damage = [line for line in said.lines if "end of file" in line.lower()
              or "corrupt data" in line.lower()]
    if damage:
        raise ImageReadError(f"corrupt or truncated raw file (LibRaw: {damage[0].strip()[:120]})",
                             path, FIX)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.size == 0:
        raise ImageReadError(f"raw file decoded to an unexpected shape {rgb.shape}", path, FIX)
    linear = rgb.astype(np.float32) * np.float32(1.0 / OUTPUT_PEAK)
    clipped = _clipped_pixels(mosaic, colours, levels, linear.shape[:2], flip)
    linear[clipped] = 1.0
    return RawFrame(linear=np.ascontiguousarray(linear), info=info, path=path)


_FLIP_ROTATIONS = {0: 0, 3: 2, 5: 1, 6: 3}
"""LibRaw flip code → counter-clockwise quarter turns (``np.rot90``) that make the data upright."""


def _clipped_pixels(mosaic, colours, levels, shape: tuple[int, int], flip: int) -> np.ndarray:
    """(H, W) bool, upright: pixels within one pixel of a clipped sensor value (see module doc)."""
    import cv2

    if mosaic is None or mosaic.ndim != 2:
        clipped = np.zeros(shape, bool)  # no mosaic: LibRaw's own clipping is all we know
    else:
        black, white = levels
        black = black[np.clip(colours, 0, len(black) - 1)]
        threshold = black + CLIP_FRACTION * np.maximum(white - black, 1.0)
        clipped = np.rot90(mosaic >= threshold, _FLIP_ROTATIONS.get(flip, 0))
        if clipped.shape != shape:  # a decoder that resizes (half-size, Fuji layouts): skip
            clipped = np.zeros(shape, bool)
        else:  # demosaicing spreads a sensor value over its 3x3 neighbourhood
            clipped = cv2.dilate(clipped.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return clipped


def raw_exposure_info(path: str | Path) -> ExposureInfo:
    """Exposure time, ISO and f-number of a raw file (for ``gmodiff.io.exif.relative_exposures``)."""
    return read_raw_info(path).exposure
