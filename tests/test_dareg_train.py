"""DaReg training: exact resume, stage 2 freezing, validation log, CLI, DDP on 2 CPU processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from dareg_helpers import write_scenes
from gmodiff.cli import main
from gmodiff.errors import CheckpointError, ConfigError
from gmodiff.models.dareg import DaReg
from gmodiff.train.checkpointing import list_checkpoints, load_checkpoint, save_checkpoint
from gmodiff.train.dareg import DaRegTrainConfig, mask_target, train_dareg


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    return write_scenes(tmp_path_factory.mktemp("scenes"), 3, height=40, width=40)


def _config(scenes: Path, out: Path, **overrides) -> DaRegTrainConfig:
    values = dict(stage=1, model="tiny", train_scenes=[str(scenes)], crops_per_scene=4, crop_size=32,
                  batch_size=2, lr=1e-3, lr_step=2, max_steps=6, log_every=1, val_every=0,
                  checkpoint_every=3, keep_last=2, seed=7, out_dir=str(out))
    values.update(overrides)
    return DaRegTrainConfig(**values)


def _train_losses(out: Path) -> list[tuple[int, float, float]]:
    entries = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [(e["step"], e["loss"], e["lr"]) for e in entries if e["split"] == "train"]


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(scenes, tmp_path):
    # 12 crops / batch 2 = 6 steps per epoch: 8 steps cross an epoch boundary after the resume.
    train_dareg(_config(scenes, tmp_path / "a", max_steps=8), progress=False)
    train_dareg(_config(scenes, tmp_path / "b", max_steps=5, checkpoint_every=0), progress=False)
    train_dareg(_config(scenes, tmp_path / "b", max_steps=8), resume=True, progress=False)
    straight, resumed = _train_losses(tmp_path / "a"), _train_losses(tmp_path / "b")
    assert [s for s, *_ in resumed] == list(range(1, 9))
    assert straight == resumed  # bit-identical losses and learning rates, steps 1..8
    assert straight[0][2] != straight[-1][2]  # the step decay did act
    assert [s for s, _ in list_checkpoints(tmp_path / "a" / "checkpoints")] == [6, 8]  # keep_last=2
    a = DaReg.from_pretrained(tmp_path / "a" / "final").state_dict()
    b = DaReg.from_pretrained(tmp_path / "b" / "final").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stage2_trains_only_the_mask_head_and_logs_validation(scenes, tmp_path):
    train_dareg(_config(scenes, tmp_path / "s1", max_steps=2), progress=False)
    stage2 = _config(scenes, tmp_path / "s2", stage=2, init_weights=str(tmp_path / "s1" / "final"),
                     max_steps=2, val_scenes=[str(scenes)], val_every=2)
    train_dareg(stage2, progress=False)
    before = DaReg.from_pretrained(tmp_path / "s1" / "final").state_dict()
    after = DaReg.from_pretrained(tmp_path / "s2" / "final")
    assert after.config.mask_head
    for key, value in after.state_dict().items():
        if key.startswith(("encoder_adapt_convs", "seg_conv_layers")):
            assert key not in before
        else:
            assert torch.equal(value, before[key]), key
    log = [json.loads(line) for line in (tmp_path / "s2" / "log.jsonl").read_text().splitlines()]
    val = [e for e in log if e["split"] == "val"]
    assert val and {"psnr_mu", "psnr_l", "mask_bce", "mask_accuracy"} <= set(val[0])
    assert 0 < val[0]["psnr_mu"] < 100
    assert "bce" in log[0]


def test_mask_target_thresholds_luminance_weighted_error():
    pred = torch.zeros(1, 3, 1, 3)
    gt = torch.zeros(1, 3, 1, 3)
    gt[0, 1, 0, 0] = 0.05   # green error 0.05 · 0.587 ≥ 0.02
    gt[0, 2, 0, 1] = 0.1    # blue error 0.1 · 0.114 < 0.02
    assert mask_target(pred, gt).flatten().tolist() == [1.0, 0.0, 0.0]


def test_checkpoint_round_trip_restores_rng_and_optimizer(tmp_path):
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()
    generator = torch.Generator().manual_seed(5)
    path = save_checkpoint(tmp_path, 1, model, optimizer, generators={"sampler": generator})
    expected = (torch.rand(2), torch.rand(2, generator=generator))
    other = torch.nn.Linear(3, 2)
    other_opt = torch.optim.Adam(other.parameters(), lr=0.1)
    state = load_checkpoint(tmp_path, other, other_opt, generators={"sampler": generator})
    assert state.step == 1 and state.path == path
    assert torch.equal(torch.rand(2), expected[0]) and torch.equal(torch.rand(2, generator=generator), expected[1])
    assert torch.equal(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["step"] == 1
    path.write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)


def test_cli_trains_and_reports_bad_configs(scenes, tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"model": "tiny", "train_scenes": [str(scenes)], "crop_size": 32,
                                      "batch_size": 2, "log_every": 1, "val_every": 0}))
    assert main(["train", "dareg", "--stage", "1", "--config", str(config), "--max-steps", "1",
                 "--out", str(tmp_path / "run"), "--no-progress"]) == 0
    assert (tmp_path / "run" / "final" / "model.safetensors").is_file()
    assert main(["train", "dareg", "--stage", "1", "--config", str(config), "--max-steps", "2",
                 "--out", str(tmp_path / "run"), "--resume", "--no-progress"]) == 0
    assert [s for s, *_ in _train_losses(tmp_path / "run")] == [1, 2]
    config.write_text("model: tiny\nlearning_rate: 1\n")
    assert main(["train", "dareg", "--stage", "1", "--config", str(config)]) == 2
    assert "learning_rate" in capsys.readouterr().err
    assert main(["train", "dareg", "--stage", "2", "--config", str(config).replace("c.yaml", "x.yaml")]) == 2
    with pytest.raises(ConfigError, match="init_weights"):
        DaRegTrainConfig(stage=2)


def test_resume_without_checkpoint_is_a_checkpoint_error(scenes, tmp_path):
    with pytest.raises(CheckpointError, match="nothing to resume"):
        train_dareg(_config(scenes, tmp_path / "none"), resume=True, progress=False)


def test_accelerate_launch_two_cpu_processes(scenes, tmp_path):
    """DDP on gloo: two CPU processes train a few steps through the real CLI."""
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({"model": "tiny", "train_scenes": [str(scenes)], "crop_size": 32,
                                      "crops_per_scene": 4, "batch_size": 2, "log_every": 1,
                                      "val_every": 0, "checkpoint_every": 2,
                                      "out_dir": str(tmp_path / "ddp")}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    with socket.socket() as probe:  # a free port, so parallel test runs do not collide on 29500
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # `accelerate launch --cpu` with several processes goes through mpirun; the torchrun path
    # (`--multi_gpu`) plus ACCELERATE_USE_CPU=1 gives MULTI_CPU DDP over gloo without MPI.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
               "--num_machines", "1", "--main_process_port", str(port), "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "gmodiff", "train", "dareg", "--stage", "1", "--config", str(config),
               "--max-steps", "3", "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    run = json.loads((tmp_path / "ddp" / "train_config.json").read_text())
    assert run["processes"] == 2
    assert [s for s, *_ in _train_losses(tmp_path / "ddp")] == [1, 2, 3]
    assert (tmp_path / "ddp" / "final" / "model.safetensors").is_file()
