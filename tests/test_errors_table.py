"""One test per row of docs/errors.md: the CLI exits with code 2, prints the error on one
``error:`` line naming the file, raises the documented ``GmodiffError`` subtype, and leaves no
partial output behind.

Every test drives the real command line (``gmodiff.cli.main``). The type is checked by running
the same arguments once more with ``standalone_mode=False``, where the exception propagates.
"""

from __future__ import annotations

import errno
import os
import pathlib
import re
from pathlib import Path

import numpy as np
import pytest
import typer.main

from gmodiff import errors
from gmodiff.cli import app, main
from gmodiff.errors import (
    BackboneError,
    CheckpointError,
    ConfigError,
    ExposureError,
    HDRValueError,
    ImageReadError,
    OutputError,
    SceneError,
)
from gmodiff.io.hdr import write_hdr
from gmodiff.io.ldr import write_ldr
from gmodiff.io.scene import Scene, save_scene

DOCS = Path(__file__).resolve().parents[1] / "docs" / "errors.md"


# ------------------------------------------------------------------------------------ helpers


def _scene(h: int = 12, w: int = 16, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    radiance = (rng.random((h, w, 3)) * 0.9).astype(np.float32)
    times = np.array([1.0, 4.0, 16.0])
    frames = [(np.clip(radiance * t, 0, 1) ** (1 / 2.2)).astype(np.float32) for t in times]
    return Scene(frames=frames, exposure_times=times, ground_truth=radiance, name="s")


@pytest.fixture
def scene(tmp_path) -> Path:
    """A valid three-frame scene folder with ground truth."""
    return save_scene(_scene(), tmp_path / "scene")


def _files(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` (hidden and temp files included) with size and mtime."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file()}


def _command_has_option(command: str, option: str) -> bool:
    group = typer.main.get_command(app)
    sub = group.commands.get(command) if hasattr(group, "commands") else None
    return sub is not None and any(option in p.opts for p in sub.params)


def expect_user_error(capsys, argv: list[str], error_type: type, *mentions: str) -> str:
    """Run the CLI: exit 2, one ``error:`` line mentioning ``mentions``; raises ``error_type``."""
    capsys.readouterr()
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, f"exit code {code}; stderr: {captured.err}"
    assert "Traceback" not in captured.err
    lines = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, f"expected one error line, got: {captured.err!r}"
    for text in mentions:
        assert text in lines[0], f"{text!r} not in {lines[0]!r}"
    with pytest.raises(error_type):
        app(args=argv, prog_name="gmodiff", standalone_mode=False)
    capsys.readouterr()
    return lines[0]


def reconstruct_error(capsys, tmp_path, scene_dir: Path, error_type: type, *mentions: str,
                      extra: list[str] | None = None, name: str = "out.hdr") -> str:
    """``gmodiff reconstruct SCENE -o OUT/name``: user error and an output folder left empty."""
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    argv = ["reconstruct", str(scene_dir), "-o", str(out_dir / name), "--no-progress",
            *(extra or [])]
    line = expect_user_error(capsys, argv, error_type, *mentions)
    assert _files(out_dir) == {}, f"partial output left: {_files(out_dir)}"
    return line


# ------------------------------------------------------------------------------ scene folders


def test_scene_folder_missing(capsys, tmp_path):
    reconstruct_error(capsys, tmp_path, tmp_path / "nope", SceneError, "nope", "not found")


def test_no_scene_in_folder(capsys, tmp_path):
    """A folder without exposure.txt anywhere below it is not a scene (nor a folder of scenes)."""
    (tmp_path / "empty").mkdir()
    write_ldr(tmp_path / "empty" / "input_1.tif", _scene().frames[0])
    reconstruct_error(capsys, tmp_path, tmp_path / "empty", SceneError, "empty", "exposure.txt")


@pytest.mark.parametrize("n_frames", [2, 4])
def test_wrong_number_of_frames(capsys, tmp_path, scene, n_frames):
    if n_frames == 2:
        (scene / "input_3.tif").unlink()
    else:
        write_ldr(scene / "input_4.tif", _scene().frames[0])
    reconstruct_error(capsys, tmp_path, scene, SceneError, str(scene), f"found {n_frames}")


# ----------------------------------------------------------------------------------- images


def test_unreadable_frame(capsys, tmp_path, scene):
    (scene / "input_2.tif").write_bytes(b"II*\x00 this is not a tiff")
    reconstruct_error(capsys, tmp_path, scene, ImageReadError, "input_2.tif")


def test_frame_larger_than_the_size_cap(capsys, tmp_path, scene, monkeypatch):
    import gmodiff.io.ldr

    monkeypatch.setattr(gmodiff.io.ldr, "MAX_SIDE", 8)  # same check as 20000, on a tiny frame
    reconstruct_error(capsys, tmp_path, scene, ImageReadError, "input_1.tif", "limit")


def test_mismatched_frame_sizes(capsys, tmp_path, scene):
    write_ldr(scene / "input_3.tif", _scene(h=10).frames[2])
    reconstruct_error(capsys, tmp_path, scene, SceneError, "input_3.tif", "differs")


def test_mixed_bit_depths(capsys, tmp_path, scene):
    write_ldr(scene / "input_2.tif", _scene().frames[1], bit_depth=8)
    reconstruct_error(capsys, tmp_path, scene, SceneError, "input_2.tif", "8-bit")


# ------------------------------------------------------------------------------ exposure data


@pytest.mark.parametrize("text,mention", [
    ("0 two 4\n", "non-numeric"),
    ("0 2\n", "2 exposure values for 3 frames"),
    ("0 4 2\n", "not strictly increasing"),
    ("0 nan 4\n", "not finite"),
    ("0 2 400\n", "span"),
], ids=["non-numeric", "count", "order", "nan", "span"])
def test_bad_exposure_data(capsys, tmp_path, scene, text, mention):
    (scene / "exposure.txt").write_text(text)
    reconstruct_error(capsys, tmp_path, scene, ExposureError, "exposure.txt", mention)


def test_exposure_file_too_large(capsys, tmp_path, scene):
    (scene / "exposure.txt").write_bytes(b"0 2 4 " * 20000)
    reconstruct_error(capsys, tmp_path, scene, ExposureError, "exposure.txt", "bytes")


# ------------------------------------------------- image-file brackets (reconstruct a.jpg b.jpg ...)


@pytest.fixture
def bracket(tmp_path) -> list[Path]:
    """Three 32x32 JPEGs at 1/240, 1/60 and 1/15 s (EXIF exposure times)."""
    from bracket_helpers import exif_bytes, save_jpeg

    return [save_jpeg(tmp_path / f"frame{k}.jpg", np.full((32, 32, 3), value, np.uint8),
                      exif_bytes(seconds))
            for k, (value, seconds) in enumerate([(40, 1 / 240), (120, 1 / 60), (220, 1 / 15)])]


def _bracket_error(capsys, tmp_path, files, error_type, *mentions, extra=()):
    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    argv = ["reconstruct", *map(str, files), "-o", str(out_dir / "out.exr"), "--no-progress",
            *extra]
    expect_user_error(capsys, argv, error_type, *mentions)
    assert _files(out_dir) == {}


@pytest.mark.parametrize("flags,mention", [
    (["--ev", "a,b,c"], "comma-separated numbers"),
    (["--ev", "0,2"], "2 values for 3 images"),
    (["--ev", "0,nan,2"], "finite"),
    (["--times", "0,1,2"], "positive"),
    (["--ev", "0,0,0"], "same exposure"),
], ids=["ev-text", "ev-count", "ev-nan", "times-zero", "ev-equal"])
def test_bracket_bad_exposure_flags(capsys, tmp_path, bracket, flags, mention):
    _bracket_error(capsys, tmp_path, bracket, ExposureError, mention, extra=flags)


def test_bracket_without_exif_exposure(capsys, tmp_path, bracket):
    from bracket_helpers import save_jpeg

    plain = save_jpeg(tmp_path / "plain.jpg", np.full((32, 32, 3), 90, np.uint8))
    _bracket_error(capsys, tmp_path, [bracket[0], plain, bracket[2]], ExposureError,
                   "plain.jpg", "--ev")


def test_bracket_frames_of_different_sizes(capsys, tmp_path, bracket):
    from bracket_helpers import exif_bytes, save_jpeg

    tall = save_jpeg(tmp_path / "tall.jpg", np.full((40, 32, 3), 90, np.uint8),
                     exif_bytes(1 / 30))
    _bracket_error(capsys, tmp_path, [*bracket[:2], tall], SceneError, "tall.jpg", "same size")


# ----------------------------------------------------------------------- radiance (HDR files)


def test_nan_in_ground_truth(capsys, tmp_path, scene):
    import OpenEXR

    gt = np.full((12, 16, 3), 0.1, np.float32)
    gt[2, 3] = np.nan
    gt[4, 5] = np.inf
    (scene / "HDRImg.hdr").unlink()
    OpenEXR.File({}, {"RGB": gt}).write(str(scene / "HDRImg.exr"))
    reconstruct_error(capsys, tmp_path, scene, HDRValueError, "HDRImg.exr", "NaN or infinite")


def test_corrupt_ground_truth(capsys, tmp_path, scene):
    data = (scene / "HDRImg.hdr").read_bytes()
    (scene / "HDRImg.hdr").write_bytes(data[: len(data) // 2])
    reconstruct_error(capsys, tmp_path, scene, ImageReadError, "HDRImg.hdr", "corrupt")


def test_ground_truth_size_mismatch(capsys, tmp_path, scene):
    write_hdr(scene / "HDRImg.hdr", _scene(h=10).ground_truth)
    reconstruct_error(capsys, tmp_path, scene, SceneError, "HDRImg.hdr", "ground truth")


def test_nan_in_prediction_for_eval(capsys, tmp_path, scene):
    import OpenEXR

    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    pred = np.full((12, 16, 3), 0.1, np.float32)
    pred[0, 0] = np.nan
    OpenEXR.File({}, {"RGB": pred}).write(str(pred_dir / "scene.exr"))
    report = tmp_path / "report.json"
    expect_user_error(capsys, ["eval", "--pred", str(pred_dir), "--gt", str(scene), "-o",
                               str(report), "--no-progress"], HDRValueError, "scene.exr")
    assert not report.exists()


def _eval_argv(tmp_path, scene: Path, extra: str) -> list[str]:
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir(exist_ok=True)
    write_hdr(pred_dir / "scene.exr", np.full((12, 16, 3), 0.1, np.float32), half=False)
    return ["eval", "--pred", str(pred_dir), "--gt", str(scene), "--extra", extra,
            "-o", str(tmp_path / "report.csv"), "--no-progress"]


def test_metrics_env_missing_for_eval(capsys, tmp_path, scene, monkeypatch):
    from gmodiff.errors import MetricsEnvError
    from gmodiff.metrics import cvvdp_env

    monkeypatch.delenv(cvvdp_env.METRICS_PYTHON_VAR, raising=False)
    monkeypatch.setattr(cvvdp_env, "metrics_env_candidates", lambda: [tmp_path / ".venv-metrics"])
    expect_user_error(capsys, _eval_argv(tmp_path, scene, "cvvdp,flip"), MetricsEnvError,
                      ".venv-metrics", "make metrics-env")
    assert not (tmp_path / "report.csv").exists()


def test_unknown_extra_metric(capsys, tmp_path, scene):
    expect_user_error(capsys, _eval_argv(tmp_path, scene, "flip,vdp"), ConfigError, "'vdp'",
                      "cvvdp, flip")
    assert not (tmp_path / "report.csv").exists()


def test_motion_mask_size_mismatch(capsys, tmp_path, scene):
    write_ldr(scene / "motion_mask.png", np.zeros((8, 8, 3), np.float32), bit_depth=8)
    reconstruct_error(capsys, tmp_path, scene, SceneError, "motion_mask.png", "motion mask")


def test_da_mask_size_mismatch_for_eval(capsys, tmp_path, scene):
    pred_dir = tmp_path / "pred"
    pred_dir.mkdir()
    write_hdr(pred_dir / "scene.exr", np.full((12, 16, 3), 0.1, np.float32))
    write_ldr(pred_dir / "scene.mask.png", np.zeros((4, 4, 3), np.float32), bit_depth=8)
    report = tmp_path / "report.json"
    expect_user_error(capsys, ["eval", "--pred", str(pred_dir), "--gt", str(scene), "-o",
                               str(report), "--no-progress"], SceneError, "scene.mask.png", "DA mask")
    assert not report.exists()


# ----------------------------------------------------------------------------------- outputs


def test_unsupported_output_extension(capsys, tmp_path, scene):
    reconstruct_error(capsys, tmp_path, scene, OutputError, "out.png", "extension",
                      name="out.png")


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_at_rename(capsys, tmp_path, scene, monkeypatch):
    """ENOSPC from the final rename (e.g. a full metadata journal): no file, no temp file."""
    monkeypatch.setattr(os, "replace", _enospc)
    reconstruct_error(capsys, tmp_path, scene, OutputError, "out.hdr", "disk full")


def test_disk_full_while_writing(capsys, tmp_path, scene, monkeypatch):
    """ENOSPC after half the bytes reached the temp file: the half-written temp is removed."""
    real_write_bytes = pathlib.Path.write_bytes

    def half_then_full(self, data):
        real_write_bytes(self, bytes(data)[: len(data) // 2])
        _enospc()

    monkeypatch.setattr(pathlib.Path, "write_bytes", half_then_full)
    reconstruct_error(capsys, tmp_path, scene, OutputError, "out.hdr", "disk full")


def _deny_writes_in(monkeypatch, name: str) -> None:
    """Make os.access say a folder called ``name`` may be read but not written."""
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if Path(p).name == name and
                        mode & os.W_OK else real_access(p, mode, **kw))


def test_output_folder_not_writable(capsys, tmp_path, scene, monkeypatch):
    """Checked before any compute (the tests run as root, where chmod does not deny: os.access
    is made to say no, as it does for a user in a folder they may not write)."""
    _deny_writes_in(monkeypatch, "out")
    def never(*args, **kwargs):
        raise AssertionError("reconstructed before checking the output folder")

    monkeypatch.setattr("gmodiff.jobs.reconstruct_one", never)
    reconstruct_error(capsys, tmp_path, scene, OutputError, "out.hdr", "no permission")


def test_batch_output_folder_not_writable(capsys, tmp_path, scene, monkeypatch):
    """A folder of scenes into a folder we may not write: refused before the first scene."""
    _deny_writes_in(monkeypatch, "out")
    (tmp_path / "scenes").mkdir()
    scene.rename(tmp_path / "scenes" / scene.name)
    (tmp_path / "out").mkdir()
    expect_user_error(capsys, ["reconstruct", str(tmp_path / "scenes"), "-o", str(tmp_path / "out"),
                               "--no-progress"], OutputError, "out", "no permission")
    assert _files(tmp_path / "out") == {}


def test_output_path_under_a_file(capsys, tmp_path, scene):
    blocker = tmp_path / "out" / "notes.txt"
    blocker.parent.mkdir()
    blocker.write_text("a file, not a folder")
    line = expect_user_error(capsys, ["reconstruct", str(scene), "-o", str(blocker / "out.hdr"),
                                      "--no-progress"], OutputError, "out.hdr", "not a folder")
    assert "notes.txt" in line and blocker.read_text() == "a file, not a folder"


@pytest.mark.parametrize("fail", ["mkdir", "mkstemp"])
def test_atomic_write_permission_denied(tmp_path, monkeypatch, fail):
    """(library) EACCES creating the folder or the temp file: OutputError naming the target."""
    import tempfile

    from gmodiff.io.atomic import write_bytes_atomic

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    if fail == "mkdir":
        monkeypatch.setattr(pathlib.Path, "mkdir", denied)
        target = tmp_path / "new" / "result.hdr"
    else:
        monkeypatch.setattr(tempfile, "mkstemp", denied)
        target = tmp_path / "result.hdr"
    with pytest.raises(OutputError, match="result.hdr.*Permission denied"):
        write_bytes_atomic(target, b"data")
    monkeypatch.undo()
    assert list(tmp_path.rglob("*")) == []


@pytest.mark.parametrize("fail", ["write", "replace"])
def test_atomic_write_leaves_nothing_on_enospc(tmp_path, monkeypatch, fail):
    """gmodiff.io.atomic itself: OutputError, old file untouched, no temp file left."""
    from gmodiff.io.atomic import write_bytes_atomic

    target = tmp_path / "result.hdr"
    target.write_bytes(b"previous result")
    if fail == "replace":
        monkeypatch.setattr(os, "replace", _enospc)
    else:
        monkeypatch.setattr(pathlib.Path, "write_bytes",
                            lambda self, data: (open(self, "wb").write(data[:3]), _enospc()))
    with pytest.raises(OutputError, match="disk full"):
        write_bytes_atomic(target, b"new result that does not fit")
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.hdr"]
    assert target.read_bytes() == b"previous result"


# ------------------------------------------------------------------- training: config, checkpoints


def _train_config(tmp_path: Path, scenes_root: Path, **overrides) -> Path:
    import yaml

    values = dict(stage=1, model="tiny", train_scenes=[str(scenes_root)], crops_per_scene=2,
                  crop_size=32, batch_size=2, max_steps=1, log_every=1, val_every=0,
                  checkpoint_every=1, seed=0, out_dir=str(tmp_path / "run"))
    values.update(overrides)
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """One finished 1-step tiny training run: (config path, run folder)."""
    tmp = tmp_path_factory.mktemp("train")
    save_scene(_scene(40, 40), tmp / "scenes" / "a")
    config = _train_config(tmp, tmp / "scenes")
    assert main(["train", "dareg", "--stage", "1", "--config", str(config), "--no-progress"]) == 0
    return config, tmp / "run"


def _train_argv(config: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "dareg", "--stage", "1", "--config", str(config), "--out", str(out),
            "--no-progress", *extra]


@pytest.mark.parametrize("content,mention", [
    (None, "not found"),
    ("stage: [1\n", "invalid YAML"),
    ("stage: 1\nlearning_rate: 0.1\n", "learning_rate"),
    (b"stage: 1\nmodel: \xff\xfe\n", "not UTF-8"),
], ids=["missing", "bad-yaml", "unknown-key", "not-utf8"])
def test_bad_config_file(capsys, tmp_path, content, mention):
    config = tmp_path / "config.yaml"
    if isinstance(content, bytes):
        config.write_bytes(content)
    elif content is not None:
        config.write_text(content)
    out = tmp_path / "run"
    expect_user_error(capsys, _train_argv(config, out), ConfigError, "config.yaml", mention)
    assert not out.exists()


def _copy_run(run: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(run, destination)
    return destination


def test_resume_without_checkpoint(capsys, tmp_path, trained_run):
    config, _ = trained_run
    out = tmp_path / "fresh"
    expect_user_error(capsys, _train_argv(config, out, "--resume"), CheckpointError,
                      "checkpoints", "nothing to resume")
    assert _files(out) == {}


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_checkpoint(capsys, tmp_path, trained_run, damage):
    config, run = trained_run
    out = _copy_run(run, tmp_path / "run")
    checkpoint = sorted((out / "checkpoints").glob("checkpoint-*.pt"))[-1]
    data = checkpoint.read_bytes()
    checkpoint.write_bytes(b"\x00garbage" * 10 if damage == "garbage" else data[: len(data) // 2])
    before = _files(out)
    expect_user_error(capsys, _train_argv(config, out, "--resume", "--max-steps", "2"),
                      CheckpointError, checkpoint.name, "cannot read checkpoint")
    assert _files(out) == before, "a failed resume changed the run folder"


def test_checkpoint_of_another_model_names_the_keys(capsys, tmp_path, trained_run):
    """Resuming with a different architecture lists missing/unexpected/mismatched keys."""
    config, run = trained_run
    out = _copy_run(run, tmp_path / "run")
    import yaml

    values = yaml.safe_load(config.read_text())
    values["model_overrides"] = {"channels": [8, 16, 32, 64, 64]}
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(values))
    before = _files(out)
    line = expect_user_error(capsys, ["train", "dareg", "--stage", "1", "--config", str(other),
                                      "--out", str(out), "--resume", "--max-steps", "2",
                                      "--no-progress"], CheckpointError, "checkpoint-")
    assert re.search(r"shape mismatch\w*: \S+ \(\d+", line) and ".weight" in line, line
    assert _files(out) == before


def test_stage2_init_weights_of_another_model_names_the_keys(capsys, tmp_path, trained_run):
    config, run = trained_run
    import yaml

    from gmodiff.models.dareg import DaReg, DaRegConfig

    wrong = tmp_path / "wrong"
    DaReg(DaRegConfig.tiny(channels=(8, 16, 32, 64, 64), mask_head=False)).save_pretrained(wrong)
    # No stored config, so the preset architecture is built and the weights must not fit it.
    (wrong / "config.json").unlink()
    values = yaml.safe_load(config.read_text())
    values.update(stage=2, init_weights=str(wrong))
    stage2 = tmp_path / "stage2.yaml"
    stage2.write_text(yaml.safe_dump(values))
    out = tmp_path / "s2"
    line = expect_user_error(capsys, ["train", "dareg", "--stage", "2", "--config", str(stage2),
                                      "--out", str(out), "--no-progress"], CheckpointError,
                             "wrong")
    assert "shape mismatch" in line and ".weight" in line, line
    assert not out.exists()


# ------------------------------------------------- GMODiff weights, backbone folders, memory


needs_weights_option = pytest.mark.skipif(
    not _command_has_option("reconstruct", "--weights"),
    reason="gmodiff reconstruct has no --weights/--backbone options yet")


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    from gmodiff.pipeline.pipeline import GMODiffPipeline

    folder = tmp_path_factory.mktemp("pipe") / "tiny"
    GMODiffPipeline.tiny(seed=0).save_pretrained(folder)
    return folder


@needs_weights_option
@pytest.mark.parametrize("damage,mention", [
    ("other-size", "shape mismatches: decoders."),
    ("empty-folder", "no DaReg weights here"),
    ("corrupt-pth", "cannot read checkpoint"),
])
def test_dareg_weights_bad(capsys, tmp_path, scene, damage, mention):
    import json

    from gmodiff.models.dareg import DaReg, DaRegConfig

    weights = tmp_path / "dareg"
    if damage == "other-size":
        DaReg(DaRegConfig.tiny(mask_head=False)).save_pretrained(weights)
        config = json.loads((weights / "config.json").read_text())
        config["channels"] = [8, 16, 32, 64, 64]  # config and weights disagree
        (weights / "config.json").write_text(json.dumps(config))
    elif damage == "empty-folder":
        weights.mkdir()
    else:
        weights = tmp_path / "dareg_mask.pth"
        weights.write_bytes(b"PK\x03\x04 not a torch file")
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, weights.name, mention,
                      extra=["--method", "dareg", "--weights", str(weights)])


@needs_weights_option
def test_gmodiff_without_weights(capsys, tmp_path, scene, monkeypatch):
    from gmodiff.pipeline import bundled as pipeline_module
    # With the bundled default model installed, no --weights means "use it": remove it here.
    monkeypatch.setattr(pipeline_module, "WEIGHTS_DIR", tmp_path / "no-bundle")
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, "--weights",
                      extra=["--method", "gmodiff"])


@needs_weights_option
def test_gmodiff_weights_folder_without_weights(capsys, tmp_path, scene):
    (tmp_path / "empty-weights").mkdir()
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, "empty-weights",
                      extra=["--method", "gmodiff", "--weights", str(tmp_path / "empty-weights")])


@needs_weights_option
@pytest.mark.parametrize("damage,mention", [
    ("other-rank", "shape mismatch ['unet."),
    ("bad-json", "unreadable pipeline config"),
])
def test_gmodiff_pipeline_weights_bad(capsys, tmp_path, scene, tiny_pipeline, damage, mention):
    import json
    import shutil

    from gmodiff.pipeline.pipeline import PIPELINE_CONFIG

    weights = shutil.copytree(tiny_pipeline, tmp_path / "pipe")
    if damage == "other-rank":
        config = json.loads((weights / PIPELINE_CONFIG).read_text())
        config["refiner"]["rank_unet"] *= 2  # the stored LoRA weights no longer fit
        (weights / PIPELINE_CONFIG).write_text(json.dumps(config))
    else:
        (weights / PIPELINE_CONFIG).write_text("{not json")
    reconstruct_error(capsys, tmp_path, scene, CheckpointError, "pipe", mention,
                      extra=["--method", "gmodiff", "--weights", str(weights)])


@needs_weights_option
@pytest.mark.parametrize("damage,mention", [
    ("missing", "does not exist"),
    ("no-vae", "no vae/ sub-folder"),
    ("no-unet-weights", "unet/diffusion_pytorch_model"),
    ("no-scheduler-config", "scheduler/scheduler_config.json"),
])
def test_backbone_folder_missing_or_partial(capsys, tmp_path, scene, tiny_pipeline, damage,
                                           mention):
    import shutil

    from gmodiff.models.backbone import load_backbone, save_backbone_folder

    backbone = tmp_path / "sd21"
    if damage != "missing":
        save_backbone_folder(load_backbone("tiny"), backbone)
    if damage == "no-vae":
        shutil.rmtree(backbone / "vae")
    elif damage == "no-unet-weights":
        for weights in (backbone / "unet").glob("diffusion_pytorch_model*"):
            weights.unlink()
    elif damage == "no-scheduler-config":
        (backbone / "scheduler" / "scheduler_config.json").unlink()
    reconstruct_error(capsys, tmp_path, scene, BackboneError, "sd21", mention,
                      extra=["--method", "gmodiff", "--weights", str(tiny_pipeline),
                             "--backbone", str(backbone)])


@needs_weights_option
@pytest.mark.parametrize("kind,tile,suggested", [("cuda", [], "the pipeline's tile"),
                                                 ("cpu", ["--tile", "32"], "--tile 16")])
def test_out_of_memory_suggests_tile(capsys, tmp_path, scene, tiny_pipeline, monkeypatch, kind,
                                     tile, suggested):
    import json

    import torch

    from gmodiff.pipeline.pipeline import PIPELINE_CONFIG, GMODiffPipeline

    if not tile:  # untiled run: suggest the pipeline's own tile size
        config = json.loads((tiny_pipeline / PIPELINE_CONFIG).read_text())
        suggested = f"--tile {config['tile']['latent_tile']}"

    def out_of_memory(self, *args, **kwargs):
        if kind == "cpu":
            raise MemoryError()
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(GMODiffPipeline, "predict", out_of_memory)
    reconstruct_error(capsys, tmp_path, scene, errors.OutOfMemoryError, "scene", "out of memory",
                      suggested, extra=["--method", "gmodiff", "--weights", str(tiny_pipeline),
                                        *tile])


def test_memory_budget_too_small_for_the_image(capsys, tmp_path, scene):
    reconstruct_error(capsys, tmp_path, scene, errors.OutOfMemoryError, "scene", "--max-memory",
                      extra=["--method", "gmodiff", "--max-memory", "64M"])


# --------------------------------------------------------------------------- the table itself


# ------------------------------------------------------------------------ camera raw brackets


@pytest.fixture
def raw_files(tmp_path) -> list[Path]:
    """A 3-frame 12-bit Bayer DNG bracket (tests/raw_helpers.py)."""
    from raw_helpers import raw_bracket, smooth_radiance

    return raw_bracket(tmp_path / "raw", smooth_radiance(32, 48), (1.0, 4.0, 16.0))


@pytest.mark.parametrize("damage", ["truncated", "garbage", "tiff-renamed"])
def test_raw_file_corrupt_truncated_or_unsupported(capsys, tmp_path, raw_files, damage):
    bad = raw_files[1]
    data = bad.read_bytes()
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"not a raw file" * 40)
    else:
        import tifffile

        bad = bad.with_suffix(".nef")
        raw_files[1].unlink()
        tifffile.imwrite(bad, np.zeros((40, 40, 3), np.uint8))
    files = [raw_files[0], bad, raw_files[2]]
    _bracket_error(capsys, tmp_path, files, ImageReadError, bad.name,
                   extra=["--method", "deghost"])


def test_bracket_mixing_raw_and_jpeg(capsys, tmp_path, raw_files, bracket):
    _bracket_error(capsys, tmp_path, [raw_files[0], raw_files[1], bracket[2]], SceneError,
                   bracket[2].name, "mixes raw")


def test_group_without_a_bracket(capsys, tmp_path, raw_files):
    folder = tmp_path / "one"
    folder.mkdir()
    raw_files[0].rename(folder / raw_files[0].name)
    out_dir = tmp_path / "out"
    expect_user_error(capsys, ["reconstruct", str(folder), "--group", "-o", str(out_dir)],
                      SceneError, "one", "no bracket")
    assert not out_dir.exists()


def test_every_row_of_the_table_has_its_test():
    """docs/errors.md names a test and an error type per row; both must exist."""
    text = DOCS.read_text(encoding="utf-8")
    rows = [line for line in text.splitlines() if line.startswith("| ") and "`test_" in line]
    assert len(rows) >= 20
    tests = set(re.findall(r"`(test_\w+)`", "\n".join(rows)))
    import test_errors_hardening  # the hardening cases (issue #15) live in their own module

    here = {name for name in [*globals(), *vars(test_errors_hardening)]
            if name.startswith("test_") and name != "test_errors_hardening"}
    assert tests - here == set(), f"rows name tests that do not exist: {tests - here}"
    assert here - tests - {"test_every_row_of_the_table_has_its_test"} == set(), \
        f"tests with no row: {here - tests}"
    for row in rows:
        type_column = row.split("|")[2]
        for name in re.findall(r"`(\w+)`", type_column):
            assert isinstance(getattr(errors, name, None), type), f"unknown error type {name}"
