"""Scene folders: load/save round trip, discovery, and one test per bad-input case."""

from __future__ import annotations

import numpy as np
import pytest

from gmodiff.errors import ExposureError, HDRValueError, ImageReadError, OutputError, SceneError
from gmodiff.io.hdr import write_exr, write_hdr
from gmodiff.io.ldr import write_ldr
from gmodiff.io.scene import Scene, find_scenes, load_scene, save_scene


def _scene(h=10, w=14, seed=0, with_gt=True) -> Scene:
    rng = np.random.default_rng(seed)
    radiance = (rng.random((h, w, 3)) * 0.9).astype(np.float32)
    times = np.array([1.0, 4.0, 16.0])
    frames = [np.clip(radiance * t, 0, 1) ** (1 / 2.2) for t in times]
    return Scene(frames=[f.astype(np.float32) for f in frames], exposure_times=times,
                 ground_truth=radiance if with_gt else None, name="s")


def _folder(tmp_path, name="scene", **kw):
    return save_scene(_scene(**kw), tmp_path / name)


def test_save_load_round_trip(tmp_path):
    scene = _scene()
    folder = save_scene(scene, tmp_path / "a")
    assert sorted(p.name for p in folder.iterdir()) == [
        "HDRImg.hdr", "exposure.txt", "input_1.tif", "input_2.tif", "input_3.tif"]
    assert (folder / "exposure.txt").read_text().split() == ["0", "2", "4"]
    loaded = load_scene(folder)
    assert loaded.name == "a" and loaded.root == folder and loaded.reference_index == 1
    np.testing.assert_allclose(loaded.exposure_times, [1, 4, 16])
    for got, want in zip(loaded.frames, scene.frames):
        assert got.dtype == np.float32 and np.abs(got - want).max() <= 0.5 / 65535 + 1e-7
    rel = np.abs(loaded.ground_truth - scene.ground_truth) / scene.ground_truth.max(2, keepdims=True)
    assert rel.max() <= 1 / 256 + 1e-6
    assert [p.name for p in loaded.frame_paths] == ["input_1.tif", "input_2.tif", "input_3.tif"]
    assert [p.name for p in tmp_path.iterdir()] == ["a"]  # no temp folders left


def test_any_three_images_sorted_by_name_and_label_gt(tmp_path):
    scene = _scene()
    folder = tmp_path / "kal"
    folder.mkdir()
    for name, frame in zip(["b_10.png", "b_2.png", "b_9.png"], [scene.frames[2], scene.frames[0],
                                                               scene.frames[1]]):
        write_ldr(folder / name, frame, bit_depth=8)
    (folder / "exposure.txt").write_text("-1.5\n0.5\n2.5\n")
    write_hdr(folder / "label.hdr", scene.ground_truth)
    (folder / "notes.txt").write_text("ignored")
    loaded = load_scene(folder)
    assert [p.name for p in loaded.frame_paths] == ["b_2.png", "b_9.png", "b_10.png"]  # natural
    np.testing.assert_allclose(loaded.exposure_times, [1, 4, 16])
    assert np.abs(loaded.frames[1] - scene.frames[1]).max() <= 0.5 / 255 + 1e-7
    assert loaded.ground_truth is not None


def test_scene_without_ground_truth(tmp_path):
    loaded = load_scene(_folder(tmp_path, with_gt=False))
    assert loaded.ground_truth is None


def test_find_scenes(tmp_path):
    root = tmp_path / "root"
    for name in ("s10", "s2", "sub/s1"):
        save_scene(_scene(), root / name)
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()
    (root / ".hidden" / "exposure.txt").write_text("0 1 2")
    assert [p.relative_to(root).as_posix() for p in find_scenes(root)] == ["s2", "s10", "sub/s1"]
    assert find_scenes(root / "s2") == [root / "s2"]
    with pytest.raises(SceneError, match="nope"):
        find_scenes(tmp_path / "nope")


def test_save_refuses_non_empty_folder_unless_overwrite(tmp_path):
    folder = _folder(tmp_path)
    with pytest.raises(OutputError, match="scene"):
        save_scene(_scene(seed=1), folder)
    save_scene(_scene(seed=1), folder, overwrite=True)
    assert load_scene(folder).frames[0].shape == (10, 14, 3)
    assert [p.name for p in tmp_path.iterdir()] == ["scene"]


# ------------------------------------------------------------------------------ bad input


def test_bad_missing_exposure_file(tmp_path):
    folder = _folder(tmp_path)
    (folder / "exposure.txt").unlink()
    with pytest.raises(ExposureError, match="exposure.txt") as err:
        load_scene(folder)
    assert "\n" not in str(err.value) and "stops" in str(err.value)


def test_bad_wrong_number_of_exposures(tmp_path):
    folder = _folder(tmp_path)
    (folder / "exposure.txt").write_text("0\n2\n")
    with pytest.raises(ExposureError, match=r"exposure.txt.*2 exposure values for 3 frames"):
        load_scene(folder)


def test_bad_non_numeric_exposure(tmp_path):
    folder = _folder(tmp_path)
    (folder / "exposure.txt").write_text("0\ntwo\n4\n")
    with pytest.raises(ExposureError, match=r"exposure.txt.*non-numeric"):
        load_scene(folder)


@pytest.mark.parametrize("values", ["0 4 2", "0 2 2", "0 nan 4"])
def test_bad_non_increasing_exposures(tmp_path, values):
    folder = _folder(tmp_path)
    (folder / "exposure.txt").write_text(values)
    with pytest.raises(ExposureError, match="exposure.txt"):
        load_scene(folder)


def test_bad_frames_of_different_sizes(tmp_path):
    folder = _folder(tmp_path)
    write_ldr(folder / "input_3.tif", np.zeros((10, 12, 3), np.float32))
    with pytest.raises(SceneError, match=r"input_3.tif.*frame size 12x10"):
        load_scene(folder)


def test_bad_unreadable_frame(tmp_path):
    folder = _folder(tmp_path)
    (folder / "input_2.tif").write_bytes(b"this is not a tiff")
    with pytest.raises(ImageReadError, match="input_2.tif"):
        load_scene(folder)


def test_bad_nan_in_ground_truth(tmp_path):
    folder = _folder(tmp_path, with_gt=False)
    import OpenEXR

    gt = np.full((10, 14, 3), 0.1, np.float32)
    gt[2, 3] = np.nan
    OpenEXR.File({}, {"RGB": gt}).write(str(folder / "HDRImg.exr"))
    with pytest.raises(HDRValueError, match="HDRImg.exr"):
        load_scene(folder)


def test_bad_mixed_bit_depths(tmp_path):
    folder = _folder(tmp_path)
    write_ldr(folder / "input_2.tif", _scene().frames[1], bit_depth=8)
    with pytest.raises(SceneError, match=r"input_2.tif.*8-bit"):
        load_scene(folder)


@pytest.mark.parametrize("n_frames", [2, 4])
def test_bad_not_three_frames(tmp_path, n_frames):
    folder = _folder(tmp_path)
    if n_frames == 2:
        (folder / "input_3.tif").unlink()
    else:
        write_ldr(folder / "input_4.tif", _scene().frames[0])
    with pytest.raises(SceneError, match=f"found {n_frames}"):
        load_scene(folder)


def test_bad_missing_folder(tmp_path):
    with pytest.raises(SceneError, match="nowhere"):
        load_scene(tmp_path / "nowhere")


def test_failed_save_leaves_nothing(tmp_path):
    scene = _scene()
    scene.ground_truth[0, 0, 0] = np.inf
    with pytest.raises(HDRValueError, match="HDRImg.hdr"):
        save_scene(scene, tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_exr_ground_truth_is_found(tmp_path):
    folder = _folder(tmp_path, with_gt=False)
    write_exr(folder / "HDRImg.exr", np.full((10, 14, 3), 0.2, np.float32))
    assert load_scene(folder).ground_truth.mean() == pytest.approx(0.2, rel=1e-3)
