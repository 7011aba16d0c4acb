"""HDR radiance files: Radiance RGBE (``.hdr``) in pure numpy and OpenEXR (``.exr``).

Readers return float32 (H, W, 3) linear RGB and reject NaN/inf and clearly negative values with
``HDRValueError``. The Radiance reader is written to survive corrupt bytes: every loop is bounded
by the file length, sizes are capped at ``MAX_SIDE`` and checked against the bytes actually
present before any pixel buffer is allocated. Writers are atomic.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from gmodiff.errors import HDRValueError, ImageReadError, OutputError
from gmodiff.io.atomic import atomic_path
from gmodiff.io.bands import row_bands
from gmodiff.io.native import captured_native_output, with_native_detail

MAX_SIDE = 20000
"""Largest accepted HDR width or height in pixels."""

RADIANCE_SUFFIXES = (".hdr", ".pic", ".rgbe")
EXR_SUFFIXES = (".exr",)
HDR_SUFFIXES = RADIANCE_SUFFIXES + EXR_SUFFIXES

NEGATIVE_TOLERANCE = 1e-3
"""Negative values no further below 0 than this fraction of max(1, image max) are clamped to 0.

EXR files produced by colour-space conversions or resampling filters often carry tiny negative
values; they carry no radiance, so we clamp them. Anything more negative is a real error.
"""

HALF_MAX = 65504.0
EXR_EXPOSURE_ATTRIBUTE = "gmodiffExposure"
"""EXR header float: the factor the pixels were multiplied by, like Radiance's ``EXPOSURE=``
(divide by it to get the values back in the units they were computed in)."""
_EXPOSURE_LINE = re.compile(rb"^EXPOSURE\s*=\s*([-+0-9.eE]+)\s*$")

_MAX_HEADER_BYTES = 65536
_RESOLUTION = re.compile(rb"^([-+])([XY]) +(\d{1,9}) +([-+])([XY]) +(\d{1,9})$")


# --------------------------------------------------------------------------------------------
# validation shared by readers and writers


def check_hdr_values(rgb: np.ndarray, path: str | Path | None, fix: str) -> np.ndarray:
    """``rgb`` as float32 with tiny negatives clamped; HDRValueError on NaN/inf/real negatives."""
    rgb = np.asarray(rgb, dtype=np.float32)
    finite = np.isfinite(rgb)
    if not finite.all():
        bad = int((~finite).sum())
        raise HDRValueError(f"{bad} pixel values are NaN or infinite", path, fix)
    if rgb.size and rgb.min() < 0:
        tolerance = NEGATIVE_TOLERANCE * max(1.0, float(rgb.max()))
        if rgb.min() < -tolerance:
            raise HDRValueError(f"negative radiance values (min {float(rgb.min()):.4g})", path, fix)
        rgb = np.maximum(rgb, 0.0)
    return rgb


def _check_shape(rgb: np.ndarray) -> np.ndarray:
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        raise ValueError(f"expected a non-empty (H, W, 3) RGB array, got shape {rgb.shape}")
    return rgb


def _check_size(path: Path, height: int, width: int) -> None:
    if height <= 0 or width <= 0 or height > MAX_SIDE or width > MAX_SIDE:
        raise ImageReadError(f"image size {width}x{height} is empty or above the {MAX_SIDE}-pixel "
                             "limit", path, "check the file, or crop/downscale it")


# --------------------------------------------------------------------------------------------
# Radiance RGBE


def _corrupt(path: Path, what: str) -> ImageReadError:
    return ImageReadError(f"corrupt Radiance file ({what})", path, "re-export the HDR image")


def _parse_radiance_header(path: Path, data: bytes) -> tuple[int, int, bool, bool, int]:
    """Return (height, width, flip_rows, flip_cols, offset of pixel data)."""
    if not data.startswith(b"#?"):
        raise ImageReadError("not a Radiance HDR file (missing '#?' signature)", path,
                             "use a .hdr file written by a Radiance-compatible tool")
    end = data.find(b"\n\n", 0, _MAX_HEADER_BYTES)
    if end < 0:
        raise _corrupt(path, "header has no end")
    for line in data[:end].split(b"\n")[1:]:
        line = line.strip()
        if line.startswith(b"FORMAT="):
            fmt = line[len(b"FORMAT="):].strip()
            if fmt != b"32-bit_rle_rgbe":
                name = fmt.decode(errors="replace")
                raise ImageReadError(f"unsupported Radiance pixel format {name}", path,
                                     "convert the file to RGBE (32-bit_rle_rgbe) or EXR")
    res_start = end + 2
    res_end = data.find(b"\n", res_start, res_start + 64)
    if res_end < 0:
        raise _corrupt(path, "missing resolution line")
    match = _RESOLUTION.match(data[res_start:res_end].strip())
    if match is None:
        raise _corrupt(path, "unreadable resolution line")
    sign1, axis1, n1, sign2, axis2, n2 = match.groups()
    if axis1 != b"Y" or axis2 != b"X":
        raise ImageReadError("unsupported Radiance orientation (column-major scanlines)", path,
                             "convert the file to the standard '-Y H +X W' orientation")
    height, width = int(n1), int(n2)
    _check_size(path, height, width)
    return height, width, sign1 == b"+", sign2 == b"-", res_end + 1


def _decode_rle_scanline(path: Path, data: bytes, pos: int, width: int) -> tuple[bytearray, int]:
    """Decode one new-style RLE scanline (4 components of ``width`` bytes) starting at ``pos``."""
    n = len(data)
    out = bytearray(4 * width)
    i = 0
    for component in range(4):
        end = (component + 1) * width
        while i < end:  # each pass writes >= 1 byte, so at most 4*width passes
            if pos >= n:
                raise _corrupt(path, "truncated scanline")
            count = data[pos]
            pos += 1
            if count > 128:  # a run of one repeated byte
                count -= 128
                if count > end - i or pos >= n:
                    raise _corrupt(path, "bad run length")
                out[i:i + count] = data[pos:pos + 1] * count
                pos += 1
            else:  # a literal dump of ``count`` bytes
                if count == 0 or count > end - i or pos + count > n:
                    raise _corrupt(path, "bad dump length")
                out[i:i + count] = data[pos:pos + count]
                pos += count
            i += count
    return out, pos


def _rgbe_to_float(rgbe: np.ndarray) -> np.ndarray:
    # value = mantissa * 2**(exponent - 136), as OpenCV and FreeImage decode it (no +0.5), so the
    # numbers match what published HDR-reconstruction code read from the same files.
    exponent = rgbe[..., 3].astype(np.int32)
    scale = np.where(exponent > 0, np.ldexp(1.0, exponent - 136), 0.0)
    return (rgbe[..., :3].astype(np.float64) * scale[..., None]).astype(np.float32)


def read_radiance(path: str | Path) -> np.ndarray:
    """Read a Radiance RGBE ``.hdr`` (flat or new-style RLE) as float32 (H, W, 3) RGB.

    Orientations ``±Y H ±X W`` are supported (others raise ``ImageReadError``); ``EXPOSURE=``
    header lines are not applied, like OpenCV and FreeImage do (:func:`declared_exposure`
    reads them).
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError("file not found", path, "check the path")
    data = path.read_bytes()
    height, width, flip_rows, flip_cols, pos = _parse_radiance_header(path, data)
    n = len(data)
    can_rle = 8 <= width <= 0x7FFF
    # Least bytes a scanline can take: RLE with maximal runs of 127, or flat 4 bytes/pixel.
    min_line = 4 + 8 * (-(-width // 127)) if can_rle else 4 * width
    if n - pos < height * min_line:
        raise _corrupt(path, f"{n - pos} bytes of pixel data cannot hold {width}x{height} pixels")
    rgbe = np.empty((height, width, 4), dtype=np.uint8)
    for row in range(height):
        is_rle = (can_rle and pos + 4 <= n and data[pos] == 2 and data[pos + 1] == 2
                  and data[pos + 2] < 128)
        if is_rle:
            if (data[pos + 2] << 8) | data[pos + 3] != width:
                raise _corrupt(path, f"scanline {row} has the wrong length")
            line, pos = _decode_rle_scanline(path, data, pos + 4, width)
            rgbe[row] = np.frombuffer(line, dtype=np.uint8).reshape(4, width).T
        else:
            if pos + 4 * width > n:
                raise _corrupt(path, "truncated pixel data")
            rgbe[row] = np.frombuffer(data, dtype=np.uint8, count=4 * width,
                                      offset=pos).reshape(width, 4)
            pos += 4 * width
    rgb = _rgbe_to_float(rgbe)
    if flip_rows:
        rgb = rgb[::-1]
    if flip_cols:
        rgb = rgb[:, ::-1]
    return np.ascontiguousarray(rgb)


def _float_to_rgbe(rgb: np.ndarray) -> np.ndarray:
    peak = rgb.max(axis=2).astype(np.float64)
    _, exponent = np.frexp(peak)  # peak = mantissa * 2**exponent, mantissa in [0.5, 1)
    mantissas = np.rint(rgb * np.ldexp(1.0, 8 - exponent)[..., None])
    # Rounding (not truncation, which biases values down by up to 1/128) can reach 256.
    overflow = mantissas.max(axis=2) > 255
    if overflow.any():
        exponent = exponent + overflow
        mantissas = np.rint(rgb * np.ldexp(1.0, 8 - exponent)[..., None])
    rgbe = np.zeros(rgb.shape[:2] + (4,), dtype=np.uint8)
    visible = (peak > 1e-38) & (exponent + 128 >= 1)
    rgbe[..., :3] = np.where(visible[..., None], np.clip(mantissas, 0, 255), 0).astype(np.uint8)
    rgbe[..., 3] = np.where(visible, exponent + 128, 0).astype(np.uint8)
    return rgbe


def _encode_rle_component(values: np.ndarray) -> bytes:
    """RLE-encode one component row: runs of >= 4 equal bytes as runs, the rest as dumps."""
    width = values.size
    starts = np.concatenate(([0], np.flatnonzero(np.diff(values)) + 1))
    lengths = np.diff(np.concatenate((starts, [width])))
    out = bytearray()

    def dump(lo: int, hi: int) -> None:
        for k in range(lo, hi, 128):
            chunk = values[k:min(k + 128, hi)]
            out.append(chunk.size)
            out.extend(chunk.tobytes())

    done = 0
    long_runs = lengths >= 4
    for start, length in zip(starts[long_runs].tolist(), lengths[long_runs].tolist()):
        dump(done, start)
        value = int(values[start])
        done = start + length
        while length > 0:
            step = min(length, 127)
            out.extend((128 + step, value))
            length -= step
    dump(done, width)
    return bytes(out)


def _check_exposure(exposure: float | None, path: Path) -> float:
    value = 1.0 if exposure is None else float(exposure)
    if not (np.isfinite(value) and value > 0):
        raise HDRValueError(f"exposure factor must be positive, got {exposure}", path)
    return value


def write_radiance(path: str | Path, rgb: np.ndarray, exposure: float | None = None) -> None:
    """Write float RGB as a new-style RLE Radiance ``.hdr`` (``-Y H +X W``), atomically;
    ``exposure`` multiplies the pixels and is stated in the header's ``EXPOSURE=`` line."""
    path = Path(path)
    rgb = check_hdr_values(_check_shape(rgb), path, "fix the radiance before saving")
    factor = _check_exposure(exposure, path)
    if rgb.size and float(rgb.max()) * factor >= 2.0 ** 127:
        raise HDRValueError("values too large for Radiance RGBE", path, "rescale or write .exr")
    height, width = rgb.shape[:2]
    rgbe = np.empty((height, width, 4), dtype=np.uint8)
    for rows in row_bands(height):  # per pixel; bands keep the float temporaries small
        band = rgb[rows] if factor == 1.0 else rgb[rows] * np.float32(factor)
        rgbe[rows] = _float_to_rgbe(band)
    stated = f"EXPOSURE={factor:.9g}\n".encode() if exposure is not None else b""
    parts = [b"#?RADIANCE\n# written by gmodiff\nFORMAT=32-bit_rle_rgbe\n" + stated + b"\n",
             f"-Y {height} +X {width}\n".encode()]
    if 8 <= width <= 0x7FFF:
        line_head = bytes((2, 2, width >> 8, width & 0xFF))
        for row in range(height):
            parts.append(line_head)
            for component in range(4):
                parts.append(_encode_rle_component(rgbe[row, :, component]))
    else:  # RLE cannot describe these widths; write flat pixels
        parts.append(rgbe.tobytes())
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(parts))


# --------------------------------------------------------------------------------------------
# OpenEXR


def _pick_rgb_channels(names: list[str]) -> list[str] | None:
    if all(c in names for c in "RGB"):
        return ["R", "G", "B"]
    for layer in sorted({n.rsplit(".", 1)[0] for n in names if "." in n}):
        wanted = [f"{layer}.{c}" for c in "RGB"]
        if all(w in names for w in wanted):
            return wanted
    if "Y" in names:
        return ["Y", "Y", "Y"]
    return None


def _exr_source(path: Path):
    """What OpenEXR opens: the path as ``str``, or the file's bytes when the name is not valid
    UTF-8 (OpenEXR refuses such names)."""
    import io

    name = str(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return io.BytesIO(path.read_bytes())
    return name


def _exr_header_size(path: Path) -> tuple[int, int]:
    import OpenEXR

    header = OpenEXR.File(_exr_source(path), header_only=True).parts[0].header
    (x0, y0), (x1, y1) = header["dataWindow"]
    return int(y1) - int(y0) + 1, int(x1) - int(x0) + 1


def read_exr(path: str | Path) -> np.ndarray:
    """Read an OpenEXR file (half, float or uint channels) as float32 (H, W, 3) RGB.

    Uses the first part; takes R, G, B (or the first ``layer.R/G/B`` set, or grey ``Y``).
    What OpenEXR prints on stderr is captured and folded into the error message.
    """
    import OpenEXR

    path = Path(path)
    if not path.is_file():
        raise ImageReadError("file not found", path, "check the path")
    try:
        with captured_native_output() as said:
            _check_size(path, *_exr_header_size(path))
            exr = OpenEXR.File(_exr_source(path), separate_channels=True)
            channels = exr.parts[0].channels
    except ImageReadError:
        raise
    except Exception as exc:
        raise ImageReadError(with_native_detail(f"not a readable OpenEXR file ({exc})", said),
                             path, "re-export the HDR image") from exc
    picked = _pick_rgb_channels(list(channels))
    if picked is None:
        raise ImageReadError(f"no RGB or Y channels (found {sorted(channels)})", path,
                             "save the EXR with R, G, B channels")
    rgb = np.stack([np.asarray(channels[name].pixels, dtype=np.float32) for name in picked], -1)
    return check_hdr_values(rgb, path, "fix or re-export the HDR image")


def encode_exr(rgb: np.ndarray, half: bool = True, attributes: dict | None = None,
               exposure: float | None = None) -> bytes:
    """The bytes of a ZIP-compressed OpenEXR file holding ``rgb`` (checked by the caller);
    ``attributes`` (str/float) are added to the header (camera metadata); ``exposure``
    multiplies the pixels and is stated as :data:`EXR_EXPOSURE_ATTRIBUTE`."""
    import io

    import OpenEXR

    factor = 1.0 if exposure is None else float(exposure)
    pixels = np.empty(rgb.shape, dtype=np.float16 if half else np.float32)
    for rows in row_bands(rgb.shape[0]):  # no whole-image float32 temporary
        pixels[rows] = rgb[rows] if factor == 1.0 else rgb[rows] * np.float32(factor)
    stated = {EXR_EXPOSURE_ATTRIBUTE: factor} if exposure is not None else {}
    header = {**(attributes or {}), **stated, "compression": OpenEXR.ZIP_COMPRESSION,
              "type": OpenEXR.scanlineimage}
    buffer = io.BytesIO()
    with captured_native_output():
        OpenEXR.File(header, {"RGB": pixels}).write(buffer)
    return buffer.getvalue()


def write_exr(path: str | Path, rgb: np.ndarray, half: bool = True,
              attributes: dict | None = None, exposure: float | None = None) -> None:
    """Write float RGB as ZIP-compressed OpenEXR (half, or float32 if ``half=False``); atomic.
    ``attributes`` (str/float) are added to the header (camera metadata); ``exposure``
    multiplies the pixels and is stated in the header (see :func:`declared_exposure`).

    Encoded in memory and written by Python: OpenEXR's own file writer ignores write errors (a
    full disk gave a truncated file) and refuses names that are not UTF-8.
    """
    path = Path(path)
    rgb = check_hdr_values(_check_shape(rgb), path, "fix the radiance before saving")
    factor = _check_exposure(exposure, path)
    if half and rgb.size and float(rgb.max()) * factor > HALF_MAX:
        raise HDRValueError(f"values above {HALF_MAX:g} overflow half floats", path,
                            "write with half=False or rescale")
    data = encode_exr(rgb, half=half, attributes=attributes, exposure=exposure)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def declared_exposure(path: str | Path) -> float:
    """The factor a ``.hdr``/``.exr`` file says its pixels were multiplied by (Radiance
    ``EXPOSURE=`` lines, their product; the EXR attribute :data:`EXR_EXPOSURE_ATTRIBUTE`);
    1.0 when it says nothing. Divide the pixels by it to undo the factor."""
    path = Path(path)
    suffix = path.suffix.lower()
    factor = 1.0
    if suffix in RADIANCE_SUFFIXES:
        with open(path, "rb") as handle:
            head = handle.read(_MAX_HEADER_BYTES)
        end = head.find(b"\n\n")
        for line in head[:end if end >= 0 else len(head)].split(b"\n"):
            match = _EXPOSURE_LINE.match(line.strip())
            if match:
                try:
                    factor *= float(match.group(1))
                except ValueError:
                    continue
    elif suffix in EXR_SUFFIXES:
        import OpenEXR

        try:
            with captured_native_output():
                header = OpenEXR.File(_exr_source(path), header_only=True).parts[0].header
        except Exception as exc:
            raise ImageReadError(f"not a readable OpenEXR file ({exc})", path,
                                 "re-export the HDR image") from exc
        value = header.get(EXR_EXPOSURE_ATTRIBUTE)
        if isinstance(value, (int, float)):
            factor = float(value)
    return factor if np.isfinite(factor) and factor > 0 else 1.0


def hdr_size(path: str | Path) -> tuple[int, int]:
    """(height, width) of a ``.hdr`` or ``.exr`` file from its header, without decoding pixels."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError("file not found", path, "check the path")
    suffix = path.suffix.lower()
    if suffix in EXR_SUFFIXES:
        try:
            with captured_native_output() as said:
                height, width = _exr_header_size(path)
        except Exception as exc:
            raise ImageReadError(with_native_detail(f"not a readable OpenEXR file ({exc})", said),
                                 path, "re-export the HDR image") from exc
        _check_size(path, height, width)
        return height, width
    if suffix in RADIANCE_SUFFIXES:
        with open(path, "rb") as handle:
            head = handle.read(_MAX_HEADER_BYTES + 128)
        height, width, *_ = _parse_radiance_header(path, head)
        return height, width
    raise ImageReadError(f"unsupported HDR extension '{path.suffix}'", path,
                         "use a .hdr or .exr file")


# --------------------------------------------------------------------------------------------
# dispatch by extension


def read_hdr(path: str | Path) -> np.ndarray:
    """Read a ``.hdr`` (Radiance) or ``.exr`` file as float32 (H, W, 3) linear RGB."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in RADIANCE_SUFFIXES:
        rgb = read_radiance(path)
    elif suffix in EXR_SUFFIXES:
        return read_exr(path)
    else:
        raise ImageReadError(f"unsupported HDR extension '{path.suffix}'", path,
                             "use a .hdr or .exr file")
    return check_hdr_values(rgb, path, "fix or re-export the HDR image")


def write_hdr(path: str | Path, rgb: np.ndarray, half: bool = True,
              exposure: float | None = None, attributes: dict | None = None) -> None:
    """Write linear RGB to ``.hdr`` (Radiance RLE) or ``.exr`` (half unless ``half=False``).

    Atomic. Note RGBE keeps only 8 mantissa bits per pixel; prefer float EXR for evaluation.
    ``exposure`` multiplies the pixels and is stated in the header (:func:`declared_exposure`);
    ``attributes`` go into an EXR header.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in RADIANCE_SUFFIXES:
        write_radiance(path, rgb, exposure=exposure)
    elif suffix in EXR_SUFFIXES:
        write_exr(path, rgb, half=half, attributes=attributes, exposure=exposure)
    else:
        raise OutputError(f"unsupported HDR extension '{path.suffix}'", path,
                          "use .hdr or .exr")
