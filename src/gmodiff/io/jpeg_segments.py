"""JPEG marker-segment plumbing: list APPn segments, insert new ones, build/parse an MPF index.

Only the header part of a JPEG (up to the first SOS) is walked; entropy-coded data is never
parsed. Every malformed structure raises :class:`JPEGStructureError`, which callers turn into a
``GmodiffError`` naming the file.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

SOI = b"\xff\xd8"
EOI = b"\xff\xd9"
APP0, APP1, APP2 = 0xE0, 0xE1, 0xE2
SOS = 0xDA
XMP_NAMESPACE = b"http://ns.adobe.com/xap/1.0/\x00"
MPF_NAMESPACE = b"MPF\x00"
# Markers without a length field (besides SOI/EOI): TEM and the restart markers.
_STANDALONE = {0x01, *range(0xD0, 0xD8)}
_MAX_PAYLOAD = 0xFFFF - 2


class JPEGStructureError(ValueError):
    """The bytes are not a JPEG with a well-formed marker-segment header."""


@dataclass(frozen=True)
class Segment:
    """One marker segment of a JPEG header: ``start`` is the offset of its 0xFF byte."""

    marker: int
    start: int
    payload: bytes

    @property
    def end(self) -> int:
        """Offset just past the segment."""
        return self.start + 4 + len(self.payload)


def header_segments(data: bytes, start: int = 0) -> list[Segment]:
    """The marker segments of the JPEG beginning at ``start``, up to (excluding) SOS."""
    if data[start:start + 2] != SOI:
        raise JPEGStructureError("does not start with a JPEG SOI marker")
    segments: list[Segment] = []
    pos = start + 2
    while True:
        if pos + 4 > len(data):
            raise JPEGStructureError("JPEG header ends before the image data (truncated)")
        if data[pos] != 0xFF:
            raise JPEGStructureError(f"expected a JPEG marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD8, 0xD9):
            raise JPEGStructureError(f"unexpected SOI/EOI marker at byte {pos}")
        (length,) = struct.unpack(">H", data[pos + 2:pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise JPEGStructureError(f"segment at byte {pos} has an invalid length")
        if marker == SOS:
            return segments
        segments.append(Segment(marker, pos, bytes(data[pos + 4:pos + 2 + length])))
        pos += 2 + length


def make_segment(marker: int, payload: bytes) -> bytes:
    """Encode one APPn marker segment."""
    if len(payload) > _MAX_PAYLOAD:
        raise JPEGStructureError(f"segment payload of {len(payload)} bytes exceeds 65533")
    return bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload


def insert_segments(jpeg: bytes, segments: list[bytes]) -> bytes:
    """Insert encoded segments after SOI (and after a leading JFIF APP0, which must stay first)."""
    existing = header_segments(jpeg)
    pos = 2
    if existing and existing[0].marker == APP0 and existing[0].start == 2:
        pos = existing[0].end
    return jpeg[:pos] + b"".join(segments) + jpeg[pos:]


# --- MPF (CIPA DC-007 Multi-Picture Format) index -------------------------------------------

_MP_TYPE_BASELINE_PRIMARY = 0x030000
_MP_REPRESENTATIVE = 0x20000000
_MPF_IFD_ENTRIES = 3
# TIFF header (8) + IFD count (2) + entries (12 each) + next-IFD offset (4)
_MP_ENTRIES_OFFSET = 8 + 2 + 12 * _MPF_IFD_ENTRIES + 4


def mpf_segment_size(n_images: int) -> int:
    """Encoded byte size of the MPF APP2 segment for ``n_images`` images."""
    return 4 + len(MPF_NAMESPACE) + _MP_ENTRIES_OFFSET + 16 * n_images


def make_mpf_segment(sizes: list[int], offsets: list[int]) -> bytes:
    """MPF APP2 segment (big-endian) listing images of ``sizes`` at ``offsets``.

    Offsets are relative to the MP endian field (the byte after ``MPF\\0``); the first image's
    offset is 0 by definition. The first image is marked as the representative baseline primary.
    """
    n = len(sizes)
    ifd = struct.pack(">H", _MPF_IFD_ENTRIES)
    ifd += struct.pack(">HHI4s", 0xB000, 7, 4, b"0100")  # MPFVersion
    ifd += struct.pack(">HHII", 0xB001, 4, 1, n)  # NumberOfImages
    ifd += struct.pack(">HHII", 0xB002, 7, 16 * n, _MP_ENTRIES_OFFSET)  # MPEntry
    ifd += struct.pack(">I", 0)  # no next IFD
    entries = b""
    for i, (size, offset) in enumerate(zip(sizes, offsets, strict=True)):
        attribute = (_MP_REPRESENTATIVE | _MP_TYPE_BASELINE_PRIMARY) if i == 0 else 0
        entries += struct.pack(">IIIHH", attribute, size, 0 if i == 0 else offset, 0, 0)
    payload = MPF_NAMESPACE + b"MM\x00\x2a" + struct.pack(">I", 8) + ifd + entries
    return make_segment(APP2, payload)


@dataclass(frozen=True)
class MPImage:
    """One image listed in an MPF index: absolute byte range in the file."""

    start: int
    size: int


def parse_mpf(segment: Segment) -> list[MPImage]:
    """Absolute byte ranges of the images listed by an MPF APP2 segment."""
    payload = segment.payload
    if not payload.startswith(MPF_NAMESPACE):
        raise JPEGStructureError("APP2 segment is not an MPF index")
    tiff = payload[len(MPF_NAMESPACE):]
    tiff_start = segment.start + 4 + len(MPF_NAMESPACE)
    if tiff[:4] == b"MM\x00\x2a":
        endian = ">"
    elif tiff[:4] == b"II\x2a\x00":
        endian = "<"
    else:
        raise JPEGStructureError("MPF index has no valid TIFF header")
    try:
        (ifd_offset,) = struct.unpack(endian + "I", tiff[4:8])
        (count,) = struct.unpack(endian + "H", tiff[ifd_offset:ifd_offset + 2])
        n_images, entries_offset = 0, None
        for k in range(count):
            base = ifd_offset + 2 + 12 * k
            tag, _typ, cnt = struct.unpack(endian + "HHI", tiff[base:base + 8])
            if tag == 0xB001:
                (n_images,) = struct.unpack(endian + "I", tiff[base + 8:base + 12])
            elif tag == 0xB002:
                (entries_offset,) = struct.unpack(endian + "I", tiff[base + 8:base + 12])
        if entries_offset is None or not 1 <= n_images <= 64:
            raise JPEGStructureError("MPF index lists no images")
        images = []
        for k in range(n_images):
            base = entries_offset + 16 * k
            _attr, size, offset, _d1, _d2 = struct.unpack(endian + "IIIHH", tiff[base:base + 16])
            images.append(MPImage(0 if k == 0 else tiff_start + offset, size))
        return images
    except struct.error as exc:
        raise JPEGStructureError("MPF index is truncated") from exc
