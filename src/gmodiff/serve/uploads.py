"""Checks on uploaded frames: type by content (magic bytes), safe names, size and pixel limits.

Nothing the client sends is used as a path: a file keeps only a cleaned-up base name (so error
messages name the photographer's own file) with the extension of its real content.
"""

from __future__ import annotations

import re
from pathlib import Path

from gmodiff.errors import ImageReadError, SceneError
from gmodiff.io.ldr import ldr_size

MAGIC = (
    (b"\xff\xd8\xff", "jpeg", ".jpg"),
    (b"\x89PNG\r\n\x1a\n", "png", ".png"),
    (b"II*\x00", "tiff", ".tif"),
    (b"MM\x00*", "tiff", ".tif"),
)
"""(leading bytes, kind, extension) of the frame types the readers accept."""
SNIFF_BYTES = 8


def sniff(head: bytes) -> tuple[str, str] | None:
    """(kind, extension) of a file from its first bytes, or None when it is no JPEG/PNG/TIFF."""
    for magic, kind, suffix in MAGIC:
        if head.startswith(magic):
            return kind, suffix
    return None


def safe_stem(client_name: str, index: int) -> str:
    """A base name without folders or odd characters, e.g. ``../x/IMG 1.JPG`` → ``IMG_1``."""
    base = re.split(r"[\\/]", client_name or "")[-1]
    stem = base.rsplit(".", 1)[0] if "." in base.lstrip(".") else base
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._-")[:80]
    return stem or f"frame_{index + 1}"


def unique_names(client_names: list[str], suffixes: list[str]) -> list[str]:
    """Safe file names for the frames of one upload, made unique by a numeric suffix."""
    names: list[str] = []
    for i, (client, suffix) in enumerate(zip(client_names, suffixes)):
        stem, candidate, n = safe_stem(client, i), "", 1
        candidate = stem + suffix
        while candidate.lower() in (x.lower() for x in names):
            n += 1
            candidate = f"{stem}_{n}{suffix}"
        names.append(candidate)
    return names


def wrong_type_error(name: str) -> ImageReadError:
    """The one-line refusal of a file that is not a JPEG, PNG or TIFF by content."""
    return ImageReadError("not a JPEG, PNG or TIFF image (checked by its content)", name,
                          "upload the bracket's camera JPEG, PNG or TIFF frames")


def frame_size(path: Path) -> tuple[int, int] | None:
    """(width, height) from the header without decoding pixels, through the frame readers' own
    header check (:func:`gmodiff.io.ldr.ldr_size`: Pillow's bomb limit is off for it, so a big
    frame gets our size message, not Pillow's). None when the header is unreadable or above the
    readers' per-side cap: the job then refuses it before decoding, in the CLI's words."""
    try:
        height, width = ldr_size(path)
    except ImageReadError:
        return None
    return width, height


def check_pixels(path: Path, display_name: str, max_megapixels: float) -> int:
    """Refuse a frame above the pixel limit, naming the file, its size and the server option;
    returns its pixel count (0 when the header is unreadable)."""
    size = frame_size(path)
    if size is None:
        return 0
    megapixels = size[0] * size[1] / 1e6
    if megapixels > max_megapixels:
        raise SceneError(f"image is {size[0]}x{size[1]} ({megapixels:.1f} MP), above this "
                         f"server's {max_megapixels:g} MP limit", display_name,
                         "downscale the frames, or start the server with a larger "
                         "--max-megapixels")
    return size[0] * size[1]
