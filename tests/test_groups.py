"""Bracket grouping (gmodiff.bracket.groups, ``gmodiff reconstruct DIR --group``)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from gmodiff.cli import main
from gmodiff.bracket.groups import Shot, group_folder, group_shots
from raw_helpers import sensor_values, smooth_radiance, write_bayer_dng

START = datetime(2026, 12, 4, 10, 0, 0)


def _shots(spec) -> list[Shot]:
    """(seconds after START, stops, auto_bracket, bias) → Shots named s01, s02, ..."""
    return [Shot(Path(f"s{i + 1:02d}.dng"), START + timedelta(seconds=t), stops,
                 2.0 ** stops / 1000, bracket, bias)
            for i, (t, stops, bracket, bias) in enumerate(spec)]


def _names(grouping) -> tuple[list[list[str]], list[str]]:
    return ([[p.stem for p in g] for g in grouping.groups],
            [p.stem for p, _ in grouping.unplaced])


def test_back_to_back_brackets_split_by_their_repeating_sequence():
    """No pause between them, and the metering moved by 1/3 stop: the relative sequence
    0, -2, +2 still repeats; a shot between them that fits neither is left out."""
    spec = [(0, 0, False, None), (0, -2, False, None), (0, 2, False, None),
            (1, 1.0, False, None),  # stray in the middle
            (1, 0.33, False, None), (1, -1.67, False, None), (2, 2.33, False, None)]
    groups, unplaced = _names(group_shots(_shots(spec)))
    assert groups == [["s01", "s02", "s03"], ["s05", "s06", "s07"]]
    assert unplaced == ["s04"]


@pytest.mark.parametrize("brackets", [1, 2])
def test_an_ascending_bracket_is_not_split_into_its_steps(brackets):
    """-2, -1, 0, +1, +2 "repeats" a +1 step; only a sequence that starts over is a repeat."""
    spec = [(k // 3, ev, False, None) for k, ev in enumerate([-2, -1, 0, 1, 2] * brackets)]
    groups, unplaced = _names(group_shots(_shots(spec)))
    assert [len(g) for g in groups] == [5] * brackets and unplaced == []


def test_pauses_split_runs_and_lone_shots_are_not_brackets():
    spec = [(0, 0, False, None), (0, -1, False, None), (1, 1, False, None),
            (20, 0, False, None),  # alone
            (40, -3, False, None), (40, 0, False, None)]  # a two-frame bracket
    groups, unplaced = _names(group_shots(_shots(spec)))
    assert groups == [["s01", "s02", "s03"], ["s05", "s06"]]
    assert unplaced == ["s04"]


def test_bracket_tags_decide_where_the_camera_wrote_them():
    spec = [(0, 0, True, 0.0), (0, -1, True, -1.0), (0, 1, True, 1.0), (1, 0.2, False, None),
            (1, 0, True, 0.0), (1, -1, True, -1.0), (2, 1, True, 1.0)]
    groups, unplaced = _names(group_shots(_shots(spec)))
    assert groups == [["s01", "s02", "s03"], ["s05", "s06", "s07"]]
    assert unplaced == ["s04"]


def test_a_long_exposure_does_not_count_as_a_pause():
    """Start times 8 s apart, but the first frame exposed for 7 s."""
    shots = [Shot(Path("a.dng"), START, np.log2(7.0), 7.0),
             Shot(Path("b.dng"), START + timedelta(seconds=8), np.log2(1.75), 1.75)]
    assert _names(group_shots(shots)) == ([["a", "b"]], [])


# ------------------------------------------------------------------ a card's worth of DNGs


CARD = [
    # (seconds after START, subsec, EV from the 1/250 s base, ExposureMode, bias)
    (0, None, 0, None, None), (0, None, -2, None, None), (1, None, 2, None, None),  # A
    (1, None, 0.33, None, None), (2, None, -1.67, None, None), (2, None, 2.33, None, None),  # B
    (30, None, 0, None, None),  # stray 1
    (60, None, 0, 2, 0.0), (60, None, -1, 2, -1.0), (61, None, 1, 2, 1.0),  # C (AEB tags)
    (61, None, 0.5, 0, None),  # stray 2, right after C, untagged
    (300, "10", -2, None, None), (300, "40", 0, None, None), (300, "90", 2, None, None),  # D
]


@pytest.fixture(scope="module")
def card(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("card")
    radiance = smooth_radiance(32, 48, seed=3, stops=6.0)
    for index, (seconds, subsec, ev, mode, bias) in enumerate(CARD, start=1):
        moment = (START + timedelta(seconds=seconds)).strftime("%Y:%m:%d %H:%M:%S")
        exposure = 2.0 ** ev
        write_bayer_dng(folder / f"IMG_{index:04d}.dng", sensor_values(radiance, exposure * 0.3),
                        exposure / 250, datetime=moment, subsec=subsec, exposure_mode=mode,
                        bias_ev=bias)
    return folder


def test_a_card_of_four_interleaved_brackets_and_two_strays_is_grouped_exactly(card):
    groups, unplaced = _names(group_folder(card))
    assert groups == [["IMG_0001", "IMG_0002", "IMG_0003"], ["IMG_0004", "IMG_0005", "IMG_0006"],
                      ["IMG_0008", "IMG_0009", "IMG_0010"], ["IMG_0012", "IMG_0013", "IMG_0014"]]
    assert unplaced == ["IMG_0007", "IMG_0011"]


def test_dry_run_lists_the_groups_and_writes_nothing(card, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["reconstruct", str(card), "--group", "--dry-run", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "found 4 bracket(s)" in text and "IMG_0007.dng" in text and "IMG_0011.dng" in text
    assert "IMG_0013.exr" in text  # bracket D is named after its middle exposure
    assert not out.exists()


def test_group_writes_one_output_per_bracket_named_after_its_reference(card, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["reconstruct", str(card), "--group", "-o", str(out), "--method", "deghost",
                 "--align", "none", "--no-progress"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert sorted(p.name for p in out.iterdir()) == ["IMG_0001.exr", "IMG_0004.exr",
                                                     "IMG_0008.exr", "IMG_0013.exr"]
    assert "wrote 4 of 4" in captured.out


def test_raw_plus_jpeg_twins_use_the_raw_file(card, tmp_path):
    import shutil

    from bracket_helpers import exif_bytes, save_jpeg

    folder = tmp_path / "twins"
    shutil.copytree(card, folder)
    save_jpeg(folder / "IMG_0001.jpg", np.full((32, 48, 3), 100, np.uint8), exif_bytes(1 / 250))
    grouping = group_folder(folder)
    assert [p.name for p, _ in grouping.unplaced] == ["IMG_0001.jpg", "IMG_0007.dng",
                                                      "IMG_0011.dng"]
    assert len(grouping.groups) == 4


def test_dry_run_needs_group(card, tmp_path, capsys):
    assert main(["reconstruct", str(card), "--dry-run", "-o", str(tmp_path / "o")]) == 2
    assert "--group" in capsys.readouterr().err


def test_jpeg_folder_without_capture_times_is_split_by_the_sequence(tmp_path):
    """JPEGs read through their EXIF; no DateTimeOriginal: one run, split by the sequence."""
    from bracket_helpers import exif_bytes, save_jpeg

    for index, seconds in enumerate([1 / 250, 1 / 1000, 1 / 60, 1 / 250, 1 / 1000, 1 / 60]):
        save_jpeg(tmp_path / f"DSC{index + 1:03d}.jpg", np.full((24, 24, 3), 100, np.uint8),
                  exif_bytes(seconds))
    (tmp_path / "notes.txt").write_text("not an image")
    groups, unplaced = _names(group_folder(tmp_path))
    assert groups == [["DSC001", "DSC002", "DSC003"], ["DSC004", "DSC005", "DSC006"]]
    assert unplaced == []
