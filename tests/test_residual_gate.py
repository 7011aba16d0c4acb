"""RefinerConfig.residual_gate: an untrained refiner returns DaReg's gain map, training moves it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmodiff.models.backbone import BackboneConfig
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.models.refiner import RefinerConfig
from gmodiff.pipeline.pipeline import GMODiffPipeline
from gmodiff.train.refiner import (
    PerceptualLoss,
    RefinerTrainConfig,
    build_pipeline,
    make_optimizer,
    refine_batch,
    train_step,
)


def _pipeline(gate: bool) -> GMODiffPipeline:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dareg = DaReg(DaRegConfig.tiny())
    config = RefinerConfig.tiny(dareg.config.channels[-1])
    config.residual_gate = gate
    return GMODiffPipeline.build(dareg, BackboneConfig(kind="tiny", seed=0), config)


def _scene(height=40, width=56, seed=0):
    from gmodiff.io.scene import Scene

    rng = np.random.default_rng(seed)
    low = rng.uniform(0.02, 0.6, size=(height // 8 + 1, width // 8 + 1, 3))
    radiance = np.kron(low, np.ones((8, 8, 1)))[:height, :width].astype(np.float32)
    times = np.array([1.0, 4.0, 16.0])
    frames = [np.clip((radiance * t) ** (1 / 2.2), 0, 1).astype(np.float32) for t in times]
    return Scene(frames=frames, exposure_times=times, ground_truth=radiance)


def test_gate_off_is_the_spec_layout_and_on_adds_only_the_gate():
    off, on = _pipeline(False), _pipeline(True)
    assert RefinerConfig().residual_gate is False  # default: spec output, official layout
    off_state, on_state = off.refiner.state_dict(), on.refiner.state_dict()
    extra = set(on_state) - set(off_state)
    assert extra and all(k.startswith("residual_gate.") for k in extra)
    assert set(off_state) <= set(on_state)
    for key, value in off_state.items():  # built last: every other initial weight is unchanged
        assert torch.equal(value, on_state[key]), key
    assert on.refiner.parameter_counts()["residual_gate"] > 0
    assert all(p.requires_grad for p in on.refiner.residual_gate.parameters())


def test_at_initialisation_refined_is_dareg():
    pipe = _pipeline(True)
    scene = _scene()
    out = pipe(scene, refine=True)
    assert np.abs(out.gain_map - out.coarse_gain_map).max() <= 1e-6
    coarse_hdr = pipe(scene, refine=False).hdr
    assert np.abs(out.hdr - coarse_hdr).max() <= 1e-5 * max(1.0, float(coarse_hdr.max()))
    # The refiner itself returns its input gain map bit for bit.
    g = torch.Generator().manual_seed(1)
    gm = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    tokens = torch.randn(1, 4, pipe.refiner.config.token_channels, generator=g)
    with torch.no_grad():
        refined = pipe.refiner(gm, gm * 0.5, torch.rand(1, 1, 64, 64, generator=g), tokens)
    assert torch.equal(refined, gm)
    # Without the gate the untrained refiner is far from DaReg (what the gate fixes).
    plain = _pipeline(False)(scene, refine=True)
    assert np.abs(plain.gain_map - plain.coarse_gain_map).max() > 1e-2


def test_a_training_step_moves_it_away_from_dareg(tmp_path):
    from test_train_refiner import ToyBrackets  # same folder

    config = RefinerTrainConfig(crop_size=64, batch_size=2, lr=1e-3, max_steps=2, log_every=1,
                                val_every=0, checkpoint_every=2, out_dir=str(tmp_path / "run"),
                                refiner={"residual_gate": True})
    pipeline = build_pipeline(config)
    assert pipeline.refiner.residual_gate is not None
    pipeline.refiner.train()
    batch = ToyBrackets(2).batch()
    perceptual = PerceptualLoss(config)
    optimizer = make_optimizer(pipeline, config)
    with torch.no_grad():
        coarse = pipeline.dareg(batch["inputs"]).gain_map
        start = refine_batch(pipeline, pipeline.refiner, batch)
    assert (start - coarse).abs().max() <= 1e-6
    lora_before = {n: p.detach().clone() for n, p in pipeline.refiner.named_parameters()
                   if "lora_" in n}
    train_step(pipeline, optimizer, batch, perceptual, config)
    with torch.no_grad():
        moved = refine_batch(pipeline, pipeline.refiner, batch)
    assert (moved - coarse).abs().max() > 1e-5
    train_step(pipeline, optimizer, batch, perceptual, config)  # the gate is open: LoRA learns too
    assert any(not torch.equal(p, lora_before[n]) for n, p in pipeline.refiner.named_parameters()
               if n in lora_before)


def test_gate_round_trips_through_save_and_load(tmp_path):
    pipe = _pipeline(True)
    with torch.no_grad():
        for p in pipe.refiner.residual_gate.parameters():
            p.add_(0.01)
    pipe.save_pretrained(tmp_path / "p")
    loaded = GMODiffPipeline.from_pretrained(tmp_path / "p")
    assert loaded.refiner.config.residual_gate is True
    for (name, a), (_, b) in zip(pipe.refiner.residual_gate.state_dict().items(),
                                 loaded.refiner.residual_gate.state_dict().items()):
        assert torch.equal(a, b), name
    scene = _scene(seed=2)
    np.testing.assert_array_equal(pipe(scene).gain_map, loaded(scene).gain_map)


@pytest.mark.parametrize("gate", [False, True])
def test_config_round_trip(gate):
    config = RefinerConfig.tiny()
    config.residual_gate = gate
    assert RefinerConfig.from_dict(config.to_dict()).residual_gate is gate


def test_init_pipeline_with_gate_starts_a_trained_refiner_at_its_dareg(tmp_path):
    trained = _pipeline(False)  # stands in for a trained refiner: its output is not DaReg's
    trained.save_pretrained(tmp_path / "trained")
    config = RefinerTrainConfig(init_pipeline=str(tmp_path / "trained"), out_dir=str(tmp_path / "r"),
                                refiner={"residual_gate": True})
    pipeline = build_pipeline(config)
    assert pipeline.refiner.config.residual_gate is True
    trainable = {n for n, p in pipeline.refiner.named_parameters() if p.requires_grad}
    assert any(n.startswith("residual_gate.") for n in trainable) and any("lora_" in n for n in trainable)
    out = pipeline(_scene(seed=3), refine=True)
    assert np.abs(out.gain_map - out.coarse_gain_map).max() <= 1e-6


def test_fine_tune_from_a_bundle_keeps_its_provenance(tmp_path):
    """A refiner fine-tuned from ``init_pipeline`` saves that pipeline's provenance (where its
    backbone was trained), so re-bundling it does not forget it."""
    import json

    from gmodiff.pipeline.pipeline import PIPELINE_CONFIG
    from gmodiff.train.refiner import RefinerStage

    _pipeline(False).save_pretrained(tmp_path / "bundle")
    config_path = tmp_path / "bundle" / PIPELINE_CONFIG
    config = json.loads(config_path.read_text())
    config["provenance"] = {"trained_on_backbone": {"kind": "folder", "path": "runs/prior/final"}}
    config_path.write_text(json.dumps(config))
    stage = RefinerStage(RefinerTrainConfig(init_pipeline=str(tmp_path / "bundle"),
                                            out_dir=str(tmp_path / "r"), refiner={"residual_gate": True}))
    stage.build(torch.device("cpu"))
    stage.save_final(tmp_path / "final")
    saved = json.loads((tmp_path / "final" / PIPELINE_CONFIG).read_text())
    assert saved["provenance"] == config["provenance"]
    assert GMODiffPipeline.from_pretrained(tmp_path / "final").refiner.config.residual_gate


def test_gate_in_row_bands_matches_the_whole_image():
    from gmodiff.models.refiner import ResidualGate

    torch.manual_seed(0)
    gate = ResidualGate()
    torch.nn.init.normal_(gate.conv_out.weight, std=0.3)  # an opened gate, not the zero start
    coarse, decoded = torch.rand(1, 3, 37, 29) * 2 - 1, torch.rand(1, 3, 37, 29) * 2 - 1
    mask = torch.rand(1, 1, 37, 29)
    whole = gate(coarse, decoded, mask)  # height ≤ band_rows: one pass
    gate.band_rows = 8  # 5 bands, the last one short
    with torch.no_grad():
        banded = gate(coarse, decoded, mask)
    assert not torch.equal(whole, coarse)
    torch.testing.assert_close(banded, whole.detach(), rtol=0, atol=1e-6)
