"""Stage-3 training: loss goes down on a fixed batch, exact resume, MS-SSIM, config checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from gmodiff.errors import ConfigError
from gmodiff.train.losses import ms_ssim
from gmodiff.train.refiner import (
    PerceptualLoss, RefinerTrainConfig, build_pipeline, make_optimizer, make_scheduler, refine_batch,
    refiner_loss,
    train_refiner, train_step,
)


class ToyBrackets(Dataset):
    """A few random smooth brackets with ground truth, 64×64."""

    def __init__(self, count: int = 4, size: int = 64, seed: int = 0):
        from gmodiff.data.datasets import make_item

        rng = np.random.default_rng(seed)
        self.items = []
        for _ in range(count):
            low = rng.uniform(0.02, 0.5, size=(size // 8, size // 8, 3))
            radiance = np.kron(low, np.ones((8, 8, 1))).astype(np.float32)
            times = [1.0, 4.0, 16.0]
            frames = [np.clip((radiance * t) ** (1 / 2.2), 0, 1).astype(np.float32) for t in times]
            self.items.append(make_item(frames, times, radiance))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        return self.items[index]

    def batch(self) -> dict:
        """All items stacked into one batch."""
        return {k: torch.stack([item[k] for item in self.items]) for k in self.items[0]}


def _config(tmp_path, **overrides) -> RefinerTrainConfig:
    values = dict(crop_size=64, batch_size=2, lr=1e-3, max_steps=4, log_every=1, val_every=0,
                  checkpoint_every=2, out_dir=str(tmp_path / "run"))
    values.update(overrides)
    return RefinerTrainConfig(**values)


def test_a_few_steps_reduce_the_loss_on_a_fixed_batch(tmp_path):
    config = _config(tmp_path)
    torch.manual_seed(0)
    pipeline = build_pipeline(config)
    pipeline.refiner.train()
    batch = ToyBrackets(2).batch()
    perceptual = PerceptualLoss(config)
    optimizer = make_optimizer(pipeline, config)
    with torch.no_grad():
        before, _ = refiner_loss(refine_batch(pipeline, pipeline.refiner, batch), batch, perceptual, 1.0)
    frozen = {n: p.detach().clone() for n, p in pipeline.refiner.named_parameters() if not p.requires_grad}
    for _ in range(4):
        train_step(pipeline, optimizer, batch, perceptual, config)
    with torch.no_grad():
        after, parts = refiner_loss(refine_batch(pipeline, pipeline.refiner, batch), batch, perceptual, 1.0)
    assert after.item() < before.item()
    assert "ms_ssim" in parts
    for name, p in pipeline.refiner.named_parameters():
        if name in frozen:
            assert torch.equal(p, frozen[name]), f"frozen {name} changed"


def test_skip_lr_scale_gives_the_da_skips_their_own_rate(tmp_path):
    config = _config(tmp_path, skip_lr_scale=10.0)
    pipeline = build_pipeline(config)
    optimizer = make_optimizer(pipeline, config)
    names = {id(p): n for n, p in pipeline.refiner.named_parameters()}
    others, skips = optimizer.param_groups
    assert others["lr"] == pytest.approx(1e-3) and skips["lr"] == pytest.approx(1e-2)
    assert skips["params"] and all(".skip_conv_" in names[id(p)] for p in skips["params"])
    assert not any(".skip_conv_" in names[id(p)] for p in others["params"])
    trainable = sum(p.requires_grad for p in pipeline.refiner.parameters())
    assert len(others["params"]) + len(skips["params"]) == trainable
    with pytest.raises(ConfigError, match="skip_lr_scale"):
        _config(tmp_path, skip_lr_scale=0.0)


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_is_exact(tmp_path, schedule):
    data = ToyBrackets(4)
    short = dict(max_steps=3, checkpoint_every=1, lr_schedule=schedule)
    straight = train_refiner(_config(tmp_path / "a", **short), train_dataset=data, progress=False)
    # The first leg stops early through the time limit, so its schedule is the 3-step one.
    first = train_refiner(_config(tmp_path / "b", **short, max_minutes=1e-9), train_dataset=data,
                          progress=False)
    resumed = train_refiner(_config(tmp_path / "b", **short), resume=True, train_dataset=data,
                            progress=False)
    assert first["steps"] == 1 and resumed["steps"] == straight["steps"] == 3
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "run" / "final" / "refiner.safetensors"))
    b = load_file(str(tmp_path / "b" / "run" / "final" / "refiner.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    checkpoint = torch.load(next((tmp_path / "b" / "run" / "checkpoints").glob("*.pt")),
                            weights_only=False)
    assert all("lora_" in k or "conv_in" in k or k.startswith("proj.") or "skip_conv_" in k
               for k in checkpoint["model"])


def test_cosine_schedule_ends_at_the_final_scale_for_both_groups(tmp_path):
    config = _config(tmp_path, skip_lr_scale=10.0, lr_schedule="cosine", lr_final_scale=0.1,
                     max_steps=8)
    optimizer = make_optimizer(build_pipeline(config), config)
    scheduler = make_scheduler(optimizer, config)
    rates = []
    for _ in range(8):
        optimizer.step()
        scheduler.step()
        rates.append([g["lr"] for g in optimizer.param_groups])
    assert rates[3][0] < 1e-3 and rates == sorted(rates, reverse=True)
    assert rates[-1] == pytest.approx([1e-4, 1e-3])
    with pytest.raises(ConfigError, match="lr_schedule"):
        _config(tmp_path, lr_schedule="linear")


def test_init_pipeline_with_new_dareg_keeps_the_refiner(tmp_path):
    from gmodiff.models.dareg import DaReg, DaRegConfig

    saved = build_pipeline(_config(tmp_path))
    saved.save_pretrained(tmp_path / "pipe")
    other = DaReg(DaRegConfig.tiny())
    torch.nn.init.constant_(next(other.parameters()), 0.5)
    other.save_pretrained(tmp_path / "dareg")
    loaded = build_pipeline(_config(tmp_path, init_pipeline=str(tmp_path / "pipe"),
                                    dareg_weights=str(tmp_path / "dareg")))
    assert torch.equal(next(loaded.dareg.parameters()), next(other.parameters()))
    for key, value in saved.refiner.trainable_state_dict().items():
        assert torch.equal(loaded.refiner.trainable_state_dict()[key], value), key


def test_ms_ssim_behaves():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 64, 64, generator=g)
    assert torch.allclose(ms_ssim(x, x), torch.ones(2), atol=1e-5)
    slightly = ms_ssim(x, (x + 0.05 * torch.randn(x.shape, generator=g)).clamp(0, 1))
    badly = ms_ssim(x, (x + 0.3 * torch.randn(x.shape, generator=g)).clamp(0, 1))
    assert torch.all(badly < slightly) and torch.all(slightly < 1)


def test_config_rejects_latent_gan_and_odd_crops(tmp_path):
    with pytest.raises(ConfigError, match="latent GAN"):
        _config(tmp_path, latent_gan=True)
    with pytest.raises(ConfigError, match="multiple of 32"):
        _config(tmp_path, crop_size=48)
    with pytest.raises(ConfigError, match="DISTS"):
        _config(tmp_path, vgg_weights="vgg.pth")


def test_cli_train_refiner_smoke(tmp_path):
    import yaml

    from gmodiff.cli import main

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({
        "simulated_items": 2, "simulated_procedural": True, "crop_size": 64, "batch_size": 2,
        "max_steps": 1, "checkpoint_every": 1, "val_every": 0, "out_dir": str(tmp_path / "run")}))
    assert main(["train", "refiner", "--config", str(config), "--no-progress"]) == 0
    assert (tmp_path / "run" / "final" / "gmodiff_pipeline.json").is_file()
    assert main(["train", "refiner", "--config", str(tmp_path / "missing.yaml")]) == 2


def test_dists_from_user_weights(tmp_path):
    from gmodiff.errors import CheckpointError
    from gmodiff.train.dists import DISTS
    from gmodiff.train.refiner import PerceptualLoss

    torch.manual_seed(0)
    vgg = {f"features.{k}": v for k, v in DISTS().features.state_dict().items()}
    vgg["classifier.0.weight"] = torch.zeros(2, 2)  # torchvision files also hold the classifier
    torch.save(vgg, tmp_path / "vgg16.pth")
    torch.save({"alpha": torch.rand(1, 1475, 1, 1), "beta": torch.rand(1, 1475, 1, 1)}, tmp_path / "dists.pt")
    config = _config(tmp_path, vgg_weights=str(tmp_path / "vgg16.pth"),
                     dists_weights=str(tmp_path / "dists.pt"))
    loss = PerceptualLoss(config)
    assert loss.name == "dists"
    x = torch.rand(2, 3, 64, 64)
    assert loss(x, x).abs().item() < 1e-5
    y = (x + 0.2 * torch.randn_like(x)).clamp(0, 1).requires_grad_(True)
    value = loss(y, x)
    value.backward()
    assert value.item() > 1e-4 and y.grad is not None and y.grad.abs().sum() > 0
    with pytest.raises(CheckpointError):
        DISTS.from_weights(tmp_path / "dists.pt", tmp_path / "dists.pt")


def test_gate_lr_scale_gives_the_residual_gate_its_own_rate(tmp_path):
    config = _config(tmp_path, gate_lr_scale=10.0, refiner={"residual_gate": True})
    pipeline = build_pipeline(config)
    optimizer = make_optimizer(pipeline, config)
    names = {id(p): n for n, p in pipeline.refiner.named_parameters()}
    gate = [g for g in optimizer.param_groups if g["lr"] == pytest.approx(1e-2)]
    assert len(gate) == 1 and gate[0]["params"]
    assert all(names[id(p)].startswith("residual_gate.") for p in gate[0]["params"])
    with pytest.raises(ConfigError, match="gate_lr_scale"):
        _config(tmp_path, gate_lr_scale=0.0)


def test_refiner_data_follow_the_dareg_layout(tmp_path):
    """A refiner on a canonical/merge-slot DaReg gets items in that layout, whatever the YAML says."""
    from gmodiff.models.dareg import DaReg, DaRegConfig
    from gmodiff.train.refiner import RefinerStage

    dareg = DaReg(DaRegConfig.from_dict({**DaRegConfig.tiny().to_dict(), "canonical_inputs": True,
                                         "merge_input": True}))
    dareg.save_pretrained(tmp_path / "dareg")
    config = _config(tmp_path, dareg_weights=str(tmp_path / "dareg"))
    assert not config.merge_input
    stage = RefinerStage(config)
    stage.build(torch.device("cpu"))
    assert config.canonical_inputs and config.merge_input
