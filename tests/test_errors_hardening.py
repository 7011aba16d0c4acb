"""Hardening round 2 (issue #15): one test per case, each a row of docs/errors.md.

Same conventions as ``test_errors_table.py`` (whose helpers are reused): the real command line,
exit code 2 and one ``error:`` line for user errors, no partial output; plus the cases where the
right answer is a behaviour (a non-UTF-8 output name is written, no temp file survives a kill,
outputs are identical at one thread count).
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from gmodiff.cli import main
from gmodiff.errors import CheckpointError, ConfigError, ImageReadError, OutputError
from gmodiff.io.scene import save_scene
from test_errors_table import (  # noqa: F401  (bracket, scene and tiny_pipeline are fixtures)
    DOCS,
    _bracket_error,
    _deny_writes_in,
    _enospc,
    _files,
    _scene,
    bracket,
    expect_user_error,
    reconstruct_error,
    scene,
    tiny_pipeline,
)

REPO = Path(__file__).resolve().parents[1]
NOT_UTF8 = os.fsdecode(b"r\xff\xfesult")


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1",
                PYTHONPATH=str(REPO / "src"))


def _temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".part" in p.name)


# ------------------------------------------------------------------ 1. non-UTF-8 output names


@pytest.mark.parametrize("suffix", [".exr", ".hdr"])
def test_output_name_not_utf8(capsys, tmp_path, scene, suffix):
    """A file name that is not UTF-8 (legal on Linux) is written, whatever the format."""
    from gmodiff.io.hdr import read_hdr

    out = tmp_path / "out" / f"{NOT_UTF8}{suffix}"
    code = main(["reconstruct", str(scene), "-o", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert read_hdr(out).shape == (12, 16, 3)
    assert sorted(os.listdir(os.fsencode(out.parent))) == [os.fsencode(out.name)]


def test_batch_scene_name_not_utf8(capsys, tmp_path):
    """Batch mode: a good scene whose folder name is not UTF-8 is written, not 'internal error'."""
    scenes = tmp_path / "scenes"
    save_scene(_scene(), scenes / NOT_UTF8)
    save_scene(_scene(seed=1), scenes / "plain")
    code = main(["reconstruct", str(scenes), "-o", str(tmp_path / "out"), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "internal error" not in captured.err
    assert sorted(os.listdir(tmp_path / "out")) == sorted([f"{NOT_UTF8}.exr", "plain.exr"])


# ------------------------------------------------------------------ 2. disk full writing .exr


def test_disk_full_while_writing_exr(capsys, tmp_path, scene, monkeypatch):
    """ENOSPC half-way through an .exr: OutputError, nothing left (OpenEXR's own writer ignored
    write errors and left a truncated file, or a traceback)."""
    real_write_bytes = pathlib.Path.write_bytes

    def half_then_full(self, data):
        real_write_bytes(self, bytes(data)[: len(data) // 2])
        _enospc()

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_full)
    reconstruct_error(capsys, tmp_path, scene, OutputError, "out.exr", "disk full",
                      name="out.exr")


# -------------------------------------------------------------- 3. preview checked before compute


def _never(*args, **kwargs):
    raise AssertionError("reconstructed before checking every output path")


def test_preview_folder_not_writable_or_full(capsys, tmp_path, scene, monkeypatch):
    """--preview into a folder we may not write in, or on a full disk: refused before compute."""
    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    (tmp_path / "previews").mkdir()
    preview = tmp_path / "previews" / "p.png"
    _deny_writes_in(monkeypatch, "previews")
    reconstruct_error(capsys, tmp_path, scene, OutputError, "p.png", "no permission",
                      extra=["--preview", str(preview)])
    monkeypatch.undo()
    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    real_statvfs = os.statvfs

    def full(path):
        stats = real_statvfs(path)
        if Path(path).name != "previews":
            return stats
        return os.statvfs_result((stats.f_bsize, stats.f_frsize, stats.f_blocks, 0, 0,
                                  stats.f_files, stats.f_ffree, stats.f_favail, stats.f_flag,
                                  stats.f_namemax))

    monkeypatch.setattr(os, "statvfs", full)
    reconstruct_error(capsys, tmp_path, scene, OutputError, "p.png", "disk full",
                      extra=["--preview", str(preview)])
    assert list((tmp_path / "previews").iterdir()) == []


def test_preview_write_fails_no_output_left(capsys, tmp_path, scene, monkeypatch):
    """The disk fills while the preview is written: the HDR is not left behind either."""
    real_write_bytes = pathlib.Path.write_bytes

    def full_for_png(self, data):
        if self.suffix == ".png":
            _enospc()
        return real_write_bytes(self, data)

    monkeypatch.setattr(pathlib.Path, "write_bytes", full_for_png)
    reconstruct_error(capsys, tmp_path, scene, OutputError, "p.png", "disk full",
                      extra=["--preview", str(tmp_path / "out" / "p.png")])


# ------------------------------------------------------------------- 4. outputs replacing inputs


@pytest.fixture
def jpeg_scene(tmp_path) -> Path:
    """A scene folder whose frames are JPEGs (a format -o can also write)."""
    from PIL import Image

    folder = save_scene(_scene(), tmp_path / "jscene")
    for k in (1, 2, 3):
        tif = folder / f"input_{k}.tif"
        Image.fromarray(np.full((12, 16, 3), 60 * k, np.uint8)).save(folder / f"f{k}.jpg")
        tif.unlink()
    return folder


@pytest.mark.parametrize("how", ["ground-truth", "frame-relative", "symlink", "hard-link",
                                 "preview-frame"])
def test_output_names_an_input(capsys, tmp_path, jpeg_scene, monkeypatch, how):
    """-o (or --preview) naming the scene's ground truth or a frame, by any path: refused."""
    before = {p.name: p.read_bytes() for p in jpeg_scene.iterdir()}
    extra = ["--no-progress"]
    if how == "ground-truth":
        output = jpeg_scene / "HDRImg.hdr"
    elif how == "frame-relative":
        monkeypatch.chdir(tmp_path)
        output = Path("jscene") / ".." / "jscene" / "f2.jpg"
    elif how == "symlink":
        output = tmp_path / "link.hdr"
        output.symlink_to(jpeg_scene / "HDRImg.hdr")
    elif how == "hard-link":
        output = tmp_path / "hard.jpg"
        os.link(jpeg_scene / "f1.jpg", output)
    else:
        (jpeg_scene / "f3.jpg").rename(jpeg_scene / "f3.png")
        from PIL import Image

        Image.fromarray(np.full((12, 16, 3), 180, np.uint8)).save(jpeg_scene / "f3.png")
        before = {p.name: p.read_bytes() for p in jpeg_scene.iterdir()}
        output = tmp_path / "fine.hdr"
        extra += ["--preview", str(jpeg_scene / "f3.png")]
    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    expect_user_error(capsys, ["reconstruct", str(jpeg_scene), "-o", str(output), *extra],
                      OutputError, "would overwrite the input file")
    assert {p.name: p.read_bytes() for p in jpeg_scene.iterdir()} == before


# ------------------------------------------------------- 5. no stray temp files after a kill


_SLOW_WRITE = r"""
import pathlib, signal, sys, time
# A test runner may start us with SIGTERM ignored (an ignored signal survives exec), and an
# ignored signal is left alone by our cleanup: start from the default like a shell would.
signal.signal(signal.SIGTERM, signal.SIG_DFL)
real = pathlib.Path.write_bytes
def slow(self, data):
    real(self, data[:10])
    print("writing", flush=True)
    time.sleep(60)
pathlib.Path.write_bytes = slow
from gmodiff.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start_slow_write(scene: Path, out: Path) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-c", _SLOW_WRITE, "reconstruct", str(scene), "-o",
                              str(out), "--no-progress", "--method", "merge"],
                             env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "writing", child.stderr.read()[-2000:]
    return child


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGKILL"])
def test_kill_while_writing_leaves_no_temp_file(tmp_path, scene, sig):
    """SIGTERM: the temp file is removed at once. SIGKILL cannot be caught: the next write into
    that folder recognises the dead writer's temp file (its pid is in the name) and removes it."""
    from gmodiff.io.atomic import write_bytes_atomic

    out = tmp_path / "out"
    out.mkdir()
    (out / "old.hdr").write_bytes(b"an earlier result")
    child = _start_slow_write(scene, out / "result.hdr")
    assert len(_temp_files(out)) == 1
    child.send_signal(getattr(signal, sig))
    assert child.wait(timeout=120) == -getattr(signal, sig)  # generous: CI may be loaded
    child.stdout.close()
    child.stderr.close()
    if sig == "SIGKILL":
        assert len(_temp_files(out)) == 1  # nothing can run at SIGKILL...
        write_bytes_atomic(out / "next.hdr", b"a later run")  # ...the next writer cleans up
    assert _temp_files(out) == []
    assert not (out / "result.hdr").exists()
    assert (out / "old.hdr").read_bytes() == b"an earlier result"


def test_live_or_foreign_temp_files_are_kept(tmp_path):
    """Only temp files of dead writers on this host are removed, never a running one's."""
    from gmodiff.io.atomic import _HOST_TAG, temp_prefix, write_bytes_atomic

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = tmp_path / f".a.gm{_HOST_TAG}p{sleeper.pid}-abcdefgh.part.hdr"
        other_host = tmp_path / f".b.gm{'0' * 6 if _HOST_TAG != '0' * 6 else '1' * 6}p1-x.part.hdr"
        user_file = tmp_path / ".notes.part.txt"
        for path in (live, other_host, user_file):
            path.write_bytes(b"x")
        assert temp_prefix(tmp_path / NOT_UTF8).isascii()
        write_bytes_atomic(tmp_path / "c.hdr", b"data")
        assert live.exists() and other_host.exists() and user_file.exists()
    finally:
        sleeper.kill()
        sleeper.wait()
    write_bytes_atomic(tmp_path / "d.hdr", b"data")
    assert not live.exists()


# ----------------------------------------------------------- 6. corrupt refiner.safetensors


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_refiner_weights(capsys, tmp_path, scene, tiny_pipeline, damage):
    weights = shutil.copytree(tiny_pipeline, tmp_path / "pipe")
    path = weights / "refiner.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\x07" * 64)
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, "refiner.safetensors",
                      "cannot read refiner weights",
                      extra=["--method", "gmodiff", "--weights", str(weights)])


# ------------------------------------------------- 7 + 8. every pipeline config field bounded


def _edit(config: dict, where: str, value) -> None:
    *parents, key = where.split(".")
    node = config
    for name in parents:
        node = node[name]
    node[key] = value


PIPELINE_CONFIG_DAMAGE = {
    "rank_unet": ("refiner.rank_unet", 10**6),
    "rank_vae": ("refiner.rank_vae", 0),
    "token_channels": ("refiner.token_channels", 10**7),
    "mask_channels": ("refiner.mask_channels", [1 << 20, 1 << 20]),
    "vae_widths": ("backbone.vae_widths", [1 << 16] * 4),
    "lora_alpha": ("refiner.lora_alpha", "NaN"),
    "timestep-negative": ("refiner.timestep", -5),
    "timestep-too-large": ("refiner.timestep", 1000),
    "seed": ("backbone.seed", -1),
    "tile-unknown-key": ("tile", {"bogus": 1}),
    "tile-zero": ("tile.latent_tile", 0),
    "tile-overlap": ("tile.latent_overlap", 500),
    "vae_tile": ("tile", {"latent_tile": 96, "latent_overlap": 32, "vae_tile": 2,
                          "vae_overlap": 0}),
    "refine": ("refine", "yes"),
    "refiner-weights": ("refiner_weights", "half"),
    "unknown-refiner-key": ("refiner.rank_everything", 4),
    "target-modules": ("refiner.target_modules", {"unet_default_encoder": [7]}),
}


@pytest.mark.parametrize("damage", list(PIPELINE_CONFIG_DAMAGE))
def test_pipeline_config_out_of_bounds(capsys, tmp_path, scene, tiny_pipeline, monkeypatch,
                                       damage):
    """A field out of its bounds is refused before any network is built (no allocation, no
    traceback); the message names gmodiff_pipeline.json and the field."""
    from gmodiff.pipeline import pipeline as pipeline_module
    weights = shutil.copytree(tiny_pipeline, tmp_path / "pipe")
    config_path = weights / "gmodiff_pipeline.json"
    config = json.loads(config_path.read_text())
    where, value = PIPELINE_CONFIG_DAMAGE[damage]
    _edit(config, where, value)
    text = json.dumps(config).replace('"NaN"', "NaN")
    config_path.write_text(text)
    monkeypatch.setattr(pipeline_module, "load_backbone", _never)
    monkeypatch.setattr(pipeline_module.DaReg, "from_pretrained", _never)
    field = where.rsplit(".", 1)[-1]
    mention = {"tile-unknown-key": "bogus", "lora_alpha": "NaN", "vae_tile": "vae_tile",
               "unknown-refiner-key": "rank_everything"}.get(damage, field)
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, "gmodiff_pipeline.json", mention,
                      extra=["--method", "gmodiff", "--weights", str(weights)])


def test_pipeline_config_names_missing_modules(capsys, tmp_path, scene, tiny_pipeline):
    """LoRA target lists naming modules the backbone does not have: a CheckpointError."""
    weights = shutil.copytree(tiny_pipeline, tmp_path / "pipe")
    config_path = weights / "gmodiff_pipeline.json"
    config = json.loads(config_path.read_text())
    config["refiner"]["target_modules"] = {"unet_default_encoder": ["no.such.module"],
                                           "unet_default_decoder": ["conv_out"],
                                           "unet_default_others": ["mid_block.resnets.0.conv1"]}
    config_path.write_text(json.dumps(config))
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, "gmodiff_pipeline.json",
                      "does not fit the backbone",
                      extra=["--method", "gmodiff", "--weights", str(weights)])


def test_pipeline_config_token_width_mismatch(capsys, tmp_path, scene, tiny_pipeline,
                                              monkeypatch):
    """A refiner token width that is not its DaReg's: refused before the refiner is built."""
    from gmodiff.pipeline import pipeline as pipeline_module
    weights = shutil.copytree(tiny_pipeline, tmp_path / "pipe")
    config_path = weights / "gmodiff_pipeline.json"
    config = json.loads(config_path.read_text())
    config["refiner"]["token_channels"] = 4096
    config_path.write_text(json.dumps(config))
    monkeypatch.setattr(pipeline_module, "load_backbone", _never)
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, "gmodiff_pipeline.json",
                      "4096-wide", extra=["--method", "gmodiff", "--weights", str(weights)])


# ------------------------------------------------------------------------ 9. unusable --device


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "bogus", "mps"])
def test_device_unavailable_or_unknown(capsys, tmp_path, scene, tiny_pipeline, monkeypatch,
                                       device):
    """--device that torch does not know, or that this machine does not have: refused before
    any weights are loaded."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # as on the CPU build
    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    reconstruct_error(capsys, tmp_path, scene, ConfigError, repr(device), "--device",
                      extra=["--method", "gmodiff", "--weights", str(tiny_pipeline),
                             "--device", device])


# ----------------------------------------------------- 10. memory estimate before decoding


def _png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims width×height; its pixel data is a few bytes (never decoded)."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (len(body).to_bytes(4, "big") + kind + body
                + zlib.crc32(kind + body).to_bytes(4, "big"))

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))
    return path


def test_frames_too_large_for_memory(capsys, tmp_path, monkeypatch):
    """Three valid 20000×20000 frames (under the per-side cap) on a machine with 8 GiB free:
    refused from the headers with the memory they would need, before any decoding."""
    import gmodiff.io.ldr
    import gmodiff.io.memory

    folder = tmp_path / "huge"
    folder.mkdir()
    for k in (1, 2, 3):
        _png_header_only(folder / f"frame_{k}.png", 20000, 20000)
    (folder / "exposure.txt").write_text("0 2 4\n")
    monkeypatch.setattr(gmodiff.io.memory, "available_memory", lambda: 8 << 30)
    monkeypatch.setattr(gmodiff.io.ldr, "_read_png", _never)
    line = reconstruct_error(capsys, tmp_path, folder, ImageReadError, "frame_", "20000x20000",
                             "memory", "8.0 GB is available")
    assert "26.8 GB" in line, line


# ------------------------------------------------------------------- 11. --tile lower bound


@pytest.mark.parametrize("tile", ["1", "3", "15"])
def test_tile_below_minimum(capsys, tmp_path, scene, tiny_pipeline, monkeypatch, tile):
    from gmodiff.models.refiner import MIN_LATENT_TILE

    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    reconstruct_error(capsys, tmp_path, scene, ConfigError, f"got {tile}",
                      f"--tile {MIN_LATENT_TILE}",
                      extra=["--method", "gmodiff", "--weights", str(tiny_pipeline), "--refine",
                             "--tile", tile])


# ------------------------------------------------------------------ 12. native library chatter


def _tiff_with_dangling_tag(path: Path, frame: np.ndarray) -> None:
    """A TIFF whose Software tag points past the end of the file: tifffile logs a warning and
    still reads the pixels."""
    import tifffile

    from gmodiff.io.ldr import quantise

    tifffile.imwrite(path, quantise(frame, 16), photometric="rgb",
                     extratags=[(305, "s", 0, "gmodiff test with a long software name", True)])
    data = bytearray(path.read_bytes())
    ifd = int.from_bytes(data[4:8], "little")
    for k in range(int.from_bytes(data[ifd:ifd + 2], "little")):
        entry = ifd + 2 + 12 * k
        if int.from_bytes(data[entry:entry + 2], "little") == 305:
            data[entry + 8:entry + 12] = (len(data) + 50000).to_bytes(4, "little")
    path.write_bytes(bytes(data))


def _exr_with_corrupt_chunk(path: Path, hdr: np.ndarray) -> None:
    """An EXR whose first scanline chunk names the wrong line: OpenEXR prints its complaint."""
    from gmodiff.io.hdr import write_hdr

    write_hdr(path, hdr)
    data = bytearray(path.read_bytes())
    start = next(p for p in range(len(data) - 8)
                 if int.from_bytes(data[p:p + 8], "little") == p + 8)  # the one-entry offset table
    data[start + 8:start + 12] = (12345).to_bytes(4, "little")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["tifffile-warning", "openexr-error"])
def test_native_library_output_is_captured(tmp_path, damage):
    """What tifffile, OpenEXR (and libpng) print never reaches the terminal: a readable file
    gives clean output, an unreadable one exactly one error line (with the decoder's words)."""
    source = _scene()
    folder = save_scene(source, tmp_path / "scene")
    if damage == "tifffile-warning":
        _tiff_with_dangling_tag(folder / "input_2.tif", source.frames[1])
    else:
        (folder / "HDRImg.hdr").unlink()
        _exr_with_corrupt_chunk(folder / "HDRImg.exr", source.ground_truth)
    result = subprocess.run([sys.executable, "-m", "gmodiff", "reconstruct", str(folder), "-o",
                             str(tmp_path / "out.hdr"), "--no-progress", "--method", "merge"],
                            env=_env(), capture_output=True, text=True, timeout=300)
    if damage == "tifffile-warning":
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout.startswith("wrote ") and len(result.stdout.splitlines()) == 1
    else:
        assert result.returncode == 2
        lines = result.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
        assert "HDRImg.exr" in lines[0] and "EXR_ERR" in lines[0]
        assert result.stdout == "", result.stdout


# ---------------------------------------------------------- 13. determinism and thread counts


def test_same_thread_count_gives_identical_bytes(tmp_path, scene):
    """The documented promise: same machine, same thread count → byte-identical output, for
    the default method at more than one thread (across thread counts it is not promised)."""
    import torch

    text = DOCS.read_text(encoding="utf-8")
    assert "same thread count" in text and "OMP_NUM_THREADS" in text
    threads = torch.get_num_threads()
    digests = []
    try:
        torch.set_num_threads(2)
        for name in ("a.exr", "b.exr"):
            assert main(["reconstruct", str(scene), "-o", str(tmp_path / name),
                         "--no-progress"]) == 0
            digests.append((tmp_path / name).read_bytes())
    finally:
        torch.set_num_threads(threads)
    assert digests[0] == digests[1]



# =========================================== hardening round 3 (issue 26): readers and options


def _mpo_jpeg(path: Path, value: int, seconds: float, size: tuple[int, int] = (32, 48)) -> Path:
    """A camera-style JPEG whose MPF segment (APP2) adds a small second image after the primary
    one: Pillow opens it as "MPO"."""
    from PIL import Image

    from bracket_helpers import exif_bytes

    primary = Image.fromarray(np.full((*size, 3), value, np.uint8))
    preview = Image.fromarray(np.full((8, 12, 3), 255 - value, np.uint8))
    primary.save(path, "MPO", save_all=True, append_images=[preview], exif=exif_bytes(seconds))
    return path


def test_mpo_camera_jpeg_is_read(capsys, tmp_path):
    """A JPEG with an MPF preview (Pillow's "MPO") reads as its primary image, in the library
    and on the command line (a bracket of three such frames reconstructs)."""
    from PIL import Image

    from gmodiff.io.ldr import read_ldr

    frames = [_mpo_jpeg(tmp_path / f"DSC0{k}.JPG", value, seconds)
              for k, (value, seconds) in enumerate([(40, 1 / 240), (120, 1 / 60), (220, 1 / 15)])]
    with Image.open(frames[1]) as im:
        assert im.format == "MPO" and im.n_frames == 2
    image = read_ldr(frames[1])
    assert image.pixels.shape == (32, 48, 3) and image.bit_depth == 8
    assert abs(float(image.pixels.mean()) - 120 / 255) < 0.01  # the primary, not the preview
    out = tmp_path / "out.exr"
    code = main(["reconstruct", *map(str, frames), "-o", str(out), "--method", "merge",
                 "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert out.is_file() and "MPO" not in captured.err


def test_wrong_format_names_the_right_extension(capsys, tmp_path, scene):
    """A PNG saved as .jpg (or a JPEG as .png): the fix names the extension its content has."""
    from PIL import Image

    from gmodiff.io.ldr import read_ldr

    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(tmp_path / "f.png")
    (tmp_path / "f.png").rename(tmp_path / "frame.jpg")
    with pytest.raises(ImageReadError, match=r"is a PNG image, not JPEG — rename it to frame\.png"):
        read_ldr(tmp_path / "frame.jpg")
    (scene / "input_2.tif").unlink()
    Image.fromarray(np.full((12, 16, 3), 90, np.uint8)).save(scene / "input_2.png", "JPEG")
    # input_*.tif are taken when present: make every frame a PNG so the mislabelled one is read
    for k in (1, 3):
        Image.open(scene / f"input_{k}.tif").convert("RGB").save(scene / f"input_{k}.png")
        (scene / f"input_{k}.tif").unlink()
    reconstruct_error(capsys, tmp_path, scene, ImageReadError, "input_2.png", "JPEG image",
                      "rename it to input_2.jpg")


def _jpeg_header_claiming(path: Path, width: int, height: int) -> Path:
    """A few-KB JPEG whose SOF header claims width×height (libjpeg would decode the missing
    data as a grey frame of that size)."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.full((16, 16, 3), 128, np.uint8)).save(buf, "JPEG", quality=90)
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    path.write_bytes(bytes(data))
    return path


def test_pixel_bomb_refused_by_the_memory_plan_before_decoding(capsys, tmp_path, monkeypatch,
                                                               tiny_pipeline):
    """3-KB JPEGs claiming 12000×12000 on a machine with 16 GB free: the loader's estimate
    (10.4 GB) passes, the reconstruction's own plan (22 GB) does not, and refuses from the
    headers, naming the file and the size, before any pixel is decoded."""
    import gmodiff.io.ldr
    import gmodiff.io.memory
    import gmodiff.memory
    from gmodiff.errors import OutOfMemoryError
    from gmodiff.methods import memory_check

    frames = [_jpeg_header_claiming(tmp_path / f"bomb{k}.jpg", 12000, 12000) for k in range(3)]
    assert all(f.stat().st_size < 4000 for f in frames)
    for module in (gmodiff.io.memory, gmodiff.memory):
        monkeypatch.setattr(module, "available_memory", lambda: 16 << 30)
    monkeypatch.setattr(gmodiff.io.ldr, "_read_jpeg", _never)
    out = tmp_path / "out"
    out.mkdir()
    line = expect_user_error(capsys, ["reconstruct", *map(str, frames), "-o", str(out / "o.exr"),
                                      "--ev", "0,2,4", "--no-progress", "--method", "gmodiff",
                                      "--weights", str(tiny_pipeline)],
                             OutOfMemoryError, "bomb0.jpg", "12000x12000", "--max-memory")
    assert "may be used" in line and _files(out) == {}
    with pytest.raises(OutOfMemoryError, match="12000x12000.*DaReg alone"):
        memory_check("dareg")(frames[0], 12000, 12000)
    assert memory_check("merge") is None  # classical merges: the loader's estimate suffices
    # Another format's reader (camera raw, HEIC) joins the same checks through the hook.
    from gmodiff.io.memory import _HEADER_READERS, check_fits_in_memory, register_header_reader

    monkeypatch.setattr(gmodiff.io.memory, "_HEADER_READERS", dict(_HEADER_READERS))
    register_header_reader([".ARW"], lambda path: (30000, 20000))
    (tmp_path / "raw.arw").write_bytes(b"raw")
    with pytest.raises(ImageReadError, match="raw.arw: image is 20000x30000, larger than"):
        check_fits_in_memory([tmp_path / "raw.arw"])


def test_png_inside_the_side_cap_is_not_a_pillow_bomb(tmp_path, monkeypatch, recwarn):
    """A valid 20000×14000 PNG (inside the documented 20000-px cap) is judged by our rules, not
    refused (nor warned about) by Pillow's decompression-bomb limit, which is raised to the cap."""
    import cv2
    from PIL import Image

    from gmodiff.io.ldr import MAX_SIDE, ldr_size, read_ldr

    path = _png_header_only(tmp_path / "pano.png", 20000, 14000)
    assert ldr_size(path) == (14000, 20000)
    # Decoding 280 MP is not this test's business: stand in for OpenCV once Pillow let it pass.
    monkeypatch.setattr(cv2, "imdecode", lambda data, flags: np.zeros((4, 4, 3), np.uint8))
    assert read_ldr(path).pixels.shape == (4, 4, 3)
    assert Image.MAX_IMAGE_PIXELS >= MAX_SIDE * MAX_SIDE
    assert not [w for w in recwarn if "DecompressionBomb" in type(w.message).__name__]


@pytest.mark.parametrize("flag,value,mention", [
    ("--max-memory", "9" * 400, "too large"),
    ("--seed", str(2 ** 64), "seed must be a whole number from 0 to 9223372036854775807"),
    ("--seed", "-1", "seed must be"),
    ("--steps", "1000000000", "steps must be at most 1000"),
], ids=["max-memory-400-digits", "seed-2**64", "seed-negative", "steps-1e9"])
def test_options_bounded_at_the_edge(capsys, tmp_path, scene, tiny_pipeline, monkeypatch, flag,
                                     value, mention):
    """Out-of-range numbers are refused where they enter, in one line, before any weights are
    loaded (they were an OverflowError, torch's ValueError after loading, an OOM later)."""
    from gmodiff.pipeline import pipeline as pipeline_module
    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    monkeypatch.setattr(pipeline_module, "load_pipeline", _never)
    line = reconstruct_error(capsys, tmp_path, scene, ConfigError, mention,
                             extra=["--method", "gmodiff", "--weights", str(tiny_pipeline),
                                    "--refine", flag, value])
    assert len(line) < 300, line  # a 400-digit value is not echoed whole


_WARN_THEN_FAIL = r"""
import sys, warnings
import numpy as np
import gmodiff.bracket.prepare
from gmodiff.errors import ExposureError
def noisy(*args, **kwargs):
    np.log2(np.zeros(1))  # numpy: "divide by zero encountered in log2"
    warnings.warn("a library's note", UserWarning)
    raise ExposureError("the exposures are odd", None, "fix them")
gmodiff.bracket.prepare.bracket_exposures = noisy
from gmodiff.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("case", ["ev-overflow", "warning-then-error"])
def test_one_stderr_line_per_failure(tmp_path, bracket, case):
    """Nothing is printed before the one error line: numpy's RuntimeWarnings (``--ev 0,2,2000``
    overflows exp2) and any other warning raised on the way to a failure are held back."""
    args = ["reconstruct", *map(str, bracket), "-o", str(tmp_path / "out.exr"), "--no-progress",
            "--method", "merge"]
    if case == "ev-overflow":
        command = [sys.executable, "-W", "default", "-m", "gmodiff", *args, "--ev", "0,2,2000"]
    else:
        command = [sys.executable, "-W", "default", "-c", _WARN_THEN_FAIL, *args]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not (tmp_path / "out.exr").exists()


def _unblock_later(fifo: Path, seconds: float = 5.0):
    """A watchdog: should a reader block on ``fifo`` (the bug), open and close its write end so
    the test ends with a failed assertion instead of hanging."""
    import threading

    def writer():
        import time

        time.sleep(seconds)
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:  # no reader waiting: nothing was blocked
            pass

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("where", ["bracket-frame", "exposure-file"])
def test_special_file_is_refused_without_opening(capsys, tmp_path, bracket, scene, where):
    """A FIFO given as a frame (or standing as exposure.txt) is refused from ``stat``: opening it
    would block until a writer appears (the run hung forever)."""
    from gmodiff.errors import ExposureError

    if where == "bracket-frame":
        fifo = tmp_path / "frame1.jpg"
        bracket[1].unlink()
        os.mkfifo(fifo)
        _unblock_later(fifo)
        _bracket_error(capsys, tmp_path, bracket, ImageReadError, "frame1.jpg",
                       "is a FIFO (named pipe), not a regular file")
    else:
        fifo = scene / "exposure.txt"
        fifo.unlink()
        os.mkfifo(fifo)
        _unblock_later(fifo)
        reconstruct_error(capsys, tmp_path, scene, ExposureError, "exposure.txt",
                          "is a FIFO (named pipe)")


def test_same_file_twice_is_refused(capsys, tmp_path, bracket):
    """Three names of one file (hard links) are not a bracket, even with --ev."""
    from gmodiff.errors import SceneError

    links = [bracket[0], tmp_path / "copy1.jpg", tmp_path / "copy2.jpg"]
    for link in links[1:]:
        os.link(bracket[0], link)
    _bracket_error(capsys, tmp_path, links, SceneError, "copy1.jpg", "same file as frame0.jpg",
                   extra=["--ev", "-2,0,2"])


def test_scene_exposures_closer_than_the_bracket_rule(capsys, tmp_path, scene):
    """exposure.txt values 1e-5 stops apart: refused like two equal --ev values (< 0.1 stop)."""
    from gmodiff.errors import ExposureError

    (scene / "exposure.txt").write_text("0 0.00001 4\n")
    reconstruct_error(capsys, tmp_path, scene, ExposureError, "exposure.txt", "closer than 0.1")


def test_exposure_file_with_a_byte_order_mark(capsys, tmp_path, scene):
    """A UTF-8 exposure.txt that starts with a BOM (Windows editors) is read."""
    (scene / "exposure.txt").write_text("\ufeff0 2 4\r\n", encoding="utf-8")
    out = tmp_path / "out.exr"
    code = main(["reconstruct", str(scene), "-o", str(out), "--method", "merge", "--no-progress"])
    assert code == 0, capsys.readouterr().err
    assert out.is_file()


@pytest.mark.parametrize("case", ["followed", "loop"])
def test_symlinked_scene_folders(capsys, tmp_path, scene, case):
    """A folder of scenes whose scenes are symlinks: followed. A link back up the tree: refused
    (it was skipped: "no scene folders found", or the loop went unnoticed)."""
    from gmodiff.errors import SceneError

    scenes = tmp_path / "scenes"
    scenes.mkdir()
    (scenes / "linked").symlink_to(scene, target_is_directory=True)
    out = tmp_path / "out"
    argv = ["reconstruct", str(scenes), "-o", str(out), "--method", "merge", "--no-progress"]
    if case == "followed":
        assert main(argv) == 0, capsys.readouterr().err
        assert sorted(os.listdir(out)) == ["linked.exr"]
    else:
        (scenes / "real").mkdir()
        (scenes / "real" / "up").symlink_to(scenes, target_is_directory=True)
        expect_user_error(capsys, argv, SceneError, "up", "symlink loop")
        assert not out.exists()


def test_control_characters_in_file_names_are_escaped(capsys, tmp_path, bracket):
    """A file name with an ANSI escape (or a newline) is shown escaped, so it can neither recolour
    the terminal nor split the one error line."""
    bad = tmp_path / "evil\x1b[2J\x1b[31m\nname.jpg"
    bad.write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "out"
    out.mkdir()
    argv = ["reconstruct", str(bracket[0]), str(bad), str(bracket[2]), "-o", str(out / "o.exr"),
            "--ev", "-2,0,2", "--no-progress"]
    line = expect_user_error(capsys, argv, ImageReadError, "evil\\x1b[2J\\x1b[31m\\x0aname.jpg")
    assert "\x1b" not in line
    from gmodiff.errors import display_path, printable

    assert printable("a\u202eb\x9b") == "a\\u202eb\\x9b" and "\n" not in display_path(bad)


@pytest.mark.parametrize("which", ["output", "preview"])
def test_output_name_is_an_existing_folder(capsys, tmp_path, scene, monkeypatch, which):
    """-o (or --preview) naming an existing folder: refused before compute (it failed only when
    the finished result was written)."""
    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    folder = tmp_path / ("result.exr" if which == "output" else "preview.png")
    folder.mkdir()
    output = folder if which == "output" else tmp_path / "fine.exr"
    extra = ["--preview", str(folder)] if which == "preview" else []
    expect_user_error(capsys, ["reconstruct", str(scene), "-o", str(output), "--no-progress",
                               *extra], OutputError, folder.name, "existing folder")
    assert list(folder.iterdir()) == []


def test_outputs_with_the_same_path_are_refused(capsys, tmp_path, scene, tiny_pipeline,
                                                monkeypatch):
    """--preview named like a debug map (out.gain_map.png): refused before compute, instead of
    one silently replacing the other."""
    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", _never)
    reconstruct_error(capsys, tmp_path, scene, OutputError, "out.gain_map.png", "same file",
                      name="out.exr", extra=["--method", "gmodiff", "--weights", str(tiny_pipeline),
                                             "--debug-maps", "--preview",
                                             str(tmp_path / "out" / "out.gain_map.png")])
    from gmodiff.io.paths import check_distinct_outputs

    os.link(scene / "input_1.tif", tmp_path / "hard.tif")
    with pytest.raises(OutputError, match="the b and the a would be the same file"):
        check_distinct_outputs([("a", scene / "input_1.tif"), ("b", tmp_path / "hard.tif")])
