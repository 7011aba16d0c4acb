"""Camera files as photographers have them: compressed TIFFs, HEIC with EXIF; ``--version``."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bracket_helpers import exif_bytes, expose, scene_radiance
from gmodiff.cli import main
from gmodiff.io.exif import read_exif
from gmodiff.io.ldr import read_ldr


def test_version_flag(capsys):
    from gmodiff import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == __version__


@pytest.mark.parametrize("compression", ["lzw", "zlib", "packbits"])
def test_compressed_tiffs_are_read(tmp_path, compression):
    import tifffile

    pixels = (np.random.default_rng(0).random((20, 30, 3)) * 65535).astype(np.uint16)
    path = tmp_path / "f.tif"
    tifffile.imwrite(path, pixels, photometric="rgb", compression=compression)
    image = read_ldr(path)
    assert image.bit_depth == 16
    assert np.array_equal(np.rint(image.pixels * 65535).astype(np.uint16), pixels)


def _heic(path, rgb, seconds):
    pillow_heif = pytest.importorskip("pillow_heif")
    from PIL import Image

    pillow_heif.register_heif_opener()
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "HEIF", quality=95, exif=exif_bytes(seconds))
    path.write_bytes(buffer.getvalue())
    return path


def test_heic_bracket_with_exif(tmp_path, capsys):
    from gmodiff.io.hdr import read_hdr

    radiance = scene_radiance(128, 192, seed=2) * 0.5  # enough pixels to estimate the curve
    paths = [_heic(tmp_path / f"IMG_{i}.HEIC", expose(radiance, 2.0 ** s), 2.0 ** s / 100)
             for i, s in enumerate((-2, 0, 2))]
    assert read_exif(paths[1]).exposure_time_seconds == pytest.approx(1 / 100, rel=1e-3)
    assert read_ldr(paths[1]).pixels.shape == (128, 192, 3)
    out = tmp_path / "o.exr"
    assert main(["reconstruct", *map(str, paths), "-o", str(out), "--method", "merge",
                 "--align", "none", "--quiet"]) == 0
    assert "IMG_1.HEIC (+0.0 EV)" in capsys.readouterr().out  # exposures came from EXIF
    hdr = read_hdr(out)
    seen = expose(radiance, 1.0).max(axis=2) / 255
    well = (seen > 0.1) & (seen < 0.9)
    assert np.median(hdr.mean(axis=2)[well] / radiance.mean(axis=2)[well]) == pytest.approx(1, abs=0.1)


def test_a_folder_of_jpegs_is_a_bracket(tmp_path, capsys):
    """No exposure.txt: the folder's images are one bracket with EXIF exposures, not a
    "missing exposure file" error."""
    from bracket_helpers import save_jpeg

    radiance = scene_radiance(32, 48, seed=2) * 0.5
    folder = tmp_path / "card"
    folder.mkdir()
    for i, s in enumerate((0, -2, 2)):
        save_jpeg(folder / f"DSC_{i}.JPG", expose(radiance, 2.0 ** s), exif_bytes(2.0 ** s / 100))
    out = tmp_path / "o.hdr"
    assert main(["reconstruct", str(folder), "-o", str(out), "--method", "merge",
                 "--align", "none", "--quiet"]) == 0
    text = capsys.readouterr().out
    assert "reference: DSC_0.JPG (+0.0 EV)" in text and out.is_file()
