"""Camera metadata carried from the reference frame into the outputs.

Photo managers sort and place pictures by EXIF (camera, lens, capture date, exposure, GPS), so
the HDR result keeps the reference frame's EXIF block: as an APP1 ``Exif`` segment in the Ultra
HDR JPEG, and as header attributes of an OpenEXR file (OpenEXR's standard ``capDate``,
``expTime``, ``aperture``, ``isoSpeed``, ``cameraMake``/``cameraModel``, ``latitude``/``longitude``
where present, and the frame's XMP packet as ``xmp``). The orientation tag is reset to 1 because
frames are rotated upright when read. Unreadable metadata is simply not carried: it never fails a
run.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from gmodiff.io.ldr import HEIF_SUFFIXES, enable_heif

TAG_ORIENTATION = 0x0112
TAG_MAKE, TAG_MODEL = 0x010F, 0x0110
TAG_DATETIME = 0x0132
TAG_EXIF_IFD, TAG_GPS_IFD = 0x8769, 0x8825
TAG_EXPOSURE_TIME, TAG_F_NUMBER, TAG_ISO, TAG_DATETIME_ORIGINAL = 0x829A, 0x829D, 0x8827, 0x9003
MAX_EXIF_BYTES = 65000
"""An APP1 segment holds at most 65533 bytes; a larger block (huge maker notes) is dropped."""


@dataclass(frozen=True)
class CarriedMetadata:
    """What is copied from the reference frame."""

    exif: bytes | None = None
    """``Exif\\0\\0`` + TIFF block, orientation reset to 1."""
    xmp: bytes | None = None
    attributes: dict | None = None
    """OpenEXR header attributes (str/float values)."""


NONE = CarriedMetadata()


def _float(value) -> float | None:
    try:
        number = float(value[0] / value[1]) if isinstance(value, tuple) and len(value) == 2 else float(value)
    except (TypeError, ValueError, ZeroDivisionError, IndexError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def _degrees(dms, ref) -> float | None:
    try:
        d, m, s = (_float(v) for v in dms)
        value = d + m / 60 + s / 3600
    except (TypeError, ValueError):
        return None
    return -value if str(ref).upper() in ("S", "W") else value


def _attributes(exif, xmp: bytes | None) -> dict:
    sub = dict(exif.get_ifd(TAG_EXIF_IFD))
    gps = dict(exif.get_ifd(TAG_GPS_IFD))
    merged = {**dict(exif), **sub}
    attributes: dict = {}
    for tag, name in ((TAG_MAKE, "cameraMake"), (TAG_MODEL, "cameraModel")):
        if isinstance(merged.get(tag), str) and merged[tag].strip("\0 "):
            attributes[name] = merged[tag].strip("\0 ")
    date = merged.get(TAG_DATETIME_ORIGINAL) or merged.get(TAG_DATETIME)
    if isinstance(date, str) and date.strip("\0 "):
        attributes["capDate"] = date.strip("\0 ")
    for tag, name in ((TAG_EXPOSURE_TIME, "expTime"), (TAG_F_NUMBER, "aperture"), (TAG_ISO, "isoSpeed")):
        value = _float(merged.get(tag))
        if value is not None:
            attributes[name] = value
    if 2 in gps and 4 in gps:
        lat, lon = _degrees(gps[2], gps.get(1, "N")), _degrees(gps[4], gps.get(3, "E"))
        if lat is not None and lon is not None:
            attributes["latitude"], attributes["longitude"] = lat, lon
    if xmp:
        attributes["xmp"] = xmp.decode("utf-8", "replace")
    return attributes


def read_metadata(path: str | Path | None) -> CarriedMetadata:
    """EXIF (orientation reset) and XMP of an image file; :data:`NONE` when absent or unreadable."""
    if path is None:
        return NONE
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if Path(path).suffix.lower() in HEIF_SUFFIXES:
                enable_heif(Path(path))
            with Image.open(path) as im:
                exif = im.getexif()
                xmp = im.info.get("xmp")
                xmp = xmp.encode() if isinstance(xmp, str) else xmp
                if not len(exif) and not xmp:
                    return NONE
                attributes = _attributes(exif, xmp)
                block = None
                if len(exif):
                    exif[TAG_ORIENTATION] = 1  # pixels were rotated upright when read
                    block = exif.tobytes()
                    block = block if len(block) <= MAX_EXIF_BYTES else None
                return CarriedMetadata(exif=block, xmp=xmp or None, attributes=attributes)
    except Exception:  # corrupt metadata never costs the result
        return NONE
