"""Checks on uploaded frames: type by content (magic bytes), safe names, size and pixel limits.

Nothing the client sends is used as a path: a file keeps only a cleaned-up base name (so error
messages name the photographer's own file) with the extension of its real content.
"""

from __future__ import annotations

import re
from pathlib import Path

from gmodiff.errors import ImageReadError, SceneError

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


def frame_size(path: Path, kind: str) -> tuple[int, int] | None:
    """(width, height) from the header without decoding pixels; None when unreadable (the
    frame reader then gives its own message)."""
    try:
        if kind == "tiff":
            import tifffile

            with tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
                return int(shape[1]), int(shape[0])
        from PIL import Image

        with Image.open(path) as im:
            return im.size
    except Exception:  # corrupt header: read_ldr reports it with the CLI's message
        return None


def check_pixels(path: Path, kind: str, display_name: str, max_megapixels: float) -> None:
    """Refuse a frame above the pixel limit, naming the file and the server option."""
    size = frame_size(path, kind)
    if size is None:
        return
    megapixels = size[0] * size[1] / 1e6
    if megapixels > max_megapixels:
        raise SceneError(f"image is {size[0]}x{size[1]} ({megapixels:.1f} MP), above this "
                         f"server's {max_megapixels:g} MP limit", display_name,
                         "downscale the frames, or start the server with a larger "
                         "--max-megapixels")
