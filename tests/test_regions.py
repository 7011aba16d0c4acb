"""Region metrics (clipped / unreliable / moving pixels) and the simulator's motion mask (issue 17)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from gmodiff.data.crops import cut_scene
from gmodiff.data.simulate import SimulationConfig, simulate
from gmodiff.data.sources import procedural_radiance
from gmodiff.errors import SceneError
from gmodiff.io.ldr import write_ldr
from gmodiff.io.scene import MOTION_MASK_FILE, load_scene, save_scene
from gmodiff.metrics import psnr_l, psnr_mu
from gmodiff.metrics.regions import (
    CLIPPED_LEVEL,
    MIN_REGION_PIXELS,
    clipped_mask,
    masked_psnr_l,
    masked_psnr_mu,
    nan_mean,
    region_masks,
    region_metrics,
    unreliable_mask,
)


def _pair(seed=0, shape=(24, 32, 3)):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.01, 0.9, shape).astype(np.float32)
    return gt * (1 + 0.05 * rng.standard_normal(shape)).astype(np.float32), gt


def test_masked_psnr_is_psnr_of_the_selected_pixels():
    pred, gt = _pair()
    everything = np.ones(gt.shape[:2], bool)
    assert masked_psnr_mu(pred, gt, everything) == pytest.approx(psnr_mu(pred, gt), abs=1e-9)
    assert masked_psnr_l(pred, gt, everything) == pytest.approx(psnr_l(pred, gt), abs=1e-9)
    # Damage only the left half: the left-half score drops, the right half is untouched.
    damaged = pred.copy()
    damaged[:, :16] += 0.2
    left = np.zeros(gt.shape[:2], bool)
    left[:, :16] = True
    assert masked_psnr_mu(damaged, gt, ~left) == pytest.approx(masked_psnr_mu(pred, gt, ~left))
    assert masked_psnr_mu(damaged, gt, left) < masked_psnr_mu(pred, gt, left) - 3
    assert masked_psnr_l(damaged, gt, left) < masked_psnr_l(pred, gt, left) - 3


def test_tiny_or_empty_region_is_nan_and_skipped_by_means():
    pred, gt = _pair()
    few = np.zeros(gt.shape[:2], bool)
    few.flat[: MIN_REGION_PIXELS - 1] = True
    assert math.isnan(masked_psnr_mu(pred, gt, few))
    assert math.isnan(masked_psnr_l(pred, gt, np.zeros_like(few)))
    assert nan_mean([30.0, math.nan, 40.0]) == 35.0
    assert math.isnan(nan_mean([math.nan]))
    with pytest.raises(ValueError, match="region mask shape"):
        masked_psnr_mu(pred, gt, np.ones((3, 3), bool))


def test_region_definitions():
    reference = np.full((4, 5, 3), 0.5, np.float32)
    reference[0, 0, 2] = CLIPPED_LEVEL  # one channel at the level is enough
    reference[1, 1] = CLIPPED_LEVEL - 1e-3
    clipped = clipped_mask(reference)
    assert clipped[0, 0] and clipped.sum() == 1
    da = np.array([[0.49, 0.5, 0.9]])
    np.testing.assert_array_equal(unreliable_mask(da), [[False, True, True]])
    masks = region_masks(reference=reference, motion_mask=np.zeros((4, 5), np.float32))
    assert list(masks) == ["clipped", "motion"]  # no DA mask given → no "unreliable" region
    pred, gt = _pair(shape=(16, 16, 3))
    scores = region_metrics(pred, gt, {"motion": np.ones((16, 16), bool)}, fractions=True)
    assert set(scores) == {"psnr_mu_motion", "psnr_l_motion", "frac_motion"}
    assert scores["frac_motion"] == 1.0


@pytest.fixture(scope="module")
def moving():
    radiance = procedural_radiance(48, 64, seed=4)
    config = SimulationConfig(moving_objects=(2, 2), noise=False, response="gamma2.2")
    return simulate(radiance, config, seed=3)


def test_simulated_motion_mask_is_the_union_of_the_non_reference_masks(moving):
    mask = moving.scene.motion_mask
    assert mask.shape == (48, 64) and mask.dtype == np.float32
    np.testing.assert_array_equal(mask, np.maximum(moving.motion_masks[0], moving.motion_masks[2]))
    assert 0.01 < (mask >= 0.5).mean() < 0.9
    still = simulate(procedural_radiance(48, 64, seed=4), SimulationConfig(motion=False), seed=3)
    assert not still.scene.motion_mask.any()


def test_motion_mask_round_trips_through_the_scene_folder(moving, tmp_path):
    folder = save_scene(moving.scene, tmp_path / "s")
    assert (folder / MOTION_MASK_FILE).is_file()
    loaded = load_scene(folder)
    assert len(loaded.frames) == 3  # the mask is never taken for a frame
    assert np.abs(loaded.motion_mask - moving.scene.motion_mask).max() <= 0.5 / 255 + 1e-6
    crops = cut_scene(loaded, 32, 16)
    assert crops[0].motion_mask.shape == (32, 32)
    # A mask of the wrong size is a one-line SceneError naming the file.
    write_ldr(folder / MOTION_MASK_FILE, np.zeros((8, 8, 3), np.float32), bit_depth=8)
    with pytest.raises(SceneError, match="motion mask is 8x8") as info:
        load_scene(folder)
    assert MOTION_MASK_FILE in str(info.value)


def test_png_frame_folders_do_not_take_the_mask_for_a_frame(moving, tmp_path):
    folder = tmp_path / "png"
    folder.mkdir()
    for k, frame in enumerate(moving.scene.frames):
        write_ldr(folder / f"f{k}.png", frame, bit_depth=8)
    write_ldr(folder / MOTION_MASK_FILE, np.repeat(moving.scene.motion_mask[..., None], 3, 2), 8)
    (folder / "exposure.txt").write_text("0 2 4\n")
    scene = load_scene(folder)
    assert [p.name for p in scene.frame_paths] == ["f0.png", "f1.png", "f2.png"]
    assert scene.motion_mask is not None


def _eval_bench(tmp_path, moving):
    """Two simulated scenes (one with a motion mask), predictions with damage in the moving area."""
    from gmodiff.io.hdr import write_hdr

    root, preds = tmp_path / "scenes", tmp_path / "preds"
    preds.mkdir()
    with_mask = save_scene(moving.scene, root / "moving")
    plain = moving.scene
    save_scene(type(plain)(frames=plain.frames, exposure_times=plain.exposure_times,
                           ground_truth=plain.ground_truth), root / "plain")
    gt = moving.scene.ground_truth
    damaged = gt.copy()
    damaged[moving.scene.motion_mask >= 0.5] *= 1.5
    write_hdr(preds / "moving.exr", damaged, half=False)
    write_hdr(preds / "plain.exr", gt * 1.01, half=False)
    return root, preds, with_mask


def test_eval_shows_region_metrics_when_scenes_carry_masks(tmp_path, moving, capsys):
    import json

    from gmodiff.cli import main
    from gmodiff.io.hdr import read_hdr

    root, preds, with_mask = _eval_bench(tmp_path, moving)
    out = tmp_path / "m.json"
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out),
                 "--no-progress"]) == 0
    stdout = capsys.readouterr().out
    assert "psnr_mu_motion" in stdout and "psnr_mu_clipped" in stdout
    report = json.loads(out.read_text())
    rows = {r["scene"]: r for r in report["scenes"]}
    # The damage is all inside the moving region: its PSNR is far below the whole image's...
    assert rows["moving"]["psnr_mu_motion"] < rows["moving"]["psnr_mu"] - 3
    # ...and equals the masked PSNR of what is on disk.
    expect = masked_psnr_mu(read_hdr(preds / "moving.exr"), read_hdr(with_mask / "HDRImg.hdr"),
                            load_scene(with_mask).motion_mask >= 0.5)
    assert rows["moving"]["psnr_mu_motion"] == pytest.approx(expect)
    # The scene without a motion mask has no motion score, and the mean is the other scene's.
    assert rows["plain"]["psnr_mu_motion"] is None
    assert report["mean"]["psnr_mu_motion"] == pytest.approx(rows["moving"]["psnr_mu_motion"])
    assert "psnr_mu_unreliable" not in report["metrics"]  # no DA mask beside the predictions
    # A DA mask beside a prediction adds the "unreliable" region; --no-regions drops them all.
    write_ldr(preds / "moving.mask.png", np.repeat(load_scene(with_mask).motion_mask[..., None], 3, 2), 8)
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out),
                 "--no-progress"]) == 0
    rows = {r["scene"]: r for r in json.loads(out.read_text())["scenes"]}
    assert rows["moving"]["psnr_mu_unreliable"] == pytest.approx(rows["moving"]["psnr_mu_motion"], abs=0.5)
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "-o", str(out),
                 "--no-progress", "--no-regions"]) == 0
    assert not any("clipped" in k for k in json.loads(out.read_text())["metrics"])


def test_eval_wrong_size_da_mask_exits_2(tmp_path, moving, capsys):
    from gmodiff.cli import main

    root, preds, _ = _eval_bench(tmp_path, moving)
    write_ldr(preds / "moving.mask.png", np.zeros((4, 4, 3), np.float32), 8)
    assert main(["eval", "--pred", str(preds), "--gt", str(root), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "moving.mask.png" in err and err.count("\n") == 1
