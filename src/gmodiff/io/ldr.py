"""LDR frame files: 16-bit TIFF, 8/16-bit PNG and JPEG to float RGB in [0, 1], and back.

Readers refuse images larger than ``MAX_SIDE`` pixels on either side *before* decoding the
pixels, so a malformed or hostile header cannot make us allocate unbounded memory.
"""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmodiff.errors import ImageReadError, OutputError
from gmodiff.io.atomic import atomic_path
from gmodiff.io.native import captured_native_output, with_native_detail

MAX_SIDE = 20000
"""Largest accepted image width or height in pixels (checked from the header before decoding)."""

_PIL_LOCK = threading.Lock()

TIFF_SUFFIXES = (".tif", ".tiff")
PNG_SUFFIXES = (".png",)
JPEG_SUFFIXES = (".jpg", ".jpeg")
HEIF_SUFFIXES = (".heic", ".heif")
LDR_SUFFIXES = TIFF_SUFFIXES + PNG_SUFFIXES + JPEG_SUFFIXES + HEIF_SUFFIXES
"""File extensions (lower case) that :func:`read_ldr` understands."""


_SPECIAL_KINDS = ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                  (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def special_file_kind(path: str | Path) -> str | None:
    """What ``path`` is when it exists but is neither a regular file nor a folder ("a FIFO
    (named pipe)", "a character device", …), from ``stat`` alone; else None."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), None)


def check_input_file(path: str | Path) -> None:
    """Refuse, from ``stat`` alone (nothing is opened), an input that is missing, a folder, or
    a special file: opening a FIFO blocks until some writer appears, a device never ends."""
    path = Path(path)
    kind = special_file_kind(path)
    if kind is not None:
        raise ImageReadError(f"is {kind}, not a regular file", path, "pass the image file itself")
    if path.is_dir():
        raise ImageReadError("is a folder, not an image file", path,
                             "pass the image files of one bracket, or one scene folder")
    if not path.is_file():
        raise ImageReadError("file not found", path, "check the path")


@dataclass
class LDRImage:
    """A decoded LDR frame: float32 (H, W, 3) RGB in [0, 1], its stored bit depth and path."""

    pixels: np.ndarray
    bit_depth: int
    path: Path


def pillow():
    """``PIL.Image`` with Pillow's own decompression-bomb limit raised to our cap (``MAX_SIDE``
    squared), so a valid frame inside the documented cap (a 20000x14000 PNG) is judged by our
    rules (the side cap, the memory plan) instead of failing as a "decompression bomb"."""
    from PIL import Image

    cap = MAX_SIDE * MAX_SIDE
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < cap:
        Image.MAX_IMAGE_PIXELS = cap
    return Image


def enable_heif(path: Path | None = None) -> None:
    """Let Pillow open HEIC/HEIF files (iPhones) through pillow-heif; once per process."""
    if getattr(enable_heif, "done", False):
        return
    try:
        import pillow_heif
    except ImportError as exc:
        raise ImageReadError("HEIC/HEIF needs pillow-heif, which is not installed", path,
                             "run make install (or pip install pillow-heif)") from exc
    pillow_heif.register_heif_opener()
    enable_heif.done = True


def _pillow_header(path: Path) -> tuple[str | None, int, int]:
    """(Pillow's format name, height, width) from a PNG/JPEG/HEIF header. Pillow's bomb check is
    off for this header read only: our own caps (``MAX_SIDE``, the memory estimate) judge the
    size, so even a header far above the cap gets our message, not "decompression bomb"."""
    Image = pillow()
    if path.suffix.lower() in HEIF_SUFFIXES:
        enable_heif(path)
    with _PIL_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            with Image.open(path) as im:  # lazy: reads the header only
                return im.format, int(im.height), int(im.width)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _pillow_size(path: Path) -> tuple[int, int]:
    """(height, width) from a PNG/JPEG header (see :func:`_pillow_header`)."""
    _, height, width = _pillow_header(path)
    return height, width


def check_size(path: Path, height: int, width: int) -> None:
    """The per-frame size rule, applied to a header before any pixel is decoded: not empty, at
    most ``MAX_SIDE`` pixels a side. Readers of other formats (camera raw, HEIC) call it too,
    through :func:`gmodiff.io.memory.check_frame_size`."""
    _check_size(path, height, width)


def _check_size(path: Path, height: int, width: int) -> None:
    if height <= 0 or width <= 0:
        raise ImageReadError(f"image has an empty size {width}x{height}", path,
                             "re-export the frame")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise ImageReadError(f"image is {width}x{height}, larger than the {MAX_SIDE}-pixel limit",
                             path, "downscale or crop the frame first")


def _to_rgb(path: Path, pixels: np.ndarray) -> np.ndarray:
    """(H, W[, C]) integer array → (H, W, 3): grey is repeated, alpha dropped."""
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3:
        raise ImageReadError(f"unsupported image layout with shape {pixels.shape}", path,
                             "save the frame as a single-page RGB image")
    channels = pixels.shape[2]
    if channels in (1, 2):  # grey, or grey + alpha
        return np.repeat(pixels[:, :, :1], 3, axis=2)
    if channels in (3, 4):  # RGB or RGBA
        return pixels[:, :, :3]
    raise ImageReadError(f"unsupported number of channels ({channels})", path,
                         "save the frame as RGB")


def _normalise(path: Path, pixels: np.ndarray) -> tuple[np.ndarray, int]:
    if pixels.dtype in (np.uint8, np.uint16):
        bits = 8 if pixels.dtype == np.uint8 else 16
        values = pixels.astype(np.float32)
        values /= np.float32(2 ** bits - 1)  # in place: one 12-MP float copy less per frame
        return values, bits
    raise ImageReadError(f"unsupported sample type {pixels.dtype}", path,
                         "save the frame as 8-bit or 16-bit integer RGB")


def _tiff_size(path: Path, tif) -> tuple[int, int]:
    if not tif.pages:
        raise ImageReadError("TIFF has no pages", path, "re-export the frame")
    shape = tif.pages[0].shape
    if len(shape) == 3 and shape[0] in (3, 4) and shape[2] not in (3, 4):
        height, width = shape[1], shape[2]  # planar (C, H, W)
    else:
        height, width = shape[0], (shape[1] if len(shape) > 1 else 1)
    return int(height), int(width)


def _read_tiff(path: Path) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        _check_size(path, *_tiff_size(path, tif))
        pixels = tif.pages[0].asarray()
    if pixels.ndim == 3 and pixels.shape[0] in (3, 4) and pixels.shape[2] not in (3, 4):
        pixels = np.moveaxis(pixels, 0, -1)
    return pixels


def _check_png_chunks(path: Path, data: bytes) -> None:
    """Refuse chunks whose length runs past the end of the file.

    OpenCV allocates a buffer of the *claimed* chunk length before reading it, so one corrupt
    length field in a 1 KB file would make it allocate 2 GB.
    """
    pos = 8  # after the signature
    while pos + 8 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        if length > len(data) - pos - 12:
            chunk = data[pos + 4:pos + 8].decode("latin-1")
            raise ImageReadError(f"corrupt PNG (chunk {chunk!r} at byte {pos} claims {length} "
                                 "bytes, past the end of the file)", path, "re-export the frame")
        pos += 12 + length


JPEG_FORMATS = ("JPEG", "MPO")
"""Pillow's names for JPEG files: "MPO" is a JPEG whose MPF segment (APP2) adds a preview or
second image after the primary one, as many Sony, Panasonic and Nikon bodies write."""
_FORMAT_SUFFIXES = {"JPEG": ".jpg", "MPO": ".jpg", "PNG": ".png", "TIFF": ".tif"}


def _wrong_format(path: Path, found: str | None, expected: str) -> ImageReadError:
    """The content is another image format than the extension says: name the right extension."""
    suffix = _FORMAT_SUFFIXES.get(found or "")
    if suffix is None:
        return ImageReadError(f"file is {found or 'an unknown format'}, not {expected}", path,
                              "convert the frame to JPEG, PNG or 16-bit TIFF")
    kind = "JPEG" if found in JPEG_FORMATS else found
    return ImageReadError(f"file is a {kind} image, not {expected}", path,
                          f"rename it to {path.stem}{suffix}")


def _read_png(path: Path) -> np.ndarray:
    import cv2

    found, height, width = _pillow_header(path)  # header only: size check before decoding
    if found != "PNG":
        raise _wrong_format(path, found, "PNG")
    _check_size(path, height, width)
    # OpenCV keeps 16-bit RGB PNGs at 16 bits (Pillow would reduce them to 8).
    data = np.fromfile(path, dtype=np.uint8)
    _check_png_chunks(path, data.tobytes())
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise ImageReadError("PNG could not be decoded", path, "re-export the frame")
    if pixels.ndim == 3 and pixels.shape[2] >= 3:
        pixels = pixels[:, :, [2, 1, 0]]  # BGR(A) → RGB, alpha dropped
    return pixels


def _read_jpeg(path: Path, expected: tuple[str, ...] = JPEG_FORMATS) -> np.ndarray:
    """A JPEG (an MPO's primary image) or, with ``expected=("HEIF",)``, a HEIC/HEIF frame."""
    from PIL import ImageOps

    found, height, width = _pillow_header(path)
    if found not in expected:
        raise _wrong_format(path, found, expected[0])
    _check_size(path, height, width)  # before Pillow's own open: within the cap, it never warns
    with pillow().open(path) as im:
        if im.format == "MPO":
            im.seek(0)  # the primary image; the MPF's others are previews or a second view
        # Cameras store portrait shots rotated and say so in EXIF; honour it so frames line up.
        im = ImageOps.exif_transpose(im)
        return np.asarray(im.convert("RGB"))


def _header_size(path: Path) -> tuple[int, int]:
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        with tifffile.TiffFile(path) as tif:
            return _tiff_size(path, tif)
    if suffix in LDR_SUFFIXES:
        return _pillow_size(path)
    raise ImageReadError(f"unsupported LDR extension '{path.suffix}'", path,
                         "use .tif, .png or .jpg frames")


def ldr_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of an LDR frame from its header, without decoding the pixels.

    Applies the same ``MAX_SIDE`` check as :func:`read_ldr`; failures are ``ImageReadError``.
    """
    path = Path(path)
    check_input_file(path)
    try:
        with captured_native_output() as said:
            height, width = _header_size(path)
    except ImageReadError:
        raise
    except Exception as exc:  # decoders raise many types on corrupt headers
        raise ImageReadError(with_native_detail(
            f"not a readable image ({type(exc).__name__}: {exc})", said), path,
            "replace the file with a valid image") from exc
    _check_size(path, height, width)
    return height, width


def read_ldr(path: str | Path) -> LDRImage:
    """Read a 16-bit TIFF (any compression), 8/16-bit PNG, JPEG or HEIC/HEIF frame as float32
    (H, W, 3) RGB in [0, 1].

    Values are divided by 65535 (16-bit) or 255 (8-bit). Grey images are repeated to three
    channels and alpha is dropped; JPEG EXIF orientation is applied. Images larger than
    ``MAX_SIDE`` (20000) pixels on a side are refused. Any failure raises ``ImageReadError``.
    """
    path = Path(path)
    check_input_file(path)
    suffix = path.suffix.lower()
    try:
        # Decoders print warnings of their own (tifffile, libpng): captured, not shown.
        with captured_native_output() as said:
            if suffix in TIFF_SUFFIXES:
                raw = _read_tiff(path)
            elif suffix in PNG_SUFFIXES:
                raw = _read_png(path)
            elif suffix in JPEG_SUFFIXES:
                raw = _read_jpeg(path)
            elif suffix in HEIF_SUFFIXES:
                enable_heif(path)
                raw = _read_jpeg(path, ("HEIF",))  # Pillow decodes it 8-bit, EXIF-rotated
            else:
                raise ImageReadError(f"unsupported LDR extension '{path.suffix}'", path,
                                     "use .tif, .png, .jpg or .heic frames")
    except ImageReadError:
        raise
    except MemoryError as exc:  # the size fits the caps but not this machine's memory
        raise ImageReadError("image too large to decode in the available memory", path,
                             "downscale or crop the frame first") from exc
    except Exception as exc:  # decoders raise many types on corrupt data
        raise ImageReadError(with_native_detail(
            f"not a readable image ({type(exc).__name__}: {exc})", said), path,
            "replace the file with a valid image") from exc
    pixels, bit_depth = _normalise(path, _to_rgb(path, np.asarray(raw)))
    return LDRImage(pixels=np.ascontiguousarray(pixels), bit_depth=bit_depth, path=path)


def quantise(rgb: np.ndarray, bit_depth: int) -> np.ndarray:
    """Float RGB in [0, 1] → uint8 or uint16 by rounding (values outside [0, 1] are clipped)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit_depth must be 8 or 16, got {bit_depth}")
    peak = 255.0 if bit_depth == 8 else 65535.0
    dtype = np.uint8 if bit_depth == 8 else np.uint16
    scaled = np.clip(np.nan_to_num(np.asarray(rgb, dtype=np.float64), nan=0.0), 0.0, 1.0) * peak
    return np.rint(scaled).astype(dtype)


def write_ldr(path: str | Path, rgb: np.ndarray, bit_depth: int = 16) -> None:
    """Write float RGB in [0, 1] as 8/16-bit TIFF or PNG, or as 8-bit JPEG (quality 95), atomically.

    The format follows the extension; JPEG is always 8-bit whatever ``bit_depth`` says.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) RGB array, got shape {rgb.shape}")
    if suffix not in LDR_SUFFIXES:
        raise OutputError(f"unsupported LDR extension '{path.suffix}'", path,
                          "use .tif, .png or .jpg")
    if suffix in JPEG_SUFFIXES:
        bit_depth = 8
    pixels = quantise(rgb, bit_depth)
    with atomic_path(path) as tmp:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            tifffile.imwrite(tmp, pixels, photometric="rgb", compression="zlib")
        elif suffix in PNG_SUFFIXES:
            import cv2

            ok, buf = cv2.imencode(".png", pixels[:, :, ::-1])
            if not ok:
                raise OutputError("PNG encoding failed", path, "check the image array")
            tmp.write_bytes(buf.tobytes())
        else:
            from PIL import Image

            Image.fromarray(pixels).save(tmp, format="JPEG", quality=95)
