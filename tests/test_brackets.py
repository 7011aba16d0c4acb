"""Plain brackets → Scene: exposure sources, sorting, reference and frame-selection rules, errors."""

from __future__ import annotations

import numpy as np
import pytest
from bracket_helpers import exif_bytes, expose, save_jpeg, scene_radiance, write_bracket

from gmodiff.bracket.prepare import (BracketOptions, choose_reference, load_bracket, number_list,
                                     select_triplet)
from gmodiff.errors import ExposureError, ImageReadError, SceneError


def _plain_bracket(folder, stops, h=32, w=48):
    rad = scene_radiance(h, w) * 4
    return [save_jpeg(folder / f"f{i}.jpg", expose(rad, 2.0 ** s), exif_bytes(2.0 ** s / 100))
            for i, s in enumerate(stops)]


def test_exif_bracket_is_sorted_with_middle_reference(tmp_path):
    paths, _, _ = write_bracket(tmp_path)  # files given in the order 0 EV, -2 EV, +2 EV
    scene, selection = load_bracket(paths)
    np.testing.assert_allclose(scene.exposure_times, [1, 4, 16], rtol=1e-3)  # EXIF rationals
    assert scene.reference_index == 1
    assert [p.name for p in scene.frame_paths] == ["IMG_00.jpg", "IMG_01.jpg", "IMG_02.jpg"]
    assert selection.exposure_source == "exif"
    assert "reference: IMG_01.jpg (+0.0 EV)" in selection.describe()


def test_ev_flag_overrides_missing_exif(tmp_path):
    paths, _, _ = write_bracket(tmp_path, with_exif=False)
    with pytest.raises(ExposureError, match="`ev`"):
        load_bracket(paths)
    scene, selection = load_bracket(paths, BracketOptions(ev=(0, -2, 2)))
    np.testing.assert_allclose(scene.exposure_times, [1, 4, 16])
    assert selection.exposure_source == "ev"
    scene, _ = load_bracket(paths, BracketOptions(times=(0.02, 0.005, 0.08)))
    np.testing.assert_allclose(scene.exposure_times, [1, 4, 16])


@pytest.mark.parametrize("stops, expected", [
    ([-3, -2, -1, 0, 1, 2, 3], (0, 3, 6)),     # ±3 stops: the target gap
    ([-2, -1, 0, 1, 2], (0, 2, 4)),            # nothing at 3: the closest (2) wins over 1
    ([-4, -2, 0, 2, 4], (0, 2, 4)),            # 2 and 4 tie around 3: the farther one
    ([0, 2], (0, 0, 1)),                       # two frames: shorter is reference, reused as short
    ([0, 1, 3, 6], (0, 2, 3)),                 # middle of 0..6 is 3
])
def test_selection_rule(stops, expected):
    stops = np.array(stops, float)
    ref = choose_reference(stops)
    assert select_triplet(stops, ref) == expected


def test_more_than_three_frames_reports_unused(tmp_path):
    paths = _plain_bracket(tmp_path, [-2, -1, 0, 1, 2])
    scene, selection = load_bracket(paths)
    assert [p.name for p in scene.frame_paths] == ["f0.jpg", "f2.jpg", "f4.jpg"]
    assert "not used: f1.jpg, f3.jpg" in selection.describe()


def test_two_frames_reuse_the_reference(tmp_path):
    paths = _plain_bracket(tmp_path, [0, 2])
    scene, selection = load_bracket(paths)
    assert scene.frames[0] is scene.frames[1]
    np.testing.assert_allclose(scene.exposure_times, [1, 1, 4])
    assert "reference reused" in selection.describe()


def test_explicit_reference_is_one_based_in_argument_order(tmp_path):
    paths = _plain_bracket(tmp_path, [2, 0, -2])
    scene, _ = load_bracket(paths, BracketOptions(reference=1))  # the +2 EV file
    assert scene.frame_paths[1].name == "f0.jpg"
    assert scene.frames[2] is scene.frames[1]  # nothing longer: reference reused
    with pytest.raises(SceneError, match="out of range"):
        load_bracket(paths, BracketOptions(reference=4))


def test_single_frame(tmp_path):
    paths = _plain_bracket(tmp_path, [0])
    with pytest.raises(SceneError, match="at least 2"):
        load_bracket(paths)


def test_duplicate_exposures(tmp_path):
    paths = _plain_bracket(tmp_path, [0, 0.02, 2])
    with pytest.raises(ExposureError, match="same exposure"):
        load_bracket(paths)


def test_different_sizes(tmp_path):
    paths = _plain_bracket(tmp_path, [-2, 0])
    rad = scene_radiance(40, 48) * 4
    paths.append(save_jpeg(tmp_path / "big.jpg", expose(rad, 4), exif_bytes(4 / 100)))
    with pytest.raises(SceneError, match="same size"):
        load_bracket(paths)


def test_different_orientation_after_exif_rotation(tmp_path):
    paths = _plain_bracket(tmp_path, [-2, 0])
    rad = scene_radiance(32, 48) * 4
    paths.append(save_jpeg(tmp_path / "rot.jpg", expose(rad, 4), exif_bytes(4 / 100, orientation=6)))
    with pytest.raises(SceneError, match="orientation"):
        load_bracket(paths)


def test_all_saturated(tmp_path):
    white = np.full((16, 16, 3), 255, np.uint8)
    paths = [save_jpeg(tmp_path / f"w{i}.jpg", white, exif_bytes(t)) for i, t in enumerate((0.01, 0.04))]
    with pytest.raises(SceneError, match="saturated"):
        load_bracket(paths)


def test_corrupt_jpeg(tmp_path):
    paths = _plain_bracket(tmp_path, [-2, 0, 2])
    data = paths[1].read_bytes()
    paths[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError) as err:
        load_bracket(paths, BracketOptions(ev=(-2, 0, 2)))
    assert "f1.jpg" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.parametrize("kwargs, match", [
    ({"ev": "-2,0"}, "2 values for 3"),
    ({"ev": "a,b,c"}, "comma-separated"),
    ({"ev": "0,nan,2"}, "finite"),
    ({"times": "0.01,0,0.1"}, "positive"),
    ({"ev": "-2,0,2", "times": "1,2,3"}, "not both"),
    ({"ev": "0,2,400"}, "more than 30"),
])
def test_bad_exposure_options(tmp_path, kwargs, match):
    """The library takes numbers (``BracketOptions``); ``number_list`` reads what a person typed."""
    paths = _plain_bracket(tmp_path, [-2, 0, 2])
    with pytest.raises(ExposureError, match=match):
        options = BracketOptions(**{k: number_list(v, k) for k, v in kwargs.items()})
        load_bracket(paths, options)


def test_prepare_bracket_aligns_and_reports(tmp_path):
    from gmodiff.bracket.prepare import prepare_bracket
    from gmodiff.errors import ConfigError

    paths, _, _ = write_bracket(tmp_path)
    prepared = prepare_bracket(paths, BracketOptions(align="ecc"))
    assert prepared.alignment.methods[1] == "reference"
    assert prepared.scene.frames[1] is prepared.scene.reference
    assert any(line.startswith("reference:") for line in prepared.messages())
    with pytest.raises(ConfigError):
        prepare_bracket(paths, BracketOptions(align="sift"))


def test_blank_frames_are_never_chosen(tmp_path):
    rad = scene_radiance(32, 48)
    paths = [save_jpeg(tmp_path / f"f{i}.jpg", expose(rad, 2.0 ** s), exif_bytes(2.0 ** s / 100))
             for i, s in enumerate([-2, 0, 2])]
    white = np.full((32, 48, 3), 255, np.uint8)
    paths.append(save_jpeg(tmp_path / "white.jpg", white, exif_bytes(2.0 ** 6 / 100)))
    scene, selection = load_bracket(paths)
    # without the blank +6 EV frame the middle is 0 EV, and +2 EV is the long frame
    assert [p.name for p in scene.frame_paths] == ["f0.jpg", "f1.jpg", "f2.jpg"]
    assert "not used: white.jpg (blank)" in selection.describe()


def test_all_black_or_white(tmp_path):
    black, white = np.zeros((16, 16, 3), np.uint8), np.full((16, 16, 3), 255, np.uint8)
    paths = [save_jpeg(tmp_path / "b.jpg", black, exif_bytes(0.01)),
             save_jpeg(tmp_path / "w.jpg", white, exif_bytes(0.04))]
    with pytest.raises(SceneError, match="black or white"):
        load_bracket(paths)
