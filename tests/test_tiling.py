"""Tiled inference (gmodiff.tiling, gmodiff.pipeline.dareg_tiles): coverage, exact re-assembly, and the
tiled DaReg staying within 1 dB PSNR-μ of the whole-image run."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dareg_helpers import synthetic_scene
from gmodiff.tiling import TileGrid, feather, fitted_tile, run_tiled, tile_starts


@pytest.mark.parametrize("length,tile,overlap,align", [
    (1000, 256, 64, 32), (1024, 256, 64, 32), (96, 256, 64, 32), (300, 100, 20, 1), (257, 256, 64, 1),
])
def test_tiles_cover_the_image_with_the_overlap(length, tile, overlap, align):
    starts = tile_starts(length, tile, overlap, align)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert min(starts[-1] + tile, length) == length or length <= tile
    for a, b in zip(starts, starts[1:]):
        assert b - a <= tile - overlap or b == length - tile  # enough overlap between neighbours
    aligned = starts if (length - tile) % align == 0 else starts[:-1]
    assert all(s % align == 0 for s in aligned)


@pytest.mark.parametrize("height,width", [(3040, 4032), (2272, 4032), (1216, 1600), (704, 1024), (4000, 6016)])
def test_fitted_tiles_keep_the_count_and_overlap_and_compute_less(height, width):
    square, fitted = TileGrid(height, width, 768, 96, 32), TileGrid.fitted(height, width, 768, 96, 32)
    assert len(fitted) == len(square)
    assert fitted.computed_pixels() <= square.computed_pixels()
    for grid_side in (fitted.tile, fitted.tile_width):
        assert grid_side % 32 == 0 and grid_side <= 768
    covered = np.zeros((height, width), np.int32)
    for y0, y1, x0, x1 in fitted.boxes():
        covered[y0:y1, x0:x1] += 1
    assert covered.min() >= 1  # every pixel computed
    ys = sorted({b[0] for b in fitted.boxes()})
    assert all(b - a <= fitted.tile - 96 for a, b in zip(ys, ys[1:]))  # the overlap is kept


def test_fitted_tiles_shrink_a_12mp_photo_by_8_percent():
    square, fitted = TileGrid(3040, 4032, 768, 96, 32), TileGrid.fitted(3040, 4032, 768, 96, 32)
    assert fitted.computed_pixels() < 0.93 * square.computed_pixels()
    assert fitted_tile(500, 768, 96, 32) == 768  # one tile: nothing to fit


def test_blending_an_identity_rebuilds_the_input_at_every_scale():
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((1, 3, 160, 224), dtype=np.float32))
    coarse = torch.nn.functional.avg_pool2d(image, 32)
    grid = TileGrid(160, 224, tile=96, overlap=32, align=32)
    assert len(grid) > 4

    def fn(box):
        y0, y1, x0, x1 = box
        return {"full": (image[..., y0:y1, x0:x1], 1.0),
                "tokens": (coarse[..., y0 // 32:y1 // 32, x0 // 32:x1 // 32], 1 / 32)}

    calls = []
    out = run_tiled(grid, fn, on_tile=lambda done, total: calls.append((done, total)))
    assert torch.allclose(out["full"], image, atol=1e-6)
    assert torch.allclose(out["tokens"], coarse, atol=1e-6)
    assert calls[-1] == (len(grid), len(grid))


def test_feather_is_flat_on_image_borders_and_ramps_inside():
    w = feather((0, 64, 32, 96), height=128, width=96, ramp=32)
    assert w[0, -1] == 1.0 and w[-1, -1] < 0.05 and w[0, 0] < 0.05  # bottom, left sides inner
    assert w.min() > 0


def _psnr_mu(a: np.ndarray, b: np.ndarray) -> float:
    from gmodiff.metrics import psnr_mu

    return psnr_mu(a, b)


def test_tiled_dareg_is_within_1db_of_the_whole_image_run():
    from gmodiff.gainmap import decode_gain_map
    from gmodiff.models.dareg import DaReg
    from gmodiff.pipeline.pipeline import bundled_pipeline
    from gmodiff.inputs.encode import network_scene, scene_inputs
    from gmodiff.pipeline.dareg_tiles import dareg_tiled

    folder = bundled_pipeline()
    if folder is None:
        pytest.skip("bundled model not installed")
    dareg = DaReg.from_pretrained(folder / "dareg").eval()
    scene = network_scene(synthetic_scene(3, height=200, width=264), dareg.config)
    with torch.no_grad():
        whole = dareg(scene_inputs(scene, dareg.config).inputs)
    tiled = dareg_tiled(dareg, scene.frames, scene.exposure_times, tile=128, overlap=64)
    assert tiled.gain_map.shape == whole.gain_map.shape == (1, 3, 224, 288)
    assert tiled.tokens.shape == whole.tokens.shape and tiled.mask.shape == whole.mask.shape

    def hdr(gain_map):
        gm = gain_map[0, :, :200, :264].permute(1, 2, 0).numpy()
        return decode_gain_map(gm, scene.reference)

    gt = synthetic_scene(3, height=200, width=264).ground_truth
    whole_db, tiled_db = _psnr_mu(hdr(whole.gain_map), gt), _psnr_mu(hdr(tiled.gain_map), gt)
    assert abs(whole_db - tiled_db) <= 1.0, (whole_db, tiled_db)
    assert _psnr_mu(hdr(tiled.gain_map), hdr(whole.gain_map)) > 35.0
    assert float((tiled.mask - whole.mask).abs().mean()) < 0.05


def test_tiles_reencoded_one_by_one_equal_tiles_of_the_canonical_frames():
    """The pipeline's tiled road never makes full-size canonical frames: each tile's crops are
    re-encoded instead (pixel by pixel), which must give the very same outputs."""
    from gmodiff.gainmap import decode_gain_map
    from gmodiff.memory import MemoryPlan
    from gmodiff.pipeline.pipeline import GMODiffPipeline, bundled_pipeline
    from gmodiff.inputs.encode import network_encoder, network_scene
    from gmodiff.progress import SILENT
    from gmodiff.pipeline.dareg_tiles import dareg_tiled

    folder = bundled_pipeline()
    if folder is None:
        pytest.skip("bundled model not installed")
    pipeline = GMODiffPipeline.from_pretrained(folder)
    assert pipeline.dareg.config.canonical_inputs  # else there is nothing to re-encode
    scene = synthetic_scene(3, height=200, width=264)
    before = [frame.copy() for frame in scene.frames]
    canonical = network_scene(scene, pipeline.dareg.config)
    with torch.no_grad():
        whole_frames = dareg_tiled(pipeline.dareg, canonical.frames, scene.exposure_times, 128, 64)
        per_tile = dareg_tiled(pipeline.dareg, scene.frames, scene.exposure_times, 128, 64,
                               encode=network_encoder(scene, pipeline.dareg.config))
    for name in ("gain_map", "mask", "tokens"):
        assert torch.equal(getattr(whole_frames, name), getattr(per_tile, name)), name
    assert all(np.array_equal(a, b) for a, b in zip(before, scene.frames))  # inputs untouched

    plan = MemoryPlan(budget=0, dareg_tile=128, dareg_overlap=64, latent_tile=96,
                      latent_overlap=32, vae_tile=None, estimate=0)
    out = pipeline(scene, seed=0, plan=plan, refine=True)
    timings: dict[str, float] = {}
    with torch.no_grad():
        gain_map, _ = pipeline._predict_tiled(canonical, list, plan, True, 1, pipeline.tile,
                                              torch.Generator().manual_seed(0), SILENT, timings)
    expected = decode_gain_map(gain_map[0].permute(1, 2, 0).numpy(), canonical.reference)
    np.testing.assert_array_equal(out.hdr, expected.astype(np.float32))


@pytest.mark.parametrize("pad_mode", ["constant", "replicate", "reflect"])
def test_tiled_and_untiled_roads_pad_alike(pad_mode):
    """Regression (round 2 review): tiles past the image's edge were padded by repeating the
    last row/column whatever the model's pad_mode, so with the reference release's "constant"
    (zeros) the tiled road saw other values past the edge than the untiled one. With one tile
    covering the padded image both roads must now give the same outputs."""
    from gmodiff.inputs.encode import scene_inputs
    from gmodiff.models.dareg import DaReg, DaRegConfig
    from gmodiff.pipeline.dareg_tiles import dareg_tiled

    torch.manual_seed(0)
    dareg = DaReg(DaRegConfig.tiny(pad_mode=pad_mode)).eval()
    scene = synthetic_scene(4, height=40, width=52)  # not a multiple: the edge tile is padded
    multiple = dareg.config.multiple
    padded = -(-52 // multiple) * multiple
    with torch.no_grad():
        whole = dareg(scene_inputs(scene, dareg.config).inputs)
    tiled = dareg_tiled(dareg, scene.frames, scene.exposure_times, tile=padded, overlap=multiple,
                        multiple=multiple)
    for name in ("gain_map", "mask", "tokens"):
        a, b = getattr(whole, name), getattr(tiled, name)
        assert a.shape == b.shape, name
        assert torch.allclose(a, b, atol=1e-5), (name, float((a - b).abs().max()))


@pytest.mark.parametrize("tiled", [False, True])
def test_dareg_only_runs_skip_the_mask_head_and_keep_the_hdr(tiled):
    """The DA mask is read by the refiner and the maps' views only: a DaReg-only run that shows
    no maps leaves its head out (~20 % of DaReg's time) and must give the same HDR."""
    from gmodiff.memory import MemoryPlan
    from gmodiff.pipeline.pipeline import GMODiffPipeline

    pipeline = GMODiffPipeline.tiny(seed=3)
    scene = synthetic_scene(5, height=96, width=128)
    plan = (MemoryPlan(budget=0, dareg_tile=64, dareg_overlap=32, latent_tile=96, latent_overlap=32,
                       vae_tile=None, estimate=0) if tiled else None)
    heads = []
    hook = pipeline.dareg.seg_conv_layers.register_forward_hook(lambda *_: heads.append(1))
    try:
        with_mask = pipeline(scene, refine=False, plan=plan)
        calls = len(heads)
        without = pipeline(scene, refine=False, plan=plan, mask=False)
        refined = pipeline(scene, refine=True, plan=plan, mask=False)
    finally:
        hook.remove()
    assert with_mask.mask is not None and without.mask is None
    assert calls >= 1 and len(heads) == 2 * calls  # skipped once, run again for the refiner
    np.testing.assert_array_equal(with_mask.hdr, without.hdr)
    assert refined.mask is not None  # the refiner's gate reads it, asked for or not
