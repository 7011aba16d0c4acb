"""The bundled default model: name resolution, loading, a fast run, and the recipe's stage 0/bundle."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gmodiff.pipeline import bundled as pipeline_module
from gmodiff.data.datasets import SimulatedDataset, procedural_source
from gmodiff.errors import CheckpointError, ConfigError
from gmodiff.io.scene import load_scene
from gmodiff.models.backbone import load_backbone
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.models.refiner import RefinerConfig
from gmodiff.pipeline.pipeline import GMODiffPipeline, bundled_pipeline, resolve_weights
from gmodiff.methods import auto_method, reconstruct_scene
from gmodiff.train.bundle import bundle_pipeline
from gmodiff.train.prior import PriorTrainConfig, train_prior

SAMPLE = Path(pipeline_module.__file__).parents[1] / "samples" / "sunset"
needs_bundle = pytest.mark.skipif(bundled_pipeline() is None, reason="no bundled default model")


def _crop(scene, size: int = 64, top: int = 96, left: int = 192):
    cut = (slice(top, top + size), slice(left, left + size))
    return dataclasses.replace(scene, frames=[f[cut] for f in scene.frames],
                               ground_truth=scene.ground_truth[cut])


@needs_bundle
def test_bundled_default_loads_by_name_and_runs_on_a_crop():
    pipe = GMODiffPipeline.from_pretrained("default")
    scene = _crop(load_scene(SAMPLE))
    out = pipe(scene)
    assert out.hdr.shape == (64, 64, 3) and np.isfinite(out.hdr).all()
    assert out.mask is not None and 0 <= out.mask.min() and out.mask.max() <= 1
    # A trained model, not a random one: far closer to the ground truth than a constant image.
    from gmodiff.metrics import psnr_mu

    assert psnr_mu(out.hdr, scene.ground_truth) > 25.0
    assert sum(p.numel() for p in pipe.refiner.parameters()) < 5_000_000


@needs_bundle
def test_bundled_files_are_small_safetensors():
    folder = bundled_pipeline()
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert sum(p.stat().st_size for p in files) <= 25 * 2**20
    weights = [p for p in files if p.suffix not in (".json", ".md")]
    assert weights and all(p.suffix == ".safetensors" for p in weights)


def test_missing_bundle_is_a_checkpoint_error(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline_module, "WEIGHTS_DIR", tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="bundled 'default' pipeline"):
        resolve_weights("default")
    assert bundled_pipeline() is None
    scene = _crop(load_scene(SAMPLE), 32)
    assert auto_method(scene) == "classical"
    assert reconstruct_scene(scene, "auto").method == "deghost"


@needs_bundle
def test_auto_method_uses_the_bundle_for_three_frames_only():
    scene = _crop(load_scene(SAMPLE), 32)
    assert auto_method(scene) == "gmodiff"
    two = dataclasses.replace(scene, frames=scene.frames[:2], exposure_times=scene.exposure_times[:2],
                              reference_index=0)
    assert auto_method(two) == "classical"


def _tiny_data(items: int, seed: int):
    return SimulatedDataset([procedural_source()], items, 64, seed=seed)


def test_prior_resume_matches_an_uninterrupted_run(tmp_path):
    base = dict(vae_steps=2, unet_steps=2, crop_size=64, batch_size=2, val_every=0,
                checkpoint_every=1, log_every=1)
    straight = PriorTrainConfig(**base, out_dir=str(tmp_path / "a"))
    train_prior(straight, train_dataset=_tiny_data(6, 0), val_dataset=_tiny_data(1, 1), progress=False)
    first = PriorTrainConfig(**{**base, "unet_steps": 0}, out_dir=str(tmp_path / "b"))
    train_prior(first, train_dataset=_tiny_data(6, 0), val_dataset=_tiny_data(1, 1), progress=False)
    second = PriorTrainConfig(**base, out_dir=str(tmp_path / "b"))
    train_prior(second, resume=True, train_dataset=_tiny_data(6, 0), val_dataset=_tiny_data(1, 1),
                progress=False)
    a = load_backbone(tmp_path / "a" / "final")
    b = load_backbone(tmp_path / "b" / "final")
    assert b.config.kind == "folder"
    for part in ("unet", "vae"):
        sa, sb = getattr(a, part).state_dict(), getattr(b, part).state_dict()
        assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # The UNet phase trained the UNet: it differs from its random initialisation.
    fresh = load_backbone("tiny")
    assert not torch.equal(a.unet.conv_in.weight, fresh.unet.conv_in.weight)


@pytest.mark.parametrize("vae_widths", [None, (32, 32, 64, 64)])
def test_bundle_embeds_a_folder_backbone(tmp_path, vae_widths):
    from gmodiff.models.backbone import BackboneConfig

    prior = load_backbone(BackboneConfig(kind="tiny", vae_widths=vae_widths))
    prior.unet.conv_in.weight.data.mul_(1.5)  # a "trained" backbone that differs from the seed
    from gmodiff.models.backbone import save_backbone_folder

    folder = save_backbone_folder(prior, tmp_path / "prior")
    dareg = DaReg(DaRegConfig.tiny(mask_head=True))
    pipe = GMODiffPipeline.build(dareg, folder, RefinerConfig.tiny(dareg.config.channels[-1]))
    pipe.save_pretrained(tmp_path / "trained")
    bundled = bundle_pipeline(tmp_path / "trained", tmp_path / "bundle", {"note": "test"})
    scene = _crop(load_scene(SAMPLE), 32)
    a = GMODiffPipeline.from_pretrained(tmp_path / "trained")(scene)
    b = GMODiffPipeline.from_pretrained(bundled)(scene)
    np.testing.assert_array_equal(a.hdr, b.hdr)
    assert "trained" not in [p.name for p in bundled.rglob("*")]
    saved = json.loads((bundled / "gmodiff_pipeline.json").read_text())["backbone"]
    assert saved["kind"] == "tiny"
    assert saved["vae_widths"] == (list(vae_widths) if vae_widths else None)


def test_refine_switch_is_saved_and_skips_the_refiner(tmp_path):
    pipe = GMODiffPipeline.tiny()
    pipe.refine = False
    pipe.save_pretrained(tmp_path / "p")
    loaded = GMODiffPipeline.from_pretrained(tmp_path / "p")
    assert loaded.refine is False
    scene = _crop(load_scene(SAMPLE), 32)
    coarse = loaded(scene)
    assert coarse.timings["refiner_s"] == 0.0
    np.testing.assert_array_equal(coarse.gain_map, coarse.coarse_gain_map)
    refined = loaded(scene, refine=True)
    assert not np.array_equal(refined.gain_map, coarse.gain_map)
    np.testing.assert_array_equal(refined.coarse_gain_map, coarse.coarse_gain_map)
    result = reconstruct_scene(scene, "gmodiff", weights=tmp_path / "p")
    assert result.method == "gmodiff-dareg-only"
    assert reconstruct_scene(scene, "gmodiff", weights=tmp_path / "p", refine=True).method == "gmodiff"


def test_simulation_overrides_reach_the_training_data():
    from gmodiff.errors import ConfigError
    from gmodiff.train.data import TrainDataConfig, build_train_dataset

    data = build_train_dataset(TrainDataConfig(simulated_items=2, simulation={"ev_spacing_stops": [2, 3]}))
    assert data.simulation.ev_spacing_stops == (2, 3)
    spacings = {round(float(np.log2(data.scene(i).exposure_times[1])), 3) for i in range(2)}
    assert all(2 <= s <= 3 for s in spacings)
    assert build_train_dataset(TrainDataConfig(simulated_items=2)).simulation is None
    with pytest.raises(ConfigError, match="simulation"):
        build_train_dataset(TrainDataConfig(simulated_items=2, simulation={"ev_spacing": 2}))


def test_stage1_warm_start_loads_init_weights(tmp_path):
    from gmodiff.train.dareg import DaRegTrainConfig, build_model

    source = DaReg(DaRegConfig.tiny(mask_head=False))  # what stage 1 saves
    torch.nn.init.constant_(next(source.parameters()), 0.25)
    source.save_pretrained(tmp_path / "w")
    model = build_model(DaRegTrainConfig(stage=1, init_weights=str(tmp_path / "w")))
    assert torch.equal(next(model.parameters()), next(source.parameters()))
    assert all(p.requires_grad for p in model.parameters())


def test_bundle_swaps_in_a_retrained_dareg_with_another_input_layout(tmp_path):
    pipe = GMODiffPipeline.tiny()
    pipe.save_pretrained(tmp_path / "trained")
    torch.manual_seed(3)
    retrained = DaReg(DaRegConfig.tiny(mask_head=True, canonical_inputs=True, merge_input=True))
    retrained.save_pretrained(tmp_path / "dareg")
    bundled = bundle_pipeline(tmp_path / "trained", tmp_path / "bundle", refine=False,
                              dareg=tmp_path / "dareg")
    loaded = GMODiffPipeline.from_pretrained(bundled)
    assert loaded.dareg.config.merge_input and loaded.dareg.config.canonical_inputs
    assert torch.equal(loaded.dareg.merge_gate.weight, retrained.merge_gate.weight)
    assert loaded.refine is False
    result = loaded(_crop(load_scene(SAMPLE), 32))
    assert result.hdr.shape == (32, 32, 3) and np.isfinite(result.hdr).all()
    narrow = DaReg(DaRegConfig.tiny(channels=(16, 32, 64, 128, 64)))
    narrow.save_pretrained(tmp_path / "narrow")
    with pytest.raises(ConfigError, match="tokens"):
        bundle_pipeline(tmp_path / "trained", tmp_path / "bundle2", dareg=tmp_path / "narrow")


@needs_bundle
def test_decode_uses_the_reference_the_network_saw():
    # Frames through a curve far from gamma 2.2: the canonical reference the model's gain maps
    # are relative to differs from the camera's frame, and the benchmarks' DaReg-stage rows
    # once decoded against the latter (off by their ratio).
    pipe = GMODiffPipeline.from_pretrained("default")
    scene = _crop(load_scene(SAMPLE), 96, top=64, left=160)
    scene = dataclasses.replace(scene, frames=[np.asarray(f, np.float32) ** 0.6 for f in scene.frames])
    coarse = pipe(scene, refine=False)
    np.testing.assert_allclose(pipe.decode(coarse.coarse_gain_map, scene), coarse.hdr, rtol=1e-6,
                               atol=1e-7)
    refined = pipe(scene, refine=True)
    np.testing.assert_allclose(pipe.decode(refined.gain_map, scene), refined.hdr, rtol=1e-6, atol=1e-7)
    from gmodiff.gainmap import decode_gain_map

    wrong = decode_gain_map(coarse.coarse_gain_map, np.asarray(scene.reference, np.float32))
    assert np.median(np.abs(np.log(np.maximum(wrong, 1e-6) / np.maximum(coarse.hdr, 1e-6)))) > 0.02
