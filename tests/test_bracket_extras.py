"""Plain brackets keep every useful frame: frames beyond the network's three fill highlights and
shadows, and two-frame brackets come out at the right level."""

from __future__ import annotations

import numpy as np
import pytest

from bracket_helpers import exif_bytes, expose, save_jpeg, scene_radiance
from gmodiff.bracket.prepare import BracketOptions, load_bracket, prepare_bracket
from gmodiff.io.hdr import read_hdr

_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


def _bracket(folder, stops, radiance):
    return [save_jpeg(folder / f"f{i}.jpg", expose(radiance, 2.0 ** s), exif_bytes(2.0 ** s / 100))
            for i, s in enumerate(stops)]


def test_frames_beyond_the_chosen_three_are_kept_as_extras(tmp_path):
    radiance = scene_radiance(32, 48)
    paths = _bracket(tmp_path, [-6, -3, 0, 3, 6], radiance)
    _, selection = load_bracket(paths)
    assert selection.used == (1, 2, 3) and selection.extra == (0, 4)
    text = selection.describe()
    assert "f0.jpg (-6.0 EV)" in text and "f4.jpg (+6.0 EV)" in text and "not used" not in text
    prepared = prepare_bracket(paths, BracketOptions(align="none"))
    assert [e.exposure for e in prepared.extras] == pytest.approx([1 / 8, 512], rel=1e-2)


def test_a_darker_extra_frame_restores_clipped_highlights(tmp_path, capsys):
    from gmodiff.cli import main

    radiance = scene_radiance(48, 64, seed=5) * 0.5
    radiance[10:20, 10:30] = 40.0  # a light source the -3 EV frame clips (40/8 = 5 > 1)
    paths = _bracket(tmp_path, [-6, -3, 0, 3, 6], radiance)
    out = tmp_path / "o.exr"
    assert main(["reconstruct", *map(str, paths), "-o", str(out), "--method", "merge",
                 "--align", "none", "--quiet"]) == 0
    hdr = read_hdr(out)
    truth = radiance  # files are in reference-white units (the 0 EV frame's white = 1)
    spot = (slice(12, 18), slice(12, 28))
    assert np.median(hdr[spot] / truth[spot]) == pytest.approx(1.0, rel=0.1)
    (tmp_path / "three").mkdir()
    three = _bracket(tmp_path / "three", [-3, 0, 3], radiance)
    assert main(["reconstruct", *map(str, three), "-o", str(tmp_path / "t.exr"), "--method",
                 "merge", "--align", "none", "--quiet"]) == 0
    clipped = read_hdr(tmp_path / "t.exr")
    assert np.median(clipped[spot] / truth[spot]) < 0.5  # without the extra frame: clipped


@pytest.mark.parametrize("seed", [3, 8])
def test_two_frame_brackets_come_out_at_the_right_level(tmp_path, capsys, seed):
    """Simulated two-frame sets: median level within ±0.1 stop of the truth (default method), and
    so are the bright areas the reference frame holds unclipped (they were ~+0.2..0.5 stop)."""
    from gmodiff.cli import main
    from gmodiff.pipeline.pipeline import bundled_pipeline

    if bundled_pipeline() is None:
        pytest.skip("bundled model not installed")
    radiance = scene_radiance(128, 192, seed=seed)  # at 64x96 the drift hides in few pixels
    paths = _bracket(tmp_path, [0, 2], radiance)
    out = tmp_path / "o.exr"
    assert main(["reconstruct", *map(str, paths), "-o", str(out), "--align", "none",
                 "--quiet"]) == 0
    assert "gmodiff" in capsys.readouterr().out
    hdr = read_hdr(out)
    level = np.median(hdr @ _LUMA) / np.median(radiance @ _LUMA)  # relative to the 0 EV frame
    assert abs(np.log2(level)) <= 0.1, f"{np.log2(level):+.2f} stops"
    reference = expose(radiance, 1.0).max(axis=2) / 255.0
    for low, high in [(0.05, 0.3), (0.6, 0.85), (0.85, 0.97)]:
        band = (reference > low) & (reference <= high)
        if band.sum() >= 50:
            error = np.log2(np.median(hdr[band] @ _LUMA) / np.median(radiance[band] @ _LUMA))
            assert abs(error) <= 0.1, f"reference in ({low}, {high}]: {error:+.2f} stops"


def _disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[0:h, 0:w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


@pytest.mark.parametrize("method", ["merge", "deghost"])
def test_a_moving_object_in_an_extra_frame_leaves_no_trace(tmp_path, capsys, method):
    """5 frames (-6..+6 EV, the network's three are -3/0/+3): an orange object that only the
    +6 EV frame shows, over shadows the +3 frame has as black, and a dark object that only the
    -6 EV frame shows, over a light the -3 frame clips. Neither may reach the result."""
    from gmodiff.cli import main

    h, w = 64, 96
    radiance = scene_radiance(h, w, seed=5) * 0.5
    radiance[4:40, 4:44] = 1.5e-5 * (1 + 0.3 * np.random.default_rng(1).random((36, 40, 1)))
    radiance[30:60, 56:92] = 40.0  # clipped even at -3 EV (40/8 = 5)
    bright, dark = _disc(h, w, 22, 24, 9), _disc(h, w, 45, 74, 9)
    runs = {}
    for moving in (False, True):
        folder = tmp_path / f"moving{moving}"
        folder.mkdir()
        paths = []
        for i, s in enumerate([-6, -3, 0, 3, 6]):
            view = radiance.copy()
            if moving and s == 6:
                view[bright] = np.array([0.6, 0.15, 0.02]) / 64  # orange at +6 EV
            if moving and s == -6:
                view[dark] = np.array([0.02, 0.02, 0.03]) * 64  # dark grey at -6 EV
            paths.append(save_jpeg(folder / f"f{i}.jpg", expose(view, 2.0 ** s),
                                   exif_bytes(2.0 ** s / 100)))
        out = folder / "o.exr"
        assert main(["reconstruct", *map(str, paths), "-o", str(out), "--method", method,
                     "--align", "none", "--quiet"]) == 0
        runs[moving] = read_hdr(out)
    still, ghosted = runs[False] @ _LUMA, runs[True] @ _LUMA
    # The shadow stays as dark as without the object (the object would be ~600x brighter)...
    assert ghosted[bright].mean() <= 1.5 * still[bright].mean() + 1e-6
    # ...and the light no darker than the -3 EV frame's clipping says it is, 8 in reference-white
    # units (the object would put it at 1.3; only the -6 EV frame could say more, and there it
    # shows the object).
    assert ghosted[dark].min() >= 0.9 * 8
    # Away from the objects (rejections grow a few pixels) the extra frames still count.
    away = ~_disc(h, w, 22, 24, 16) & ~_disc(h, w, 45, 74, 16)
    assert np.allclose(ghosted[away], still[away], rtol=0.05, atol=1e-4)
    # The still bracket did get its extra frames (the light is restored beyond -3 EV's range).
    assert np.median(still[dark]) > 16.0
