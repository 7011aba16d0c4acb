"""The out-of-distribution benchmark's pieces at tiny size: scenes, curves, exposure, options."""

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import ood  # noqa: E402
import ood_render  # noqa: E402
import ood_scenes  # noqa: E402
from gmodiff.camera.response import MID_GREY_RANGE  # noqa: E402
from gmodiff.metrics import dark_fraction  # noqa: E402


@pytest.mark.parametrize("render", [ood_render.dark_room, ood_render.night_street])
def test_procedural_scenes_are_deterministic_high_range_radiance(render):
    first, again = render(48, 72, 0), render(48, 72, 0)
    assert first.shape == (48, 72, 3) and first.dtype == np.float32
    assert np.array_equal(first, again)
    assert np.isfinite(first).all() and first.min() >= 0
    assert first.max() / np.percentile(first.max(axis=-1), 50) > 1e3  # a small, bright source
    assert not np.array_equal(first, render(48, 72, 1))


@pytest.mark.parametrize("response", [ood_scenes.HLGResponse(), ood_scenes.CameraLogResponse()])
def test_outside_curves_are_valid_and_outside_the_training_family(response):
    x = np.linspace(0, 1, 4097)
    y = response.forward(x)
    assert y[0] == pytest.approx(0, abs=1e-6) and y[-1] == pytest.approx(1, abs=1e-5)
    assert np.all(np.diff(y) >= 0)
    assert np.abs(response.inverse(y) - x).max() < 1e-4
    # Every curve the simulator draws encodes 18 % grey inside MID_GREY_RANGE; these do not.
    assert not MID_GREY_RANGE[0] <= ood_scenes.mid_grey(response) <= MID_GREY_RANGE[1]


def test_scene_list_covers_the_conditions_and_kinds():
    specs = ood_scenes.scene_specs()
    assert len(specs) >= 24 and len({s.name for s in specs}) == len(specs)
    assert {s.condition for s in specs} == set(ood_scenes.CONDITIONS)
    assert {"dark room", "night street", "real daylight", "real interior"} == {s.kind for s in specs}
    assert {c.stops for c in ood_scenes.CONDITIONS} == {2.0, 3.0}
    assert {c.noise for c in ood_scenes.CONDITIONS} == {True, False}
    quick = ood.selected_specs(8)
    assert len({s.condition for s in quick}) == 8


def test_dark_exposure_puts_the_target_fraction_below_a_thousandth_of_the_peak():
    rng = np.random.default_rng(0)
    radiance = np.repeat((10 ** rng.uniform(-3, 3, (64, 96)))[..., None], 3, -1).astype(np.float32)
    spec = ood_scenes.SceneSpec("t", "dark room", "room", 0, ood_scenes.CONDITIONS[6],
                                dark_exposure=True)
    config = ood_scenes.simulation_config(spec, (64, 96), radiance)
    from gmodiff.data.simulate import simulate

    scene = simulate(radiance, config, seed=1).scene
    assert 0.35 <= dark_fraction(scene.ground_truth) <= 0.75


def test_scene_builder_caches_16_bit_brackets_and_scores(tmp_path):
    spec = next(s for s in ood_scenes.scene_specs() if s.source == "room")
    scene = ood_scenes.build_scene(spec, (48, 72), tmp_path)
    assert len(scene.frames) == 3 and scene.ground_truth.shape == (48, 72, 3)
    assert np.allclose(scene.frames[1] * 65535, np.rint(scene.frames[1] * 65535), atol=1e-3)
    assert list(tmp_path.glob("*.npz"))
    cached = ood_scenes.build_scene(spec, (48, 72), tmp_path)
    assert all(np.array_equal(a, b) for a, b in zip(scene.frames, cached.frames))
    from gmodiff.baselines import deghost_merge

    scores = ood.score(deghost_merge(scene), scene.ground_truth)
    assert np.isfinite(scores["psnr_mu"]) and np.isfinite(scores["psnr_mu_gain_fit"])
    assert scores["gain"] > 0


def test_real_sources_decode_when_installed():
    if ood_scenes.missing_sources():
        pytest.skip("evaluation sources not installed: " + "; ".join(ood_scenes.missing_sources()))
    radiance = ood_scenes.read_pmndrs("lobby")
    assert radiance.shape == (256, 512, 3) and radiance.min() >= 0 and radiance.max() > 1


@pytest.mark.parametrize("argv", [["--scenes", "0"], ["--out", "x.txt"], ["--size", "8", "8"],
                                  ["--methods", "magic"]])
def test_bad_options_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        ood.parse_args(argv)
    assert info.value.code == 2
    assert capsys.readouterr().err.strip()


def test_missing_weights_folder_exits_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        ood.load_pipeline(str(tmp_path / "nope"))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "--weights" in err and "Traceback" not in err


def test_region_table_pairs_refined_and_dareg_per_scene():
    # Scene 2 has no clipped pixels: its clipped delta must not enter the mean, its whole-image one must.
    dareg = [{"psnr_mu": 30.0, "psnr_mu_clipped": 20.0, "frac_clipped": 0.1, "hdr_flip": 0.3},
             {"psnr_mu": 40.0, "psnr_mu_clipped": float("nan"), "frac_clipped": 0.0, "hdr_flip": 0.2}]
    refined = [{"psnr_mu": 31.0, "psnr_mu_clipped": 22.0, "frac_clipped": 0.1, "hdr_flip": 0.2},
               {"psnr_mu": 43.0, "psnr_mu_clipped": 99.0, "frac_clipped": 0.0, "hdr_flip": 0.2}]
    rows = [{"method": "a", **r} for r in dareg] + [{"method": "b", **r} for r in refined]
    lines = ood.region_lines(rows, {"default": "a", "refine": "b"})
    last = lines[-1]
    assert last.startswith("Refined − DaReg stage (paired over scenes):")
    assert "psnr_mu +2.00 dB" in last and "psnr_mu_clipped +2.00 dB" in last
    assert "HDR-FLIP -0.0500" in last
    assert "clipped 1/2 scenes" in "\n".join(lines)
