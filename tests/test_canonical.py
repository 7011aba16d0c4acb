"""Canonical inputs, the merge-input DaReg layout and the deep-shadow training sources."""

from __future__ import annotations

import base64
import dataclasses

import numpy as np
import pytest
import torch

from gmodiff.inputs.canonical import canonical_frames, canonicalise_scene, merge_slot
from gmodiff.data.datasets import SimulatedDataset, lamp_room_source
from gmodiff.camera.response import response_by_name
from gmodiff.data.simulate import SimulationConfig, simulate
from gmodiff.data.sources import lamp_room_radiance, procedural_radiance, read_pmndrs_hdri
from gmodiff.gainmap import decode_gain_map
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.inputs.encode import InputLayout, encode_bracket


def _quiet_config(**overrides) -> SimulationConfig:
    return SimulationConfig(motion=False, noise=False, size=(48, 64), **overrides)


def test_canonical_frames_undo_the_camera_curve():
    radiance = procedural_radiance(48, 64, seed=1)
    srgb = simulate(radiance, _quiet_config(response="srgb"), seed=2)
    gamma = simulate(radiance, _quiet_config(response="gamma2.2"), seed=2)
    canonical = canonical_frames(srgb.scene.frames, srgb.response.inverse)
    for ours, expected in zip(canonical, gamma.scene.frames, strict=True):
        # Both are linear**(1/2.2) up to 16-bit quantisation through two different curves.
        assert np.abs(ours - expected).max() < 2e-3
    # Without the curve the sRGB frames differ from the gamma-2.2 encoding by far more.
    assert np.abs(srgb.scene.frames[1] - gamma.scene.frames[1]).max() > 0.02


def test_canonicalise_scene_keeps_ground_truth_and_exposures():
    sim = simulate(procedural_radiance(48, 64, seed=3), _quiet_config(response="srgb"), seed=4)
    scene = canonicalise_scene(sim.scene, sim.response.inverse)
    assert scene.ground_truth is sim.scene.ground_truth
    assert np.array_equal(scene.exposure_times, sim.scene.exposure_times)
    assert not np.array_equal(scene.frames[0], sim.scene.frames[0])


def test_merge_slot_is_hdr_and_its_gain_map():
    sim = simulate(procedural_radiance(48, 64, seed=5), _quiet_config(response="gamma2.2"), seed=6)
    slot = merge_slot(sim.scene)
    assert slot.shape == (48, 64, 6) and slot.dtype == np.float32
    decoded = decode_gain_map(slot[..., 3:], sim.scene.reference)
    assert np.allclose(decoded, np.minimum(slot[..., :3], sim.scene.reference + 1 / 64), atol=1e-4)
    # On a static, noise-free gamma-2.2 bracket the merge is close to the truth.
    assert np.abs(slot[..., :3] - sim.scene.ground_truth).mean() < 0.01
    frames, times = sim.scene.frames, sim.scene.exposure_times
    merged = encode_bracket(frames, times, InputLayout(merge_input=True))
    assert merged.shape == (4, 6, 48, 64)
    assert np.array_equal(merged[3].numpy().transpose(1, 2, 0), slot)
    assert encode_bracket(frames, times, InputLayout()).shape == (3, 6, 48, 64)


def test_merge_input_dareg_keeps_the_plain_networks_gain_map_and_blends_evenly_at_init():
    torch.manual_seed(0)
    plain = DaReg(DaRegConfig.tiny(mask_head=False))
    merged = DaReg(DaRegConfig.tiny(mask_head=False, merge_input=True))
    missing, unexpected = merged.load_state_dict(plain.state_dict(), strict=False)
    assert sorted(missing) == ["intro_merge.bias", "intro_merge.weight", "merge_gate.bias",
                               "merge_gate.weight"] and not unexpected
    frames = torch.rand(1, 3, 6, 40, 50)
    merge = torch.rand(1, 1, 6, 40, 50)
    with torch.no_grad():
        expected = 0.5 * merge[:, 0, 3:] + 0.5 * plain(frames).gain_map
        got = merged(torch.cat([frames, merge], dim=1)).gain_map
    assert torch.allclose(got, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"\(B, 4, 6, H, W\)"):
        merged(frames)


def test_merge_input_gate_learns():
    torch.manual_seed(1)
    model = DaReg(DaRegConfig.tiny(mask_head=False, merge_input=True))
    inputs = torch.rand(2, 4, 6, 32, 32)
    loss = (model(inputs).gain_map - inputs[:, 3, 3:]).abs().mean()
    loss.backward()
    assert model.merge_gate.weight.grad.abs().sum() > 0
    assert model.intro_merge.weight.grad.abs().sum() > 0


def test_lamp_rooms_are_deterministic_and_mostly_deep_shadow():
    first = lamp_room_radiance(64, 96, seed=7)
    assert np.array_equal(first, lamp_room_radiance(64, 96, seed=7))
    assert not np.array_equal(first, lamp_room_radiance(64, 96, seed=8))
    assert np.isfinite(first).all() and first.min() >= 0
    peak = first.max(axis=-1)
    assert (peak < 1e-2 * peak.max()).mean() > 0.5  # a small lamp, a dark room


def test_exposure_shift_scales_the_whole_bracket():
    radiance = procedural_radiance(48, 64, seed=9)
    base = simulate(radiance, _quiet_config(), seed=10)
    darker = simulate(radiance, _quiet_config(exposure_shift_stops=-1.0), seed=10)
    assert darker.t1 == pytest.approx(base.t1 / 2)


def test_simulated_dataset_with_canonical_merge_layout():
    dataset = SimulatedDataset([lamp_room_source()], length=2, crop_size=64, seed=0,
                               layout=InputLayout(canonical_inputs=True, merge_input=True))
    item = dataset[0]
    assert item["inputs"].shape == (4, 6, 64, 64)
    assert torch.equal(dataset[0]["inputs"], item["inputs"])  # seeded per index


def test_curve_jitter_strength_and_range():
    """Zero jitter linearises with the true curve; a range draws each item's strength; bad
    config values are one ConfigError."""
    from gmodiff.errors import ConfigError
    from gmodiff.train.data import TrainDataConfig, build_train_dataset

    layout = InputLayout(canonical_inputs=True)
    exact = SimulatedDataset([lamp_room_source()], length=3, crop_size=48, seed=1, layout=layout,
                             curve_jitter=0.0)
    zero_range = SimulatedDataset([lamp_room_source()], length=3, crop_size=48, seed=1,
                                  layout=layout, curve_jitter=(0.0, 0.0))
    wide = SimulatedDataset([lamp_room_source()], length=3, crop_size=48, seed=1, layout=layout,
                            curve_jitter=(0.1, 0.3))
    for index in range(3):
        a, b = exact.scene(index), zero_range.scene(index)
        assert all(np.array_equal(x, y) for x, y in zip(a.frames, b.frames))
        # same radiance and noise draws, different bend: the frames differ (not the ground truth)
        c = wide.scene(index)
        assert np.array_equal(a.ground_truth, c.ground_truth)
        assert not np.allclose(a.frames[1], c.frames[1])
    with pytest.raises(ConfigError, match="curve_jitter"):
        build_train_dataset(TrainDataConfig(simulated_items=2, canonical_inputs=True,
                                            curve_jitter=[0.3, 0.1]))


def test_pmndrs_module_decodes_and_cleans_negative_ringing(tmp_path):
    import OpenEXR

    pixels = np.full((8, 16, 3), 0.5, np.float32)
    pixels[2, 3] = [-4.0, 0.5, 0.5]  # lossy-compression ringing below zero
    exr = tmp_path / "x.exr"
    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    channels = {c: np.ascontiguousarray(pixels[..., i]) for i, c in enumerate("RGB")}
    with OpenEXR.File(header, channels) as out:
        out.write(str(exr))
    module = tmp_path / "room.exr.js"
    encoded = base64.b64encode(exr.read_bytes()).decode()
    module.write_text(f"export default 'data:application/exr;base64,{encoded}'\n")
    radiance = read_pmndrs_hdri(module)
    assert radiance.shape == (8, 16, 3) and radiance.min() >= 0
    assert radiance[2, 3, 0] == pytest.approx(0.5)


def test_response_inverse_round_trip_used_by_training():
    response = response_by_name("srgb")
    values = np.linspace(0, 1, 11, dtype=np.float32)
    assert np.allclose(response.inverse(response.forward(values)), values, atol=1e-5)
    assert dataclasses.is_dataclass(SimulationConfig())


def test_merge_layers_get_their_own_learning_rate():
    from gmodiff.train.dareg import DaRegTrainConfig, parameter_groups

    config = DaRegTrainConfig(merge_input=True, merge_lr_scale=50.0, lr=1e-4, simulated_items=1)
    model = DaReg(config.model_config())
    body, merge = parameter_groups(model, config)
    assert merge["lr"] == pytest.approx(5e-3) and body["lr"] == pytest.approx(1e-4)
    assert {id(p) for p in merge["params"]} == {id(p) for p in [
        *model.intro_merge.parameters(), *model.merge_gate.parameters()]}
    plain = DaRegTrainConfig(simulated_items=1)
    assert len(parameter_groups(DaReg(plain.model_config()), plain)) == 1
