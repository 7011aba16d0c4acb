"""Linear floating-point DNG output: the merged radiance as a file raw editors keep editing.

What is written (DNG 1.4, one IFD, classic little-endian TIFF):

* ``PhotometricInterpretation = LinearRaw`` (34892): three samples per pixel, already
  demosaiced, 32-bit IEEE floats (``SampleFormat = 3``), uncompressed strips. LibRaw reads this
  layout; half floats (16-bit) it reads only deflate-compressed with the floating-point
  predictor, which tifffile cannot write without ``imagecodecs``, so 32-bit it is.
* Colour: the data are linear sRGB / Rec.709 primaries, so ``ColorMatrix1`` is the XYZ → linear
  sRGB matrix under ``CalibrationIlluminant1 = D65`` and ``AsShotNeutral = (1, 1, 1)``: a raw
  editor's "as shot" white balance leaves the colours as merged.
* Level: values are scaled so the brightest pixel is 1.0 (the float white level), and
  ``BaselineExposure`` (stops) brightens them back by that scale times the SDR gain of the run
  (``--preview-exposure``, by default the reference frame's exposure): the editor opens the file
  looking like the reference frame, with every highlight above it recoverable.
* The reference frame's camera make/model and orientation (pixels are stored in the camera's
  sensor orientation with its Orientation tag, as the camera's own raw files are), and an EXIF
  IFD with its exposure time, f-number, ISO, capture time and focal length.

Writer: our own, on top of ``tifffile`` (which writes the image IFD and the DNG tags we pass as
``extratags``); the EXIF IFD, which tifffile does not write, is appended after it and linked
from IFD0's ``ExifIFD`` pointer. ``pidng`` was the alternative: it writes integer CFA/linear DNGs
for its own camera profiles, not float LinearRaw with our tags, and would add a dependency for
what is 150 lines here. Atomic, as every output (``gmodiff.io.atomic``).
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from gmodiff.errors import OutputError
from gmodiff.io.atomic import atomic_path
from gmodiff.io.hdr import check_hdr_values

DNG_SUFFIXES = (".dng",)
XYZ_TO_SRGB = np.array([[3.2404542, -1.5371385, -0.4985314],
                        [-0.9692660, 1.8760108, 0.0415560],
                        [0.0556434, -0.2040259, 1.0572252]])
"""XYZ (D65) → linear sRGB: the DNG's ColorMatrix1 for linear sRGB data."""
MAX_DNG_BYTES = 4_000_000_000
"""DNG is classic TIFF (32-bit offsets): the pixel data must stay under 4 GB."""
TAG_EXIF_IFD = 34665
_EXIF_PLACEHOLDER = 34666
"""tifffile refuses to write the ExifIFD tag itself: a private tag that sorts into the same place
in IFD0 is written instead, then renamed and pointed at the EXIF IFD."""
_ORIENTATION_TURNS = {1: 0, 3: 2, 6: 1, 8: 3}
"""EXIF orientation → counter-clockwise quarter turns that take upright pixels back to the
sensor's layout (the orientations a camera writes; mirrored ones are stored upright)."""


@dataclass(frozen=True)
class DngMetadata:
    """What the DNG carries from the reference frame; ``None`` where unknown."""

    make: str | None = None
    model: str | None = None
    orientation: int = 1
    exposure_time_seconds: float | None = None
    f_number: float | None = None
    iso: float | None = None
    captured: datetime | None = None
    focal_length_mm: float | None = None


def dng_metadata(path: str | Path | None) -> DngMetadata:
    """The reference frame's metadata for the DNG: raw files through LibRaw and their TIFF
    tags, other images through their EXIF. Unreadable metadata is simply absent."""
    if path is None:
        return DngMetadata()
    from gmodiff.io.raw import is_raw, parse_exif_datetime, read_raw_info

    try:
        if is_raw(path):
            info = read_raw_info(path)
            return DngMetadata(make=info.make, model=info.model, orientation=info.orientation,
                               exposure_time_seconds=info.exposure.exposure_time_seconds,
                               f_number=info.exposure.f_number, iso=info.exposure.iso,
                               captured=info.timestamp)
        from PIL import Image

        from gmodiff.io.exif import read_exif

        exposure = read_exif(path)
        with Image.open(path) as im:
            exif = im.getexif()
            merged = {**dict(exif), **dict(exif.get_ifd(TAG_EXIF_IFD))}
        text = {k: str(merged[k]).strip("\0 ") or None for k in (271, 272) if k in merged}
        # JPEG/TIFF frames were rotated upright when read: they are stored upright (1).
        return DngMetadata(make=text.get(271), model=text.get(272),
                           exposure_time_seconds=exposure.exposure_time_seconds,
                           f_number=exposure.f_number, iso=exposure.iso,
                           captured=parse_exif_datetime(merged.get(36867) or merged.get(306),
                                                        merged.get(37521)))
    except Exception:  # metadata never costs the result
        return DngMetadata()


def _rationals(values, signed: bool = False, denominator: int = 1_000_000) -> tuple[int, ...]:
    out: list[int] = []
    limit = 2**31 - 1 if signed else 2**32 - 1
    for value in values:
        value = float(value)
        den = denominator
        while abs(value) * den > limit and den > 1:  # keep large values representable
            den //= 10
        out += [int(round(value * den)), den]
    return tuple(out)


def _ascii(text: str) -> str:
    return text.encode("ascii", "replace").decode("ascii")


def _exif_entries(meta: DngMetadata) -> list[tuple[int, int, int, bytes]]:
    """(tag, type, count, value bytes) of the EXIF IFD, sorted by tag."""
    entries = []

    def rational(tag: int, value: float) -> None:
        num, den = _rationals([value])
        entries.append((tag, 5, 1, struct.pack("<II", num, den)))

    if meta.exposure_time_seconds:
        seconds = float(meta.exposure_time_seconds)
        # 1/250 s as 1/250 (what cameras write), not as 4000/1000000
        whole = round(1 / seconds) if seconds < 1 else 0
        num, den = (1, int(whole)) if whole and abs(whole * seconds - 1) < 1e-4 \
            else _rationals([seconds])
        entries.append((0x829A, 5, 1, struct.pack("<II", num, den)))
    if meta.f_number:
        rational(0x829D, meta.f_number)
    if meta.iso:
        entries.append((0x8827, 3, 1, struct.pack("<H", min(int(round(meta.iso)), 65535))))
    entries.append((0x9000, 7, 4, b"0231"))  # ExifVersion
    if meta.captured is not None:
        stamp = meta.captured.strftime("%Y:%m:%d %H:%M:%S").encode() + b"\0"
        entries.append((0x9003, 2, len(stamp), stamp))
        if meta.captured.microsecond:
            sub = f"{meta.captured.microsecond:06d}".rstrip("0").encode() + b"\0"
            entries.append((0x9291, 2, len(sub), sub))
    if meta.focal_length_mm:
        rational(0x920A, meta.focal_length_mm)
    return sorted(entries)


def _ifd_bytes(entries: list[tuple[int, int, int, bytes]], offset: int) -> bytes:
    """A TIFF IFD placed at file ``offset`` (values over 4 bytes follow it), no next IFD."""
    table = struct.pack("<H", len(entries))
    data = b""
    data_start = offset + 2 + 12 * len(entries) + 4
    for tag, kind, count, value in entries:
        if len(value) <= 4:
            table += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
        else:
            table += struct.pack("<HHII", tag, kind, count, data_start + len(data))
            data += value + (b"\0" if len(value) % 2 else b"")
    return table + struct.pack("<I", 0) + data


def _link_exif_ifd(path: Path, entries: list[tuple[int, int, int, bytes]]) -> None:
    """Append the EXIF IFD to the file and turn IFD0's placeholder into the ExifIFD pointer."""
    with open(path, "r+b") as handle:
        header = handle.read(8)
        if header[:4] != b"II*\0":
            raise OutputError("tifffile wrote an unexpected TIFF header", path,
                              "report this as a bug")
        (ifd0,) = struct.unpack("<I", header[4:8])
        handle.seek(ifd0)
        (count,) = struct.unpack("<H", handle.read(2))
        table = handle.read(12 * count)
        for index in range(count):
            tag = struct.unpack("<H", table[12 * index:12 * index + 2])[0]
            if tag == _EXIF_PLACEHOLDER:
                entry = ifd0 + 2 + 12 * index
                break
        else:
            raise OutputError("ExifIFD placeholder missing from the written DNG", path,
                              "report this as a bug")
        end = handle.seek(0, 2)
        if end % 2:
            handle.write(b"\0")
            end += 1
        handle.write(_ifd_bytes(entries, end))
        handle.seek(entry)
        handle.write(struct.pack("<HHII", TAG_EXIF_IFD, 4, 1, end))


def write_dng(path: str | Path, hdr: np.ndarray, metadata: DngMetadata | None = None,
              display_scale: float = 1.0) -> None:
    """Write linear radiance (H, W, 3, upright) as a float32 LinearRaw DNG, atomically.

    ``display_scale`` is the linear gain at which the radiance looks right on an SDR screen
    (the reference frame's exposure); it and the normalisation to a peak of 1.0 go into
    ``BaselineExposure``. Radiance read back = stored values × 2**BaselineExposure / scale.
    """
    import tifffile

    path = Path(path)
    meta = metadata or DngMetadata()
    rgb = check_hdr_values(np.asarray(hdr), path, "check the reconstruction")
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) array, got shape {rgb.shape}")
    if rgb.nbytes > MAX_DNG_BYTES:
        raise OutputError(f"a {rgb.shape[1]}x{rgb.shape[0]} float DNG would exceed 4 GB", path,
                          "write .exr instead, or crop the frames")
    peak = float(rgb.max())
    peak = peak if peak > 0 else 1.0
    scale = float(display_scale) if display_scale and math.isfinite(display_scale) else 1.0
    stored = np.rot90(rgb / np.float32(peak), _ORIENTATION_TURNS.get(meta.orientation, 0))
    orientation = meta.orientation if meta.orientation in _ORIENTATION_TURNS else 1
    camera = _ascii(" ".join(p for p in (meta.make, meta.model) if p) or "gmodiff")
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 4, 0, 0), True),  # DNGBackwardVersion: floats need a 1.4 reader
        (50708, "s", 0, f"{camera} (gmodiff HDR merge)", True),  # UniqueCameraModel
        (50721, "2i", 9, _rationals(XYZ_TO_SRGB.ravel(), signed=True), True),  # ColorMatrix1
        (50778, "H", 1, (21,), True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral
        (50730, "2i", 1, _rationals([math.log2(peak * scale)], signed=True), True),
        (274, "H", 1, (orientation,), True),
        (_EXIF_PLACEHOLDER, "I", 1, (0,), True),  # becomes ExifIFD, linked after writing
    ]
    if meta.make:
        tags.append((271, "s", 0, _ascii(meta.make), True))
    if meta.model:
        tags.append((272, "s", 0, _ascii(meta.model), True))
    if meta.captured is not None:
        tags.append((306, "s", 0, meta.captured.strftime("%Y:%m:%d %H:%M:%S"), True))
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, np.ascontiguousarray(stored, dtype=np.float32),
                         photometric=34892, planarconfig="contig", subfiletype=0,
                         extratags=tags, bigtiff=False, metadata=None, software="gmodiff")
        _link_exif_ifd(tmp, _exif_entries(meta))


@dataclass
class DngImage:
    """A DNG read back with tifffile: upright radiance and its tags."""

    radiance: np.ndarray
    """Stored values × 2**BaselineExposure (÷ ``display_scale`` of :func:`write_dng` gives the
    merged radiance)."""
    tags: dict
    exif: dict


def read_dng(path: str | Path) -> DngImage:
    """Read a DNG written by :func:`write_dng` (tifffile): upright radiance and the tags."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        stored = page.asarray().astype(np.float32)
        tags = {tag.name: tag.value for tag in page.tags.values()}
    exif = dict(tags.get("ExifTag") or {})
    baseline = tags.get("BaselineExposure", (0, 1))
    stops = baseline[0] / baseline[1] if isinstance(baseline, tuple) else float(baseline)
    orientation = int(tags.get("Orientation", 1))
    upright = np.rot90(stored, -_ORIENTATION_TURNS.get(orientation, 0))
    return DngImage(np.ascontiguousarray(upright * np.float32(2.0 ** stops)), tags, exif)
