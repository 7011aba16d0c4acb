"""The gmodiff.pkl loader, checked on a synthetic checkpoint in the exact reference layout."""

from __future__ import annotations

import pytest
import torch

from gmodiff.errors import CheckpointError
from gmodiff.models.backbone import BackboneConfig, load_backbone
from gmodiff.models.official import export_official_checkpoint, load_official_refiner
from gmodiff.models.refiner import GMRefiner, RefinerConfig

TOKENS = 24


@pytest.fixture(scope="module")
def stand_in():
    # A small stand-in with the reference's module names, ranks different per model.
    config = RefinerConfig(rank_unet=4, rank_vae=2, rank_vae_cond=3, token_channels=TOKENS,
                           mask_channels=(16, 32))
    refiner = GMRefiner(load_backbone(BackboneConfig(kind="tiny", seed=5)), config)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in refiner.parameters():
            if p.requires_grad:
                p.add_(0.02 * torch.randn(p.shape, generator=g))
        refiner.proj.mask_encoder[2].running_var.mul_(1.5)
    return refiner.eval()


def _payload(refiner):
    payload = export_official_checkpoint(refiner)
    # The reference also stores its unused condition-VAE decoder skip convs.
    payload["state_dict_vae_c"]["decoder.skip_conv_1.weight"] = torch.zeros(16, 16, 1, 1)
    return payload


def test_layout_matches_the_reference_key_names(stand_in):
    payload = _payload(stand_in)
    unet = payload["state_dict_unet"]
    assert "conv_in.base_layer.weight" in unet and "conv_in.base_layer.bias" in unet
    assert any(k.endswith("to_q.lora_A.default_encoder.weight") for k in unet)
    assert any(k.endswith("lora_B.default_others.weight") for k in unet)
    vae = payload["state_dict_vae"]
    for part in ("conv1", "mlp.0", "mlp.2"):
        assert any(k.startswith(f"decoder.skip_conv_1.{part}.") for k in vae), part
    assert any(k.startswith("quant_conv.lora_A.default_encoder") for k in vae)
    assert "mask_encoder.2.running_mean" in payload["proj"] and "mlp.2.weight" in payload["proj"]
    assert payload["rank_unet"] == 4 and payload["rank_vae"] == 2 and payload["rank_vae_c"] == 3


def test_synthetic_checkpoint_loads_exactly(stand_in, tmp_path):
    path = tmp_path / "gmodiff.pkl"
    torch.save(_payload(stand_in), path)
    loaded = load_official_refiner(path, BackboneConfig(kind="tiny", seed=5))
    ours, theirs = stand_in.trainable_state_dict(), loaded.trainable_state_dict()
    assert ours.keys() == theirs.keys()
    for key in ours:
        assert torch.equal(ours[key], theirs[key]), key
    # Rank from the file, alpha fixed at 8: scale 8/r.
    assert loaded.unet.conv_in.scaling["default_encoder"] == pytest.approx(8 / 4)
    assert loaded.vae.quant_conv.scaling["default_encoder"] == pytest.approx(8 / 2)
    g = torch.Generator().manual_seed(1)
    gm = torch.rand(1, 3, 64, 64, generator=g) * 2 - 1
    args = (gm, 0.5 * gm, torch.rand(1, 1, 64, 64, generator=g), torch.randn(1, 4, TOKENS, generator=g))
    with torch.no_grad():
        assert torch.equal(stand_in(*args), loaded(*args))


def test_broken_checkpoints_are_refused(stand_in, tmp_path):
    payload = _payload(stand_in)
    key = next(k for k in payload["state_dict_unet"] if "lora_A.default_decoder" in k)
    del payload["state_dict_unet"][key]
    with pytest.raises(CheckpointError, match="missing"):
        load_official_refiner(payload, BackboneConfig(kind="tiny", seed=5))
    with pytest.raises(CheckpointError, match="layout"):
        load_official_refiner({"state_dict": {}}, "tiny")
    junk = tmp_path / "junk.pkl"
    junk.write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_official_refiner(junk, "tiny")
    with pytest.raises(CheckpointError, match="not found"):
        load_official_refiner(tmp_path / "none.pkl", "tiny")
