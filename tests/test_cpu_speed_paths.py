"""The CPU speed levers of issue 25 give the reference result within their stated tolerance:
bf16 autocast, the even-grid curve lookup, the downscaled ECC fit and the once-per-bracket
merge plan that tiles share."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import gmodiff
from gmodiff.baselines.merge import deghost_merge, estimate_alignment, fit_mapping, plan_deghost
from gmodiff.camera.calibration import LUT_SIZE, uniform_lookup
from gmodiff.data.simulate import SimulationConfig, simulate_scene
from gmodiff.data.sources import procedural_radiance
from gmodiff.io.scene import Scene
from gmodiff.pipeline.pipeline import GMODiffPipeline, load_pipeline


def test_uniform_lookup_is_np_interp():
    rng = np.random.default_rng(0)
    lut = np.sort(rng.random(LUT_SIZE)).astype(np.float32)
    values = np.concatenate([rng.random(19995), [0.0, 1.0, -0.2, 1.3, 0.5]]).astype(np.float32)
    grid = np.linspace(0.0, 1.0, LUT_SIZE, dtype=np.float32)
    expected = np.interp(np.clip(values, 0.0, 1.0), grid, lut)
    got = uniform_lookup(values.reshape(-1, 5, 5), lut).reshape(-1)
    assert got.dtype == np.float32
    assert np.abs(got - expected).max() < 2e-6


def test_uniform_lookup_is_np_interp_across_remap_slabs(monkeypatch):
    # Values pass through cv2.remap as rows of _REMAP_WIDTH, in slabs of _REMAP_ROWS rows (OpenCV's
    # side limit); shrink both so a small array crosses slabs and a padded last row.
    from gmodiff import pixelmath

    monkeypatch.setattr(pixelmath, "_REMAP_WIDTH", 16)
    monkeypatch.setattr(pixelmath, "_REMAP_ROWS", 3)
    rng = np.random.default_rng(1)
    lut = np.cumsum(rng.random(4097)).astype(np.float32)
    values = rng.uniform(-0.1, 1.1, (7, 11, 3)).astype(np.float32)  # 231 values: 15 rows, 4 slabs
    expected = np.interp(np.clip(values, 0, 1), np.linspace(0, 1, lut.size), lut)
    got = pixelmath.uniform_lookup(values, lut)
    assert got.shape == values.shape and got.dtype == np.float32
    assert np.abs(got - expected).max() < 2e-6 * lut.max()


@pytest.mark.parametrize("shape", [(), (5,), (4, 6), (3, 4, 5, 2)])
def test_opencv_power_is_numpy_power(shape):
    from gmodiff.pixelmath import power

    values = np.random.default_rng(2).random(shape).astype(np.float32)
    for exponent in (2.2, 1 / 2.2):
        got = power(values, exponent)
        assert got.shape == values.shape and got.dtype == np.float32
        assert np.allclose(got, np.power(values, exponent), rtol=3e-6, atol=1e-7)


def test_channel_mapping_table_is_within_its_bound_of_the_quantiles():
    rng = np.random.default_rng(3)
    source = rng.random((120, 160, 3)).astype(np.float32)
    target = np.clip(source ** 0.7 * 1.8, 0.0, 1.0).astype(np.float32)  # a kinked (clipping) map
    mapping = fit_mapping(source, target)
    values = rng.random((50, 60, 3)).astype(np.float32)
    assert np.abs(mapping(values) - mapping.exact(values)).max() < 3e-4


def test_downscaled_alignment_matches_full_resolution():
    # The bundled sample's reference frame (real photographic texture), 3× up: 1152 × 1536.
    from gmodiff.io.scene import load_scene

    sample = load_scene(Path(gmodiff.__file__).parent / "samples" / "sunset")
    reference = cv2.resize(sample.reference, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    reference = np.clip(reference, 0.0, 1.0).astype(np.float32)
    height, width = reference.shape[:2]
    shift = np.float32([[1, 0, 3.4], [0, 1, -2.2]])
    frame = cv2.warpAffine(reference, shift, (width, height), borderMode=cv2.BORDER_REPLICATE)
    full = estimate_alignment(frame, reference, max_side=4096)
    small = estimate_alignment(frame, reference)  # fitted at 1024 px, scaled back
    assert np.abs(full[:, 2] - [3.4, -2.2]).max() < 0.2  # the fit works on this content
    assert np.abs(small - full).max() < 0.15
    assert np.abs(small[:, 2] - [3.4, -2.2]).max() < 0.2


@pytest.fixture(scope="module")
def shaken_scene() -> Scene:
    config = SimulationConfig(ev_spacing_stops=2.0, motion=True, moving_objects=(2, 2),
                              response="gamma2.2")
    return simulate_scene(procedural_radiance(160, 224, seed=5), config, seed=5)


def test_cropped_plan_merges_crops_like_the_whole_image(shaken_scene):
    plan = plan_deghost(shaken_scene.frames, shaken_scene.reference_index)
    whole = deghost_merge(shaken_scene, plan=plan)
    assert np.array_equal(whole, deghost_merge(shaken_scene))  # the default fits the same plan
    y0, y1, x0, x1 = 32, 128, 64, 192
    crop = Scene(frames=[f[y0:y1, x0:x1] for f in shaken_scene.frames],
                 exposure_times=shaken_scene.exposure_times,
                 reference_index=shaken_scene.reference_index)
    merged = deghost_merge(crop, plan=plan.cropped(y0, x0))
    margin = 12  # blur, erosion and resampling reach this far past a crop's edge
    inner = (slice(margin, -margin), slice(margin, -margin))
    expected = whole[y0:y1, x0:x1][inner]
    assert np.abs(merged[inner] - expected).max() <= 1e-4 * max(1.0, float(expected.max()))


def test_mapping_fitted_on_a_subsample_is_the_same_map():
    rng = np.random.default_rng(1)
    linear = rng.uniform(0.0, 0.25, (1100, 1000, 3)).astype(np.float32)  # > QUANTILE_SAMPLES px
    short, long = linear ** (1 / 2.2), np.clip(linear * 4, 0, 1) ** (1 / 2.2)
    mapped = fit_mapping(short, long)(short)
    assert np.abs(mapped - long).max() < 0.02


def test_bf16_autocast_stays_close_to_fp32():
    # The bundled model, not a random one: the tolerance is about the weights users run.
    reference = load_pipeline("default").optimise_for_cpu(bf16=False)
    fast = load_pipeline("default").optimise_for_cpu(bf16=True)
    assert fast.cpu_bf16 and not reference.cpu_bf16
    from dareg_helpers import synthetic_scene

    scene = synthetic_scene(3, 64, 96)
    expected, got = reference(scene, tile=None), fast(scene, tile=None)
    for name in ("gain_map", "coarse_gain_map", "hdr"):
        assert getattr(got, name).dtype == np.float32
    difference = np.abs(got.gain_map - expected.gain_map)
    assert difference.max() > 0  # bf16 did run
    assert difference.max() < 0.02 and difference.mean() < 2e-3  # 5 and 0.5 8-bit levels
    assert np.abs(got.coarse_gain_map - expected.coarse_gain_map).max() < 0.01
    # Training never runs under it: the autocast only wraps the inference call.
    assert not torch.is_autocast_enabled("cpu")


def test_bf16_switch_follows_the_environment(monkeypatch):
    from gmodiff.devices import CPU_BF16_ENV, cpu_bf16_fast

    monkeypatch.setenv(CPU_BF16_ENV, "0")
    assert cpu_bf16_fast() is False
    assert GMODiffPipeline.tiny(seed=0).optimise_for_cpu().cpu_bf16 is False
    monkeypatch.setenv(CPU_BF16_ENV, "1")
    assert cpu_bf16_fast() is True


def test_local_tokens_window_the_prior_grid():
    from gmodiff.models.refiner import local_tokens

    rows, cols, dim = 6, 8, 3
    context = torch.arange(rows * cols * dim, dtype=torch.float32).reshape(1, rows * cols, dim)
    grid = context.reshape(1, rows, cols, dim)
    # latent 24×32 (4 latent px per token cell); box rows 8..16, cols 12..20 → cells 2..4, 3..5
    window = local_tokens(context, (24, 32), (8, 16, 12, 20), margin=1)
    assert torch.equal(window, grid[:, 1:5, 2:6].reshape(1, -1, dim))
    assert local_tokens(context, (24, 32), (0, 24, 0, 32), margin=0) is context  # whole grid
    assert local_tokens(context[:, :5], (24, 32), (8, 16, 12, 20), 1).shape[1] == 5  # not a grid


def test_planned_tiles_see_local_tokens_only_on_large_images():
    from gmodiff.memory import TOKEN_MARGIN, plan_memory

    small, large = plan_memory(680, 1000), plan_memory(3000, 4000)
    assert small.token_margin == large.token_margin == TOKEN_MARGIN
    assert large.latent_tile == 96  # all 11.7 k tokens per query had forced 48-latent tiles
    # A ~1-MP image's UNet tiles still see every token: its grid is within one window.
    latent_w, tile = 1024 // 8, small.latent_tile
    assert (1024 // 32) <= tile // 4 + 2 * TOKEN_MARGIN and latent_w <= 2 * tile


@pytest.mark.parametrize("flags", [["--no-refine"], []], ids=["no-refine", "default"])
def test_dareg_only_run_never_imports_diffusers(tmp_path, flags):
    """`--no-refine`, and the bundled model's default (its DaReg stage), load the refiner
    lazily: no diffusers import (~4 s of start-up)."""
    import os
    import subprocess
    import sys

    from dareg_helpers import synthetic_scene
    from gmodiff.io.scene import save_scene

    scene = save_scene(synthetic_scene(5, 40, 48), tmp_path / "scene")
    code = ("import sys; from gmodiff.cli import main; "
            f"rc = main(['reconstruct', {str(scene)!r}, '-o', {str(tmp_path / 'o.exr')!r}, "
            f"*{flags!r}, '--no-progress']); "
            "print(rc, 'diffusers' in sys.modules, 'peft' in sys.modules)")
    env = dict(os.environ, PYTHONPATH=str(Path(gmodiff.__file__).parents[1]))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split()[-3:] == ["0", "False", "False"], result.stdout[-500:]
    assert (tmp_path / "o.exr").is_file()


def test_lazy_refiner_built_mid_call_matches_the_eager_one():
    """The CLI builds the refiner after DaReg, inside the bf16 autocast: LoRA must still be
    fused in fp32, so the weights and the output equal an eagerly built pipeline's."""
    from dareg_helpers import synthetic_scene

    scene = synthetic_scene(5, 64, 96)
    eager = load_pipeline("default").fuse_lora().optimise_for_cpu(bf16=True)
    lazy = load_pipeline("default", lazy=True).fuse_lora().optimise_for_cpu(bf16=True)
    assert not lazy.refiner_loaded
    lazy(scene, tile=None, refine=False)
    assert not lazy.refiner_loaded  # a DaReg-only call builds nothing
    expected, got = eager(scene, tile=None, refine=True), lazy(scene, tile=None, refine=True)
    assert lazy.refiner_loaded and lazy.refiner.lora_fused
    assert np.array_equal(got.gain_map, expected.gain_map)
    weights = dict(eager.refiner.named_parameters())
    assert all(torch.equal(weights[name], value)
               for name, value in lazy.refiner.named_parameters())


def test_stacked_frames_are_the_concatenated_per_frame_inputs_bit_for_bit():
    """stack_frames writes each frame's channels in place; the result is the old
    concatenate/stack/transpose of ``concat(L**2.2 / t, L)`` exactly, and the merge slot lands
    in slot 4."""
    from gmodiff.camera.radiance import linearise
    from gmodiff.inputs.canonical import merge_slot
    from gmodiff.inputs.encode import InputLayout, encode_bracket
    from gmodiff.inputs.frames import stack_frames

    rng = np.random.default_rng(3)
    frames = [rng.random((20, 30, 3), dtype=np.float32) for _ in range(3)]
    times = [1.0, 4.0, 16.0]
    per_frame = [np.concatenate([linearise(f, t), f], axis=-1) for f, t in zip(frames, times)]
    expected = np.stack(per_frame).transpose(0, 3, 1, 2)
    got = stack_frames(frames, times, extra_slots=1)
    assert got.shape == (4, 6, 20, 30) and np.array_equal(got[:3], expected)
    merged = encode_bracket(frames, times, InputLayout(merge_input=True)).numpy()
    scene = Scene(frames=frames, exposure_times=np.asarray(times), reference_index=1)
    assert np.array_equal(merged[:3], expected)
    assert np.array_equal(merged[3], merge_slot(scene).transpose(2, 0, 1))


def test_in_place_maths_never_writes_into_the_callers_frames():
    """canonical_frames and the merge's linearise divide/clip in place only on arrays they made:
    a curve that hands back its input (or a view of it) must leave the frames as they were."""
    from gmodiff.baselines.merge import linearise
    from gmodiff.inputs.canonical import canonical_frames

    rng = np.random.default_rng(4)
    frame = rng.uniform(-0.2, 1.2, (10, 12, 3)).astype(np.float32)
    before = frame.copy()
    for curve in (lambda x: x, lambda x: x[...]):
        canonical_frames([frame], curve)
        linearise(np.clip(frame, 0, 1), 4.0, curve)
        passed = np.clip(frame, 0, 1)
        kept = passed.copy()
        out = linearise(passed, 4.0, lambda x: x)  # np.clip inside copies: passed stays
        assert np.array_equal(passed, kept) and np.allclose(out, kept / 4.0)
    assert np.array_equal(frame, before)


def test_uniform_lookup_keeps_no_stale_coordinates_between_sizes():
    """The remap's zero rows are kept between calls; growing, shrinking and over-sized calls
    all still give np.interp."""
    from gmodiff import pixelmath

    rng = np.random.default_rng(5)
    lut = np.sort(rng.random(4097)).astype(np.float32)
    grid = np.linspace(0.0, 1.0, lut.size)
    for count in (10, 8192 * 40 + 3, 77, 8192 * 1100):  # the last one is over the kept size
        values = rng.random(count, dtype=np.float32)
        got = pixelmath.uniform_lookup(values, lut)
        assert np.abs(got - np.interp(values, grid, lut)).max() < 2e-6
    assert not pixelmath._ZEROS.flags.writeable and not pixelmath._ZEROS.any()


def test_uniform_lookup_falls_back_to_indexing_for_long_tables_and_empty_inputs():
    """Tables of 32767 samples or more (OpenCV's side limit) and empty arrays take the indexed
    road, which gives the same interpolation."""
    from gmodiff import pixelmath

    rng = np.random.default_rng(6)
    lut = np.sort(rng.random(40000)).astype(np.float32)
    values = rng.uniform(-0.1, 1.1, (50, 3)).astype(np.float32)
    expected = np.interp(np.clip(values, 0, 1), np.linspace(0, 1, lut.size), lut)
    assert np.abs(pixelmath.uniform_lookup(values, lut) - expected).max() < 2e-6
    assert pixelmath.uniform_lookup(np.zeros((0, 3), np.float32), lut[:100]).shape == (0, 3)


def test_triangle_weights_are_the_plain_expression_in_every_float_type():
    """The in-place weights give ``max(1 − |2L − 1|, 0)`` (with the bracket ends' full weight)
    bit for bit, for float32 frames and for float64 ones (computed in float64, then cast)."""
    from gmodiff.baselines.merge import triangle_weight

    rng = np.random.default_rng(7)
    for dtype in (np.float32, np.float64):
        ldr = rng.uniform(-0.2, 1.2, (30, 40, 3)).astype(dtype)
        for shortest, longest in [(False, False), (True, False), (False, True)]:
            expected = 1.0 - np.abs(2.0 * ldr - 1.0)
            if shortest:
                expected = np.where(ldr > 0.5, 1.0, expected)
            if longest:
                expected = np.where(ldr < 0.5, 1.0, expected)
            expected = np.maximum(expected, 0.0).astype(np.float32)
            got = triangle_weight(ldr, shortest=shortest, longest=longest)
            assert got.dtype == np.float32 and np.array_equal(got, expected)
