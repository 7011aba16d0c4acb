"""GMODiffPipeline on the tiny backbone: scene in, HDR out; exact save/load; device/dtype rules."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmodiff.errors import CheckpointError, ConfigError
from gmodiff.gainmap import GM_OFFSET
from gmodiff.io.scene import Scene
from gmodiff.models.backbone import BackboneConfig, load_backbone, save_backbone_folder
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.models.refiner import RefinerConfig
from gmodiff.pipeline.pipeline import GMODiffPipeline


def _scene(height=40, width=56, seed=0) -> Scene:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.6, size=(height, width, 3)).astype(np.float32)
    times = np.array([1.0, 4.0, 16.0], dtype=np.float32)
    frames = [np.clip((base * t) ** (1 / 2.2), 0, 1).astype(np.float32) for t in times]
    return Scene(frames=frames, exposure_times=times, name="toy")


def _perturb(pipe: GMODiffPipeline, seed: int = 1) -> None:
    # Non-trivial adapters and extras, so the round trip tests more than initial values.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in pipe.refiner.named_parameters():
            if p.requires_grad:
                p.add_(0.01 * torch.randn(p.shape, generator=g))
        for module in pipe.refiner.proj.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.add_(0.1)


@pytest.fixture(scope="module")
def pipe():
    p = GMODiffPipeline.tiny(seed=0)
    _perturb(p)
    return p


def test_call_returns_cropped_finite_hdr_within_the_codec_bound(pipe):
    scene = _scene()
    out = pipe(scene)
    assert out.hdr.shape == (40, 56, 3) and out.gain_map.shape == (40, 56, 3)
    assert out.mask.shape == (40, 56) and out.coarse_gain_map.shape == (40, 56, 3)
    assert np.isfinite(out.hdr).all() and out.hdr.min() >= 0
    assert np.all(out.hdr <= scene.reference + GM_OFFSET + 1e-5)
    assert {"dareg_s", "refiner_s", "total_s"} <= set(out.timings)
    # The refiner changes DaReg's estimate, and the multi-step variant gives another answer.
    assert np.abs(out.gain_map - out.coarse_gain_map).mean() > 1e-4
    assert np.abs(pipe(scene, steps=2).gain_map - out.gain_map).mean() > 1e-5


def _state_equal(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def test_save_load_round_trip_is_bit_exact(pipe, tmp_path):
    pipe.save_pretrained(tmp_path / "p")
    loaded = GMODiffPipeline.from_pretrained(tmp_path / "p")
    _state_equal(pipe.refiner, loaded.refiner)
    _state_equal(pipe.dareg, loaded.dareg)
    scene = _scene(32, 32)
    assert np.array_equal(pipe(scene).hdr, loaded(scene).hdr)


def test_round_trip_with_a_backbone_folder_saves_only_trained_weights(tmp_path):
    folder = save_backbone_folder(load_backbone(BackboneConfig(kind="tiny", seed=3)), tmp_path / "sd")
    dareg = DaReg(DaRegConfig.tiny())
    pipe = GMODiffPipeline.build(dareg, BackboneConfig.from_path(folder),
                                 RefinerConfig.tiny(dareg.config.channels[-1]))
    _perturb(pipe)
    pipe.save_pretrained(tmp_path / "p")
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "p" / "refiner.safetensors"))
    assert all(("lora_" in k or "conv_in" in k or k.startswith("proj.") or "skip_conv_" in k)
               for k in saved)
    loaded = GMODiffPipeline.from_pretrained(tmp_path / "p")
    _state_equal(pipe.refiner, loaded.refiner)
    # A moved backbone folder can be given explicitly; a wrong one is refused clearly.
    moved = tmp_path / "moved"
    folder.rename(moved)
    _state_equal(pipe.refiner, GMODiffPipeline.from_pretrained(tmp_path / "p", backbone=moved).refiner)
    from gmodiff.errors import BackboneError

    with pytest.raises(BackboneError):
        GMODiffPipeline.from_pretrained(tmp_path / "p")


def test_truncated_refiner_weights_are_refused(pipe, tmp_path):
    from safetensors.torch import load_file, save_file

    pipe.save_pretrained(tmp_path / "p")
    weights = tmp_path / "p" / "refiner.safetensors"
    state = load_file(str(weights))
    state.pop(next(k for k in state if "lora_A" in k))
    save_file(state, str(weights))
    with pytest.raises(CheckpointError, match="missing"):
        GMODiffPipeline.from_pretrained(tmp_path / "p")
    with pytest.raises(CheckpointError):
        GMODiffPipeline.from_pretrained(tmp_path / "nothing")


def test_half_precision_needs_a_gpu(pipe):
    with pytest.raises(ConfigError):
        pipe.to("cpu", torch.float16)


def test_tiled_pipeline_runs_and_stays_close(pipe):
    from gmodiff.models.refiner import TileOptions

    scene = _scene(96, 96)
    plain = pipe(scene).gain_map
    tiled = pipe(scene, tile=TileOptions(latent_tile=8, latent_overlap=4)).gain_map
    assert tiled.shape == plain.shape
    assert np.abs(tiled - plain).mean() < 0.2  # random weights: see test_refiner's tolerance note


def test_reconstruct_scene_gmodiff_branch(pipe, tmp_path, monkeypatch):
    from gmodiff.pipeline import bundled as pipeline_module
    from gmodiff.methods import available_methods, reconstruct_scene

    # No bundled default model: "no weights" must then be an error.
    monkeypatch.setattr(pipeline_module, "WEIGHTS_DIR", tmp_path / "no-bundle")

    pipe.save_pretrained(tmp_path / "w")
    scene = _scene(32, 48)
    result = reconstruct_scene(scene, "gmodiff", weights=tmp_path / "w")
    assert result.method == "gmodiff" and result.hdr.shape == (32, 48, 3)
    assert {"dareg", "refiner", "total"} <= set(result.timings)
    # The method layer fuses LoRA and uses channels_last on CPU: equal within the tolerance of
    # test_cpu_optimised_pipeline_matches_the_pytorch_reference; without them, bit for bit.
    assert np.allclose(result.hdr, pipe(scene).hdr, rtol=1e-3, atol=1e-5)
    plain = reconstruct_scene(scene, "gmodiff", weights=tmp_path / "w", fuse_lora=False)
    assert np.array_equal(plain.hdr, pipe(scene).hdr)
    assert reconstruct_scene(scene, "gmodiff", weights=tmp_path / "w", steps=3).method == "gmodiff-3step"
    assert "gmodiff" in available_methods()
    with pytest.raises(CheckpointError):
        reconstruct_scene(scene, "gmodiff", weights=tmp_path)
    with pytest.raises(CheckpointError):
        reconstruct_scene(scene, "gmodiff")


def test_cli_reconstruct_with_gmodiff(pipe, tmp_path, monkeypatch):
    from gmodiff.pipeline import bundled as pipeline_module
    from gmodiff.cli import main

    monkeypatch.setattr(pipeline_module, "WEIGHTS_DIR", tmp_path / "no-bundle")  # no default model
    from gmodiff.io.hdr import read_hdr
    from gmodiff.io.scene import save_scene

    pipe.save_pretrained(tmp_path / "w")
    save_scene(_scene(32, 32), tmp_path / "scene")
    out = tmp_path / "out.exr"
    args = ["reconstruct", str(tmp_path / "scene"), "-o", str(out), "--method", "gmodiff",
            "--weights", str(tmp_path / "w")]
    assert main(args) == 0
    assert read_hdr(out).shape == (32, 32, 3)
    assert main([*args[:3], str(tmp_path / "o2.exr"), *args[4:], "--steps", "2", "--tile", "96"]) == 0
    # Missing weights: one-line error, exit 2, no output.
    missing = tmp_path / "missing.exr"
    assert main([*args[:3], str(missing), "--method", "gmodiff"]) == 2
    assert not missing.exists()


def test_tiling_is_automatic_for_latents_larger_than_the_tile(pipe):
    from gmodiff.models.refiner import TileOptions

    scene = _scene(96, 96)  # latent 12 px
    saved = pipe.tile
    try:
        pipe.tile = TileOptions(latent_tile=8, latent_overlap=4)
        automatic = pipe(scene).gain_map
        assert np.array_equal(automatic, pipe(scene, tile=TileOptions(8, 4)).gain_map)
        assert not np.array_equal(automatic, pipe(scene, tile=None).gain_map)
        pipe.tile = TileOptions(latent_tile=16, latent_overlap=4)  # larger than the latent
        assert np.array_equal(pipe(scene).gain_map, pipe(scene, tile=None).gain_map)
    finally:
        pipe.tile = saved


def test_cpu_optimised_pipeline_matches_the_pytorch_reference():
    # Fused LoRA + channels_last (the CLI's default on CPU) is a speed lever only: the gain map
    # must equal the plain PyTorch model's within 1e-4, DaReg's and the refiner's alike.
    reference = GMODiffPipeline.tiny(seed=0)
    _perturb(reference)
    fast = GMODiffPipeline.tiny(seed=0)
    _perturb(fast)
    fast.optimise_for_cpu(bf16=False)
    assert fast.refiner.lora_fused
    scene = _scene(64, 96, seed=3)
    expected, got = reference(scene, tile=None), fast(scene, tile=None)
    assert np.abs(got.coarse_gain_map - expected.coarse_gain_map).max() < 1e-4
    assert np.abs(got.gain_map - expected.gain_map).max() < 1e-4
    assert np.abs(got.gain_map - got.coarse_gain_map).mean() > 1e-4  # the refiner did act
