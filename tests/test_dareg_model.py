"""DaReg network: shapes, ranges, stage-2 freezing, persistence and reference-layout loading."""

from __future__ import annotations

import json

import pytest
import torch

from gmodiff.errors import CheckpointError, ConfigError, SceneError
from gmodiff.models.checkpoints import load_reference_checkpoint, load_reference_state_dict
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.models.nafnet import LayerNorm2d, NAFBlock


def _tiny(**overrides) -> DaReg:
    torch.manual_seed(0)
    return DaReg(DaRegConfig.tiny(**overrides)).eval()


def _perturb(model: DaReg) -> None:
    # Fresh NAFBlocks are identities (β = γ = 0); give them weight so tests see real behaviour.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith(("beta", "gamma")):
                param.normal_(0, 0.1)


@pytest.mark.parametrize("height,width", [(37, 53), (32, 32), (1, 70)])
def test_shapes_and_ranges_at_any_size(height, width):
    model = _tiny()
    _perturb(model)
    out = model(torch.rand(2, 3, 6, height, width))
    assert out.gain_map.shape == (2, 3, height, width)
    assert out.mask.shape == (2, 1, height, width)
    padded = [-(-s // 32) * 32 for s in (height, width)]
    assert out.tokens.shape == (2, padded[0] * padded[1] // 1024, 128)
    assert 0 <= out.gain_map.min() and out.gain_map.max() <= 1
    assert 0 <= out.mask.min() and out.mask.max() <= 1


def test_mask_head_disabled_returns_none():
    out = _tiny(mask_head=False)(torch.rand(1, 3, 6, 40, 40))
    assert out.mask is None and out.gain_map.shape == (1, 3, 40, 40)


def test_layernorm_normalises_channels_and_nafblock_starts_as_identity():
    x = torch.randn(2, 8, 5, 5) * 3 + 1
    y = LayerNorm2d(8)(x)
    assert torch.allclose(y.mean(1), torch.zeros(2, 5, 5), atol=1e-5)
    assert torch.allclose(y.var(1, unbiased=False), torch.ones(2, 5, 5), atol=1e-3)
    assert torch.equal(NAFBlock(8)(x), x)


def test_fused_layernorm_matches_the_eight_pass_formula():
    # LayerNorm2d runs as one F.layer_norm (speed); it must equal the textbook per-pixel
    # channel normalisation, in both memory layouts.
    norm = LayerNorm2d(8)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2, 8, 7, 9) * 3 + 1
    centred = x - x.mean(1, keepdim=True)
    expected = centred * torch.rsqrt(centred.pow(2).mean(1, keepdim=True) + norm.eps)
    expected = expected * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]
    for layout in (torch.contiguous_format, torch.channels_last):
        assert torch.allclose(norm(x.contiguous(memory_format=layout)), expected, atol=1e-5)


def test_padding_does_not_leak_across_the_crop():
    # The output at an odd size equals the same crop of a run on a pre-padded input.
    model = _tiny()
    _perturb(model)
    x = torch.rand(1, 3, 6, 40, 50)
    full = model(torch.nn.functional.pad(x.reshape(1, 18, 40, 50), (0, 14, 0, 24), mode="replicate").reshape(1, 3, 6, 64, 64))
    cropped = model(x)
    assert torch.allclose(cropped.gain_map, full.gain_map[..., :40, :50], atol=1e-5)


def test_stage2_trains_only_the_mask_head():
    model = _tiny().train()
    _perturb(model)
    model.freeze_backbone()
    out = model(torch.rand(1, 3, 6, 32, 32))
    loss = torch.nn.functional.binary_cross_entropy(out.mask, torch.ones_like(out.mask))
    loss.backward()
    head = {id(p) for p in model.mask_head_parameters()}
    assert head
    for name, param in model.named_parameters():
        if id(param) in head:
            assert param.requires_grad and param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert not param.requires_grad and param.grad is None, name


def test_bgr_channel_order_swaps_input_and_output():
    rgb = _tiny()
    _perturb(rgb)
    bgr = DaReg(DaRegConfig.tiny(channel_order="bgr")).eval()
    bgr.load_state_dict(rgb.state_dict())
    x = torch.rand(1, 3, 6, 32, 32)
    swapped = x[:, :, [2, 1, 0, 5, 4, 3]]
    assert torch.allclose(bgr(x).gain_map, rgb(swapped).gain_map[:, [2, 1, 0]], atol=1e-6)


def test_save_and_load_pretrained_round_trip(tmp_path):
    model = _tiny()
    _perturb(model)
    model.save_pretrained(tmp_path / "w")
    assert json.loads((tmp_path / "w" / "config.json").read_text())["channels"] == [16, 32, 64, 128, 128]
    again = DaReg.from_pretrained(tmp_path / "w").eval()
    x = torch.rand(1, 3, 6, 32, 32)
    assert torch.equal(model(x).gain_map, again(x).gain_map)
    assert not list(tmp_path.glob("w/.*"))  # no temp files left behind


def test_from_pretrained_missing_folder_is_a_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="config.json"):
        DaReg.from_pretrained(tmp_path)


def test_a_config_json_asking_for_a_huge_network_is_refused_before_building_it(
        tmp_path, monkeypatch):
    model = _tiny()
    model.save_pretrained(tmp_path / "w")
    config_path = tmp_path / "w" / "config.json"
    for field, value in (("channels", [16, 32, 64, 128, 100000]), ("encoder_blocks", [1, 1, 1, 500]),
                         ("mask_channels", 0), ("down_scales", [2, 2, 2, 64])):
        config = json.loads(config_path.read_text())
        config[field] = value
        config_path.write_text(json.dumps(config))
        built = []
        # Refused, not built (a 100k-wide net takes minutes): checked by construction, not by
        # a wall-clock bound that a loaded machine can miss.
        with monkeypatch.context() as patch:
            patch.setattr(DaReg, "__init__", lambda self, *a, **k: built.append(a) or 1 / 0)
            with pytest.raises(CheckpointError, match="config.json has invalid values"):
                DaReg.from_pretrained(tmp_path / "w")
        assert not built
    DaRegConfig.paper()  # the published size stays inside the bounds


def test_config_rejects_inconsistent_sizes():
    with pytest.raises(ConfigError):
        DaRegConfig(encoder_blocks=(1, 1))
    with pytest.raises(ConfigError, match="unknown"):
        DaRegConfig.from_dict({"widths": [1]})


def test_load_reference_state_dict_reports_problems():
    model = _tiny()
    state = {f"module.{k}": v.clone() for k, v in model.state_dict().items()}
    load_reference_state_dict(model, {"state_dict": state})
    del state["module.outconv.bias"]
    state["module.extra.weight"] = torch.zeros(1)
    state["module.intro_0.weight"] = torch.zeros(1, 6, 3, 3)
    with pytest.raises(CheckpointError) as err:
        load_reference_state_dict(model, {"state_dict": state}, source="x.pth")
    message = str(err.value)
    assert "missing keys: outconv.bias" in message
    assert "unexpected keys: extra.weight" in message
    assert "intro_0.weight" in message and "x.pth" in message


@pytest.mark.slow  # ~5 s alone, ~15 s on a busy 2-core machine; still runs in `make test`
def test_paper_size_reference_checkpoint_round_trip(tmp_path):
    """The paper preset has ~48 M parameters and loads a ``dareg_mask.pth``-style file strictly."""
    torch.manual_seed(0)
    model = DaReg(DaRegConfig.paper())
    assert 47e6 < model.num_parameters() < 49.5e6
    state = {f"module.{k}": v for k, v in model.state_dict().items()}
    # Reference layout samples a few keys the released file is known to contain.
    for key in ("intro_1.weight", "fusion.att32.weight", "encoders.3.7.sca.1.weight",
                "downs.3.0.weight", "ups.0.0.weight", "middle_blks.0.beta",
                "encoder_adapt_convs.3.weight", "seg_conv_layers.4.bias"):
        assert f"module.{key}" in state, key
    assert state["module.downs.3.0.weight"].shape == (1024, 512, 4, 4)
    torch.save({"state_dict": state}, tmp_path / "dareg_mask.pth")
    loaded = DaReg.from_pretrained(tmp_path / "dareg_mask.pth")
    assert loaded.config.channel_order == "bgr" and loaded.config.pad_mode == "constant"
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    with pytest.raises(CheckpointError, match="unexpected keys: encoder_adapt_convs"):
        load_reference_checkpoint(DaReg(DaRegConfig.paper(mask_head=False)), tmp_path / "dareg_mask.pth")


def test_corrupt_checkpoint_file_is_a_checkpoint_error(tmp_path):
    bad = tmp_path / "dareg_mask.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="dareg_mask.pth"):
        load_reference_checkpoint(_tiny(), bad)


def test_predict_scene_returns_arrays_at_scene_size(tmp_path):
    import numpy as np

    from gmodiff.gainmap import decode_gain_map
    from gmodiff.io.scene import Scene
    from gmodiff.methods import ReconstructOptions, load_method

    model = _tiny()
    _perturb(model)
    model.save_pretrained(tmp_path / "w")
    rng = np.random.default_rng(0)
    frames = [rng.uniform(0, 1, (21, 30, 3)).astype(np.float32) for _ in range(3)]
    scene = Scene(frames=frames, exposure_times=np.array([1.0, 4.0, 16.0]))
    options = ReconstructOptions(weights=tmp_path / "w")
    loaded = load_method("dareg", options)
    assert load_method("dareg", options) is loaded  # cached for batches of scenes
    result = loaded.reconstruct(scene, options)
    assert result.hdr.shape == result.gain_map.shape == (21, 30, 3) and result.mask.shape == (21, 30)
    assert np.allclose(result.hdr, decode_gain_map(result.gain_map, frames[1]), atol=1e-6)
    with pytest.raises(SceneError, match="3 frames"):
        loaded.reconstruct(Scene(frames=frames[:2], exposure_times=np.array([1.0, 4.0])), options)
