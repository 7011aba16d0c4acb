"""Ultra HDR JPEG (gain-map JPEG) writer and reader.

Layout, as libultrahdr writes it: a primary SDR JPEG whose header carries an XMP packet
(``hdrgm:Version`` plus a GContainer directory listing the gain-map item and its length), the
ISO 21496-1 version-only APP2 block and an MPF index; the gain-map JPEG is appended after the
primary's EOI and carries the ``hdrgm`` XMP gain-map parameters plus the full ISO 21496-1
binary metadata (APP2 ``urn:iso:std:iso:ts:21496:-1``).

Gain-map math (ISO 21496-1 / Adobe gain maps, log2 domain), per pixel and channel::

    gain   = log2((HDR + offset_hdr) / (SDR_linear + offset_sdr))
    stored = ((clip(gain, min, max) - min) / (max - min)) ** gamma        quantised to 8 bit
    HDR    = (SDR_linear + offset_sdr) * 2 ** (min + (max - min) * stored ** (1/gamma))
             - offset_hdr

HDR values are display-referred: SDR white is 1.0. gmodiff radiance is multiplied by
``radiance_scale`` before encoding (the CLI passes the reference frame's exposure time, so the
SDR base is exposed like the reference photo; ``None`` uses the preview's auto exposure). The
scale is kept in our own XMP field so :func:`read` can return radiance in the original units
too. The gain map is always re-encoded from the reconstructed HDR (method spec §2), never from
the network's μ-law gain map.
"""

from __future__ import annotations

import io
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from gmodiff import srgb
from gmodiff.errors import HDRValueError, ImageReadError, OutputError
from gmodiff.io.atomic import write_bytes_atomic
from gmodiff.io.bands import row_bands
from gmodiff.io.ldr import MAX_SIDE
from gmodiff.io.preview import auto_exposure, tonemap_preview
from gmodiff.io.jpeg_segments import (
    APP1,
    APP2,
    XMP_NAMESPACE,
    JPEGStructureError,
    header_segments,
    insert_segments,
    make_mpf_segment,
    make_segment,
    mpf_segment_size,
    parse_mpf,
)

ISO_NAMESPACE = b"urn:iso:std:iso:ts:21496:-1\x00"
GMODIFF_XMP_NS = "urn:gmodiff:ultrahdr:1.0"
_MULTICHANNEL = 1 << 7
_USE_BASE_COLOUR_SPACE = 1 << 6
_COMMON_DENOMINATOR = 1 << 3
_BACKWARD_DIRECTION = 1 << 2


@dataclass(frozen=True)
class GainMapMetadata:
    """Gain-map parameters: min/max gains and HDR capacities in log2 stops, the rest linear."""

    gain_map_min: tuple[float, float, float]
    gain_map_max: tuple[float, float, float]
    gamma: tuple[float, float, float] = (1.0, 1.0, 1.0)
    offset_sdr: tuple[float, float, float] = (1 / 64, 1 / 64, 1 / 64)
    offset_hdr: tuple[float, float, float] = (1 / 64, 1 / 64, 1 / 64)
    hdr_capacity_min: float = 0.0
    hdr_capacity_max: float = 1.0


@dataclass(frozen=True)
class UltraHDRConfig:
    """Encoder settings: JPEG qualities, gain-map downscale factor and gain-map gamma."""

    quality: int = 95
    gain_map_quality: int = 95
    gain_map_downscale: int = 1
    gamma: float = 1.0
    offset_sdr: float = 1 / 64
    offset_hdr: float = 1 / 64


@dataclass
class UltraHDRImage:
    """A decoded Ultra HDR JPEG: SDR base, gain map (uint8), metadata and the decoded HDR.

    ``hdr`` is display-referred (SDR white = 1); ``radiance`` divides by ``radiance_scale`` to
    return the units of the .hdr/.exr gmodiff writes for the same result (reference-white
    units; equal to ``hdr`` at the default preview exposure, and for files gmodiff did not
    write).
    """

    sdr: np.ndarray
    gain_map: np.ndarray
    metadata: GainMapMetadata
    hdr: np.ndarray
    radiance_scale: float = 1.0

    @property
    def radiance(self) -> np.ndarray:
        """HDR in the radiance units the writer was given."""
        return (self.hdr / self.radiance_scale).astype(np.float32)


# --- colour and gain-map math -----------------------------------------------------------------

def srgb_to_linear(v: np.ndarray) -> np.ndarray:
    """sRGB EOTF (:mod:`gmodiff.srgb`) in float32: encoded values in [0, 1] → linear light."""
    return srgb.srgb_to_linear(np.asarray(v, dtype=np.float32)).astype(np.float32)


def encode_log2_gain_map(hdr_display: np.ndarray, sdr_linear: np.ndarray,
                         config: UltraHDRConfig) -> tuple[np.ndarray, GainMapMetadata]:
    """Quantised 8-bit RGB gain map and its metadata lifting ``sdr_linear`` to ``hdr_display``."""
    return quantise_log2_gain(log2_gain(hdr_display, sdr_linear, config), config)


def log2_gain(hdr_display: np.ndarray, sdr_linear: np.ndarray, config: UltraHDRConfig) -> np.ndarray:
    """Per-pixel log2 gain from ``sdr_linear`` to ``hdr_display`` (with the config's offsets)."""
    return np.log2((hdr_display + config.offset_hdr) / (sdr_linear + config.offset_sdr))


def quantise_log2_gain(log_gain: np.ndarray, config: UltraHDRConfig
                       ) -> tuple[np.ndarray, GainMapMetadata]:
    """The 8-bit gain map (downscaled per the config) of a full-size log2 gain, and its metadata."""
    if config.gain_map_downscale > 1:
        h, w = log_gain.shape[:2]
        size = (max(1, w // config.gain_map_downscale), max(1, h // config.gain_map_downscale))
        log_gain = cv2.resize(log_gain, size, interpolation=cv2.INTER_AREA)
    lo, hi = float(log_gain.min()), float(log_gain.max())
    if hi - lo < 1e-3:  # flat gain: keep a non-empty range so the division is defined
        hi = lo + 1e-3
    gain_map = np.empty(log_gain.shape, dtype=np.uint8)
    for rows in row_bands(log_gain.shape[0]):
        stored = ((log_gain[rows] - lo) / (hi - lo)).clip(0.0, 1.0) ** config.gamma
        gain_map[rows] = np.round(stored * 255.0)
    metadata = GainMapMetadata(
        gain_map_min=(lo,) * 3, gain_map_max=(hi,) * 3, gamma=(config.gamma,) * 3,
        offset_sdr=(config.offset_sdr,) * 3, offset_hdr=(config.offset_hdr,) * 3,
        hdr_capacity_min=0.0, hdr_capacity_max=max(hi, 1e-3),
    )
    return gain_map, metadata


def apply_log2_gain_map(sdr_linear: np.ndarray, gain_map: np.ndarray,
                        metadata: GainMapMetadata, weight: float = 1.0) -> np.ndarray:
    """Display-referred HDR from linear SDR and a gain map in [0, 1] (resized to the SDR)."""
    h, w = sdr_linear.shape[:2]
    g = np.asarray(gain_map, dtype=np.float32)
    if g.ndim == 2:
        g = np.repeat(g[..., None], 3, axis=2)
    if g.shape[:2] != (h, w):
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)
    lo = np.array(metadata.gain_map_min, np.float32)
    hi = np.array(metadata.gain_map_max, np.float32)
    gamma = np.array(metadata.gamma, np.float32)
    log_gain = lo + (hi - lo) * np.clip(g, 0.0, 1.0) ** (1.0 / gamma)
    hdr = (sdr_linear + np.array(metadata.offset_sdr, np.float32)) * np.exp2(log_gain * weight)
    return (hdr - np.array(metadata.offset_hdr, np.float32)).astype(np.float32)


# --- metadata serialisation -------------------------------------------------------------------

def _fmt(v: float) -> str:
    return f"{v:.8g}"


def _gain_map_xmp(m: GainMapMetadata) -> bytes:
    """``hdrgm`` XMP for the gain-map image (single-channel form: our channels share values)."""
    attrs = {
        "Version": "1.0", "GainMapMin": _fmt(m.gain_map_min[0]), "GainMapMax": _fmt(m.gain_map_max[0]),
        "Gamma": _fmt(m.gamma[0]), "OffsetSDR": _fmt(m.offset_sdr[0]),
        "OffsetHDR": _fmt(m.offset_hdr[0]), "HDRCapacityMin": _fmt(m.hdr_capacity_min),
        "HDRCapacityMax": _fmt(m.hdr_capacity_max), "BaseRenditionIsHDR": "False",
    }
    body = "\n    ".join(f'hdrgm:{k}="{v}"' for k, v in attrs.items())
    return _xmp_packet(
        f'<rdf:Description rdf:about=""\n    xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/"\n'
        f"    {body}/>"
    )


def _primary_xmp(gain_map_length: int, radiance_scale: float) -> bytes:
    """Primary-image XMP: ``hdrgm:Version`` and the GContainer directory (Primary + GainMap)."""
    return _xmp_packet(
        '<rdf:Description rdf:about=""\n'
        '    xmlns:hdrgm="http://ns.adobe.com/hdr-gain-map/1.0/"\n'
        '    xmlns:Container="http://ns.google.com/photos/1.0/container/"\n'
        '    xmlns:Item="http://ns.google.com/photos/1.0/container/item/"\n'
        f'    xmlns:gmodiff="{GMODIFF_XMP_NS}"\n'
        f'    hdrgm:Version="1.0" gmodiff:RadianceScale="{_fmt(radiance_scale)}">\n'
        "   <Container:Directory>\n    <rdf:Seq>\n"
        '     <rdf:li rdf:parseType="Resource">\n'
        '      <Container:Item Item:Semantic="Primary" Item:Mime="image/jpeg"/>\n     </rdf:li>\n'
        '     <rdf:li rdf:parseType="Resource">\n'
        '      <Container:Item Item:Semantic="GainMap" Item:Mime="image/jpeg"'
        f' Item:Length="{gain_map_length}"/>\n     </rdf:li>\n'
        "    </rdf:Seq>\n   </Container:Directory>\n  </rdf:Description>"
    )


def _xmp_packet(description: str) -> bytes:
    xml = (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="gmodiff">\n'
        ' <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">\n  '
        f"{description}\n </rdf:RDF>\n</x:xmpmeta>"
    )
    return XMP_NAMESPACE + xml.encode("utf-8")


def _fraction(value: float, signed: bool) -> tuple[int, int]:
    """Rational (numerator, denominator) with the largest denominator that keeps it in range."""
    limit = 0x7FFFFFFF if signed else 0xFFFFFFFF
    if not math.isfinite(value) or (not signed and value < 0) or abs(value) > limit:
        raise OutputError(f"gain-map value {value} cannot be stored as an ISO 21496-1 fraction")
    denominator = min(0xFFFFFFFF, int(limit // max(1.0, abs(value))))
    return round(value * denominator), denominator


def encode_iso_metadata(m: GainMapMetadata) -> bytes:
    """ISO 21496-1 binary gain-map metadata (without namespace), big-endian."""
    channels = list(zip(m.gain_map_min, m.gain_map_max, m.gamma, m.offset_sdr, m.offset_hdr))
    multi = any(c != channels[0] for c in channels)
    out = struct.pack(">HHB", 0, 0, (_MULTICHANNEL if multi else 0) | _USE_BASE_COLOUR_SPACE)
    for value in (m.hdr_capacity_min, m.hdr_capacity_max):
        out += struct.pack(">II", *_fraction(value, signed=False))
    for lo, hi, gamma, off_sdr, off_hdr in channels[: 3 if multi else 1]:
        out += struct.pack(">iI", *_fraction(lo, True)) + struct.pack(">iI", *_fraction(hi, True))
        out += struct.pack(">II", *_fraction(gamma, False))
        out += struct.pack(">iI", *_fraction(off_sdr, True)) + struct.pack(">iI", *_fraction(off_hdr, True))
    return out


def decode_iso_metadata(payload: bytes) -> GainMapMetadata:
    """Parse ISO 21496-1 binary gain-map metadata; raises ValueError when malformed/unsupported."""
    pos = 0

    def take(fmt: str):
        nonlocal pos
        size = struct.calcsize(fmt)
        if pos + size > len(payload):
            raise ValueError("ISO 21496-1 metadata is truncated")
        values = struct.unpack(fmt, payload[pos:pos + size])
        pos += size
        return values

    min_version, _writer = take(">HH")
    if min_version != 0:
        raise ValueError(f"unsupported ISO 21496-1 minimum version {min_version}")
    (flags,) = take(">B")
    if flags & _BACKWARD_DIRECTION:
        raise ValueError("ISO 21496-1 metadata with an HDR base image is not supported")
    common = take(">I")[0] if flags & _COMMON_DENOMINATOR else None

    def fraction(signed: bool) -> float:
        (num,) = take(">i" if signed else ">I")
        den = common if common is not None else take(">I")[0]
        if den == 0:
            raise ValueError("ISO 21496-1 fraction with a zero denominator")
        return num / den

    cap_min, cap_max = fraction(False), fraction(False)
    n = 3 if flags & _MULTICHANNEL else 1
    rows = [(fraction(True), fraction(True), fraction(False), fraction(True), fraction(True))
            for _ in range(n)]
    cols = [tuple(r[i] for r in rows) * (3 // n) for i in range(5)]
    return GainMapMetadata(*cols, hdr_capacity_min=cap_min, hdr_capacity_max=cap_max)


_ATTR = re.compile(r'hdrgm:(\w+)="([^"]*)"')


def parse_hdrgm_xmp(xmp: bytes) -> GainMapMetadata | None:
    """Gain-map metadata from ``hdrgm`` XMP attributes, or None when GainMapMax is absent."""
    attrs = dict(_ATTR.findall(xmp.decode("utf-8", errors="replace")))
    if "GainMapMax" not in attrs or "HDRCapacityMax" not in attrs:
        return None
    try:
        def triple(key: str, default: str) -> tuple[float, float, float]:
            return (float(attrs.get(key, default)),) * 3

        return GainMapMetadata(
            gain_map_min=triple("GainMapMin", "0"), gain_map_max=triple("GainMapMax", "0"),
            gamma=triple("Gamma", "1"), offset_sdr=triple("OffsetSDR", "0.015625"),
            offset_hdr=triple("OffsetHDR", "0.015625"),
            hdr_capacity_min=float(attrs.get("HDRCapacityMin", "0")),
            hdr_capacity_max=float(attrs["HDRCapacityMax"]),
        )
    except ValueError:
        return None


# --- writer -----------------------------------------------------------------------------------

def _encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma: the gain map is per channel and the SDR base is what HDR is rebuilt from.
    Image.fromarray(rgb).save(buf, "JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def _decode_jpeg(data: bytes) -> np.ndarray:
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as exc:  # not an OSError: make read() report it
        raise ValueError(str(exc)) from exc
    with im:
        # Check the header's size before decoding: a corrupt SOF must not allocate gigabytes.
        if max(im.size) > MAX_SIDE:
            raise ValueError(f"image size {im.width}x{im.height} is above the {MAX_SIDE}-pixel "
                             "limit")
        return np.asarray(im.convert("RGB"))


def _check_hdr(hdr: np.ndarray, path: Path) -> np.ndarray:
    """``hdr`` as float32 (no copy when it is already), after the shape and finiteness checks;
    negative values are clamped to 0 where it is used, band by band."""
    hdr = np.asarray(hdr, dtype=np.float32)
    if hdr.ndim != 3 or hdr.shape[2] != 3:
        raise HDRValueError(f"expected an H×W×3 HDR image, got shape {hdr.shape}", path)
    if not all(np.isfinite(hdr[rows]).all() for rows in row_bands(hdr.shape[0])):
        raise HDRValueError("HDR image contains NaN or inf", path, "fix the reconstruction first")
    return hdr


def encode_ultrahdr(hdr: np.ndarray, radiance_scale: float | None = None,
                    config: UltraHDRConfig | None = None, path: Path | None = None,
                    exif: bytes | None = None, exposure: float = 1.0) -> bytes:
    """The bytes of an Ultra HDR JPEG for linear ``hdr`` (radiance units × ``radiance_scale``);
    ``exif`` (``Exif\\0\\0`` + TIFF block) goes first in the primary image. :func:`read`
    returns radiance in ``hdr``'s units × ``exposure`` (the units of the .hdr/.exr written
    with that exposure factor)."""
    config = config or UltraHDRConfig()
    hdr = _check_hdr(hdr, path)
    scale = auto_exposure(np.maximum(hdr, 0.0)) if radiance_scale is None else float(radiance_scale)
    if not (math.isfinite(scale) and scale > 0):
        raise OutputError(f"radiance scale must be positive, got {scale}", path)

    def display(rows: slice) -> np.ndarray:
        return np.maximum(hdr[rows], 0.0) * np.float32(scale)

    # The SDR base is the same rendition as `--preview` (gmodiff.io.tonemap), at the chosen
    # scale; it runs in row bands itself. Everything per pixel here runs in row bands too:
    # whole-image float temporaries would dominate the peak memory of a full-size photo.
    sdr = tonemap_preview(hdr, exposure=scale)
    sdr_jpeg = _encode_jpeg(sdr, config.quality)
    del sdr
    # Gain is computed against the SDR as a decoder will see it, so JPEG error in the base
    # image is corrected by the gain map instead of adding to the HDR error.
    decoded = _decode_jpeg(sdr_jpeg)
    log_gain = np.empty(hdr.shape, dtype=np.float32)
    for rows in row_bands(hdr.shape[0]):
        log_gain[rows] = log2_gain(display(rows), srgb_to_linear(decoded[rows] / np.float32(255.0)), config)
    del decoded
    gain_map, metadata = quantise_log2_gain(log_gain, config)
    del log_gain
    gm_jpeg = insert_segments(_encode_jpeg(gain_map, config.gain_map_quality), [
        make_segment(APP1, _gain_map_xmp(metadata)),
        make_segment(APP2, ISO_NAMESPACE + encode_iso_metadata(metadata)),
    ])
    head = [
        *([make_segment(APP1, exif)] if exif else []),
        make_segment(APP1, _primary_xmp(len(gm_jpeg), scale / float(exposure))),
        make_segment(APP2, ISO_NAMESPACE + struct.pack(">HH", 0, 0)),  # version-only block
    ]
    # The MPF index must state the primary's own size, so lay out with a same-size
    # placeholder first, then fill in the real offsets.
    placeholder = make_mpf_segment([0, 0], [0, 0])
    assert len(placeholder) == mpf_segment_size(2)
    primary = insert_segments(sdr_jpeg, [*head, placeholder])
    mpf_start = primary.index(placeholder)
    tiff_start = mpf_start + 8  # marker (2) + length (2) + "MPF\0" (4)
    mpf = make_mpf_segment([len(primary), len(gm_jpeg)], [0, len(primary) - tiff_start])
    primary = primary[:mpf_start] + mpf + primary[mpf_start + len(mpf):]
    return primary + gm_jpeg


def write_ultrahdr(path: str | Path, hdr: np.ndarray, radiance_scale: float | None = None,
                   config: UltraHDRConfig | None = None, exif: bytes | None = None,
                   exposure: float = 1.0) -> None:
    """Write ``hdr`` (linear radiance) as an Ultra HDR JPEG, atomically (with ``exif``);
    ``exposure`` as in :func:`encode_ultrahdr`."""
    path = Path(path)
    write_bytes_atomic(path, encode_ultrahdr(hdr, radiance_scale, config, path, exif, exposure))


# --- reader -----------------------------------------------------------------------------------

def _find_gain_map_range(data: bytes, segments, path: Path) -> tuple[int, int]:
    for seg in segments:
        if seg.marker == APP2 and seg.payload.startswith(b"MPF\x00"):
            images = parse_mpf(seg)
            if len(images) >= 2:
                start, size = images[1].start, images[1].size
                if start + size > len(data) or data[start:start + 2] != b"\xff\xd8":
                    raise JPEGStructureError("MPF index points outside the file or not at a JPEG")
                return start, start + size
    for seg in segments:  # no MPF: the GContainer directory gives the gain map's length
        if seg.marker == APP1 and seg.payload.startswith(XMP_NAMESPACE):
            match = re.search(rb'Item:Semantic="GainMap"[^>]*Item:Length="(\d+)"', seg.payload)
            if match:
                length = int(match.group(1))
                if 0 < length < len(data) and data[len(data) - length:][:2] == b"\xff\xd8":
                    return len(data) - length, len(data)
    raise ImageReadError("not an Ultra HDR JPEG (no MPF index or GContainer gain-map item)", path,
                         "pass a gain-map JPEG written by gmodiff or libultrahdr")


def _gain_map_metadata(gm_segments, primary_segments, path: Path) -> GainMapMetadata:
    for seg in gm_segments:
        if seg.marker == APP2 and seg.payload.startswith(ISO_NAMESPACE) \
                and len(seg.payload) > len(ISO_NAMESPACE) + 4:
            try:
                return decode_iso_metadata(seg.payload[len(ISO_NAMESPACE):])
            except ValueError:
                break  # fall back to XMP, as other decoders do
    for seg in [*gm_segments, *primary_segments]:
        if seg.marker == APP1 and seg.payload.startswith(XMP_NAMESPACE):
            meta = parse_hdrgm_xmp(seg.payload)
            if meta is not None:
                return meta
    raise ImageReadError("Ultra HDR JPEG has no readable gain-map metadata (ISO 21496-1 or hdrgm "
                         "XMP)", path, "re-export the file")


def read(path: str | Path) -> UltraHDRImage:
    """Decode an Ultra HDR JPEG: SDR base, gain map, metadata and the HDR rendition."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read file ({exc.strerror or exc})", path) from exc
    try:
        primary_segments = header_segments(data)
        start, end = _find_gain_map_range(data, primary_segments, path)
        gm_data = data[start:end]
        gm_segments = header_segments(gm_data)
        metadata = _gain_map_metadata(gm_segments, primary_segments, path)
        sdr = _decode_jpeg(data[:start])
        gain_map = _decode_jpeg(gm_data)
    except JPEGStructureError as exc:
        raise ImageReadError(f"corrupt or non-Ultra-HDR JPEG ({exc})", path,
                             "pass an intact Ultra HDR JPEG") from exc
    except ImageReadError:
        raise
    except Exception as exc:  # Pillow raises many types (OSError, SyntaxError, bomb errors...)
        raise ImageReadError(f"cannot decode JPEG data ({type(exc).__name__}: {exc})", path,
                             "the file is truncated or corrupt") from exc
    scale = 1.0
    for seg in primary_segments:
        if seg.marker == APP1 and seg.payload.startswith(XMP_NAMESPACE):
            match = re.search(rb'gmodiff:RadianceScale="([^"]+)"', seg.payload)
            if match:
                try:
                    scale = float(match.group(1))
                except ValueError:
                    pass
    if not (math.isfinite(scale) and scale > 0):
        scale = 1.0
    sdr_linear = srgb_to_linear(sdr / np.float32(255.0))
    with np.errstate(all="ignore"):
        hdr = apply_log2_gain_map(sdr_linear, gain_map / np.float32(255.0), metadata)
    if not np.isfinite(hdr).all():
        raise HDRValueError("gain-map metadata gives NaN or infinite HDR values", path,
                            "re-export the file")
    return UltraHDRImage(sdr=sdr, gain_map=gain_map, metadata=metadata, hdr=hdr,
                         radiance_scale=scale)
