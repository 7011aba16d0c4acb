"""LDR/HDR readers and writers: round trips, formats, orientation, and corrupt input."""

from __future__ import annotations

import numpy as np
import pytest

from gmodiff.errors import HDRValueError, ImageReadError, OutputError
from gmodiff.io import hdr as hdr_io
from gmodiff.io.hdr import read_exr, read_hdr, read_radiance, write_exr, write_hdr
from gmodiff.io.ldr import read_ldr, write_ldr


def _rgb(h=12, w=17, seed=0):
    return np.random.default_rng(seed).random((h, w, 3)).astype(np.float32)


def _radiance(h=9, w=40, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.random((h, w, 3)) ** 3 * 4).astype(np.float32)
    x[:3] = 0.5  # flat rows exercise the run-length path
    x[3, :5] = 0.0
    return x


# ---------------------------------------------------------------------------------------- LDR


@pytest.mark.parametrize("suffix,bits,tol", [(".tif", 16, 0.5 / 65535), (".png", 16, 0.5 / 65535),
                                             (".png", 8, 0.5 / 255), (".tif", 8, 0.5 / 255)])
def test_ldr_round_trip(tmp_path, suffix, bits, tol):
    rgb = _rgb()
    path = tmp_path / f"frame{suffix}"
    write_ldr(path, rgb, bit_depth=bits)
    image = read_ldr(path)
    assert image.bit_depth == bits
    assert image.pixels.dtype == np.float32 and image.pixels.shape == rgb.shape
    assert np.abs(image.pixels - rgb).max() <= tol + 1e-7
    assert image.path == path


def test_ldr_channel_order_is_rgb(tmp_path):
    rgb = np.zeros((4, 5, 3), np.float32)
    rgb[..., 0] = 1.0  # pure red
    for suffix in (".png", ".tif", ".jpg"):
        write_ldr(tmp_path / f"red{suffix}", rgb)
        pixels = read_ldr(tmp_path / f"red{suffix}").pixels
        assert pixels[..., 0].mean() > 0.9 and pixels[..., 2].mean() < 0.1, suffix


def test_ldr_jpeg_is_8bit(tmp_path):
    write_ldr(tmp_path / "f.jpg", _rgb(16, 16))
    image = read_ldr(tmp_path / "f.jpg")
    assert image.bit_depth == 8 and image.pixels.shape == (16, 16, 3)


def test_ldr_grey_and_alpha(tmp_path):
    import cv2
    import tifffile

    grey = (np.arange(20, dtype=np.uint16).reshape(4, 5) * 3000)
    tifffile.imwrite(tmp_path / "g.tif", grey)
    pixels = read_ldr(tmp_path / "g.tif").pixels
    assert pixels.shape == (4, 5, 3)
    np.testing.assert_allclose(pixels[..., 1], grey / 65535.0, atol=1e-7)
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., 2] = 200  # red in BGR order
    bgra[..., 3] = 7  # alpha, must be dropped
    cv2.imwrite(str(tmp_path / "a.png"), bgra)
    image = read_ldr(tmp_path / "a.png")
    assert image.bit_depth == 8
    np.testing.assert_allclose(image.pixels[0, 0], [200 / 255, 0, 0], atol=1e-7)


def test_ldr_jpeg_exif_orientation(tmp_path):
    from PIL import Image

    array = np.zeros((8, 16, 3), np.uint8)
    array[:, :8] = 255  # left half white
    im = Image.fromarray(array)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to display
    im.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    pixels = read_ldr(tmp_path / "r.jpg").pixels
    assert pixels.shape == (16, 8, 3)
    assert pixels[:6].mean() > 0.9 and pixels[10:].mean() < 0.1  # white half now on top


def test_ldr_missing_and_garbage(tmp_path):
    with pytest.raises(ImageReadError, match="missing.tif"):
        read_ldr(tmp_path / "missing.tif")
    for name in ("junk.tif", "junk.png", "junk.jpg"):
        (tmp_path / name).write_bytes(b"not an image at all" * 10)
        with pytest.raises(ImageReadError, match=name):
            read_ldr(tmp_path / name)
    (tmp_path / "frame.bmp").write_bytes(b"BM")
    with pytest.raises(ImageReadError, match="frame.bmp"):
        read_ldr(tmp_path / "frame.bmp")


def test_ldr_size_cap(tmp_path, monkeypatch):
    from gmodiff.io import ldr

    write_ldr(tmp_path / "f.png", _rgb(10, 30))
    monkeypatch.setattr(ldr, "MAX_SIDE", 20)
    with pytest.raises(ImageReadError, match="limit"):
        read_ldr(tmp_path / "f.png")


def test_ldr_write_unknown_extension_leaves_nothing(tmp_path):
    with pytest.raises(OutputError, match="out.bmp"):
        write_ldr(tmp_path / "out.bmp", _rgb())
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------------- HDR


def test_radiance_round_trip_and_opencv_agreement(tmp_path):
    import cv2

    x = _radiance()
    path = tmp_path / "x.hdr"
    write_hdr(path, x)
    y = read_hdr(path)
    assert y.shape == x.shape and y.dtype == np.float32
    # RGBE keeps 8 mantissa bits relative to the largest channel of each pixel
    peak = np.maximum(x.max(axis=2, keepdims=True), 1e-12)
    assert (np.abs(y - x) / peak).max() <= 1 / 256 + 1e-6
    np.testing.assert_array_equal(y[3, :5], 0.0)
    reference = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_array_equal(y, reference)
    # and we read files OpenCV wrote
    cv2.imwrite(str(tmp_path / "cv.hdr"), np.ascontiguousarray(x[..., ::-1]))
    ours = read_radiance(tmp_path / "cv.hdr")
    np.testing.assert_array_equal(ours, cv2.imread(str(tmp_path / "cv.hdr"),
                                                   cv2.IMREAD_UNCHANGED)[..., ::-1])


def test_radiance_flat_narrow_image(tmp_path):
    x = _radiance(5, 4)  # widths < 8 cannot be run-length encoded
    write_hdr(tmp_path / "n.hdr", x)
    y = read_hdr(tmp_path / "n.hdr")
    assert (np.abs(y - x) / np.maximum(x.max(axis=2, keepdims=True), 1e-12)).max() < 1 / 255


def _flat_file(header_res: bytes, rgbe: np.ndarray) -> bytes:
    return b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n" + header_res + b"\n" + rgbe.tobytes()


def test_radiance_orientations(tmp_path):
    rgbe = np.zeros((2, 3, 4), np.uint8)
    rgbe[..., 3] = 136  # scale 1
    rgbe[..., 0] = np.arange(6).reshape(2, 3) + 1
    expected = (np.arange(6).reshape(2, 3) + 1).astype(np.float32)
    cases = {b"-Y 2 +X 3": expected, b"+Y 2 +X 3": expected[::-1], b"-Y 2 -X 3": expected[:, ::-1]}
    for res, want in cases.items():
        path = tmp_path / "o.hdr"
        path.write_bytes(_flat_file(res, rgbe))
        np.testing.assert_array_equal(read_radiance(path)[..., 0], want)
    path.write_bytes(_flat_file(b"+X 3 -Y 2", rgbe))
    with pytest.raises(ImageReadError, match="orientation"):
        read_radiance(path)


@pytest.mark.parametrize("mutate", ["truncate", "signature", "resolution", "huge", "bad_run",
                                    "xyze", "empty"])
def test_radiance_corrupt_files_fail_cleanly(tmp_path, mutate):
    path = tmp_path / "bad.hdr"
    write_hdr(path, _radiance(6, 20))
    data = path.read_bytes()
    if mutate == "truncate":
        data = data[: len(data) - 30]
    elif mutate == "signature":
        data = b"XX" + data[2:]
    elif mutate == "resolution":
        data = data.replace(b"-Y 6 +X 20", b"-Y six +X 20")
    elif mutate == "huge":
        data = data.replace(b"-Y 6 +X 20", b"-Y 19999 +X 19999")
    elif mutate == "bad_run":
        start = data.index(b"+X 20\n") + 6 + 4
        data = data[:start] + bytes([0]) + data[start + 1:]  # a zero-length dump is invalid
    elif mutate == "xyze":
        data = data.replace(b"32-bit_rle_rgbe", b"32-bit_rle_xyze")
    elif mutate == "empty":
        data = b""
    path.write_bytes(data)
    with pytest.raises(ImageReadError, match="bad.hdr"):
        read_hdr(path)


def test_radiance_random_bytes_never_hang(tmp_path):
    rng = np.random.default_rng(1)
    good = tmp_path / "g.hdr"
    write_hdr(good, _radiance(4, 16))
    base = bytearray(good.read_bytes())
    body = base.index(b"+X 16\n") + 6
    for trial in range(40):
        data = bytearray(base)
        for _ in range(5):
            data[rng.integers(body, len(data))] = rng.integers(0, 256)
        path = tmp_path / "f.hdr"
        path.write_bytes(bytes(data))
        try:
            out = read_radiance(path)
            assert out.shape == (4, 16, 3)
        except ImageReadError:
            pass


@pytest.mark.parametrize("half,tol", [(True, 2e-3), (False, 0.0)])
def test_exr_round_trip(tmp_path, half, tol):
    import OpenEXR

    x = _radiance()
    write_exr(tmp_path / "x.exr", x, half=half)
    y = read_exr(tmp_path / "x.exr")
    assert y.dtype == np.float32 and y.shape == x.shape
    assert (np.abs(y - x) / np.maximum(x, 1e-3)).max() <= tol
    channel = OpenEXR.File(str(tmp_path / "x.exr"), separate_channels=True).channels()["R"]
    assert channel.pixels.dtype == (np.float16 if half else np.float32)


def test_exr_grey_and_layer_channels(tmp_path):
    import OpenEXR

    y = np.full((3, 4), 0.25, np.float32)
    OpenEXR.File({}, {"Y": y}).write(str(tmp_path / "y.exr"))
    np.testing.assert_array_equal(read_exr(tmp_path / "y.exr"), np.full((3, 4, 3), 0.25))
    layer = {f"beauty.{c}": np.full((3, 4), v, np.float32) for c, v in zip("RGB", (1, 2, 3))}
    OpenEXR.File({}, layer).write(str(tmp_path / "l.exr"))
    np.testing.assert_array_equal(read_exr(tmp_path / "l.exr")[0, 0], [1, 2, 3])


def test_exr_tiny_negatives_clamped_large_rejected(tmp_path):
    x = _radiance()
    x[0, 0, 0] = -1e-5
    write_exr(tmp_path / "t.exr", np.abs(x), half=False)
    import OpenEXR

    OpenEXR.File({}, {"RGB": x}).write(str(tmp_path / "neg.exr"))
    assert read_exr(tmp_path / "neg.exr").min() == 0.0
    x[0, 0, 0] = -1.0
    OpenEXR.File({}, {"RGB": x}).write(str(tmp_path / "neg.exr"))
    with pytest.raises(HDRValueError, match="neg.exr"):
        read_exr(tmp_path / "neg.exr")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_hdr_nan_inf_rejected_on_read_and_write(tmp_path, bad):
    import OpenEXR

    x = _radiance()
    x[1, 1, 1] = bad
    OpenEXR.File({}, {"RGB": x}).write(str(tmp_path / "nan.exr"))
    with pytest.raises(HDRValueError, match="nan.exr"):
        read_hdr(tmp_path / "nan.exr")
    for name in ("out.hdr", "out.exr"):
        with pytest.raises(HDRValueError, match=name):
            write_hdr(tmp_path / name, x)
        assert not (tmp_path / name).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.exr"]  # no temp files left


def test_hdr_half_overflow_and_bad_extensions(tmp_path):
    x = _radiance() * 1e5
    with pytest.raises(HDRValueError, match="half"):
        write_hdr(tmp_path / "big.exr", x)
    write_hdr(tmp_path / "big.exr", x, half=False)
    assert read_hdr(tmp_path / "big.exr").max() > 65504
    with pytest.raises(OutputError, match="x.png"):
        write_hdr(tmp_path / "x.png", _radiance())
    (tmp_path / "x.tiff").write_bytes(b"II")
    with pytest.raises(ImageReadError, match="x.tiff"):
        read_hdr(tmp_path / "x.tiff")
    with pytest.raises(ImageReadError, match="none.exr"):
        read_hdr(tmp_path / "none.exr")
    (tmp_path / "junk.exr").write_bytes(b"\x76\x2f\x31\x01garbage")
    with pytest.raises(ImageReadError, match="junk.exr"):
        read_hdr(tmp_path / "junk.exr")


def test_exr_size_cap(tmp_path, monkeypatch):
    write_exr(tmp_path / "x.exr", _radiance(4, 30))
    monkeypatch.setattr(hdr_io, "MAX_SIDE", 20)
    with pytest.raises(ImageReadError, match="limit"):
        read_hdr(tmp_path / "x.exr")


# ------------------------------------------------------------------------------------ preview


def test_tonemap_preview_properties(tmp_path):
    from gmodiff.io.preview import tonemap_preview, write_preview

    x = _radiance(16, 20)
    out = tonemap_preview(x)
    assert out.dtype == np.uint8 and out.shape == x.shape
    assert 0 < out.mean() < 255
    # auto exposure makes the preview independent of the overall scale
    np.testing.assert_array_equal(tonemap_preview(x * 100), out)
    # monotone: brighter radiance never gives a darker pixel
    ramp = np.linspace(0, 5, 50, dtype=np.float32)[None, :, None].repeat(3, 2)
    assert np.all(np.diff(tonemap_preview(ramp, exposure=1.0)[0, :, 0].astype(int)) >= 0)
    assert tonemap_preview(np.zeros((4, 4, 3), np.float32)).max() == 0
    write_preview(tmp_path / "p.png", x)
    assert read_ldr(tmp_path / "p.png").bit_depth == 8
    with pytest.raises(OutputError, match="p.jpg"):
        write_preview(tmp_path / "p.jpg", x)
