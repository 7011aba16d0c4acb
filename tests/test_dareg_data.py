"""Training datasets: items, augmentation, determinism, pre-cut crops, simulation, mixing."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from torch.utils.data import ConcatDataset, DataLoader

from dareg_helpers import write_scenes
from gmodiff.cli import main
from gmodiff.data.crops import crop_origins
from gmodiff.data.datasets import (
    AUGMENT_MODES, FullSceneDataset, PrecutCropDataset, SceneCropDataset, augment, make_item,
)
from gmodiff.errors import SceneError
from gmodiff.gainmap import decode_gain_map


def test_augment_gives_eight_distinct_modes():
    square = np.arange(9, dtype=np.float32).reshape(3, 3, 1)
    assert len({augment(square, m).tobytes() for m in range(AUGMENT_MODES)}) == 8
    assert np.array_equal(augment(square, 0), square)
    assert augment(np.zeros((2, 3, 1)), 1).shape == (3, 2, 1)


def test_item_gain_map_decodes_back_to_ground_truth():
    rng = np.random.default_rng(0)
    frames = [rng.uniform(0.1, 0.9, (8, 8, 3)).astype(np.float32) for _ in range(3)]
    gt = (frames[1] * 0.5).astype(np.float32)
    item = make_item(frames, [1, 4, 16], gt)
    assert item["inputs"].shape == (3, 6, 8, 8)
    decoded = decode_gain_map(item["gt_gain_map"], item["ldr_ref"])
    assert torch.allclose(decoded, item["gt_hdr"], atol=1e-5)
    assert torch.equal(item["ldr_short"], torch.from_numpy(frames[0]).permute(2, 0, 1))


def test_scene_crops_are_deterministic_per_index_and_epoch(tmp_path):
    write_scenes(tmp_path, 2)
    data = SceneCropDataset(tmp_path, crop_size=32, crops_per_scene=3, seed=1)
    assert len(data) == 6
    first = data[4]
    assert first["inputs"].shape == (3, 6, 32, 32) and first["gt_hdr"].shape == (3, 32, 32)
    assert torch.equal(data[4]["inputs"], first["inputs"])
    data.set_epoch(1)
    assert not torch.equal(data[4]["inputs"], first["inputs"])


def test_scene_smaller_than_crop_is_a_scene_error(tmp_path):
    write_scenes(tmp_path, 1)
    with pytest.raises(SceneError, match="smaller"):
        SceneCropDataset(tmp_path, crop_size=64)[0]


def test_crop_origins_cover_the_image():
    assert crop_origins(10, 4, 3) == [0, 3, 6]
    assert crop_origins(11, 4, 3) == [0, 3, 6, 7]
    assert crop_origins(3, 4, 3) == []


def test_data_crops_command_and_precut_dataset(tmp_path):
    write_scenes(tmp_path / "scenes", 2, height=48, width=56)
    assert main(["data", "crops", str(tmp_path / "scenes"), str(tmp_path / "crops"),
                 "--size", "32", "--stride", "16"]) == 0
    # 48 → origins 0, 16; 56 → 0, 16, 24: 6 crops per scene
    data = PrecutCropDataset(tmp_path / "crops", augment=False)
    assert len(data) == 12
    full = FullSceneDataset(tmp_path / "scenes")[0]
    crop = data[1]  # scene00, top 0, left 16
    assert torch.allclose(crop["inputs"], full["inputs"][..., 0:32, 16:48], atol=1e-4)
    mixed = ConcatDataset([data, SceneCropDataset(tmp_path / "scenes", crop_size=32, crops_per_scene=2)])
    batch = next(iter(DataLoader(mixed, batch_size=16, shuffle=True)))
    assert batch["inputs"].shape == (16, 3, 6, 32, 32)


def test_data_crops_missing_source_exits_2(tmp_path, capsys):
    assert main(["data", "crops", str(tmp_path / "nope"), str(tmp_path / "out")]) == 2
    assert "nope" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("gmodiff.data.simulate") is None,
                    reason="simulator not available")
def test_simulated_dataset_is_seeded_per_index():
    from gmodiff.data.datasets import SimulatedDataset, procedural_source

    data = SimulatedDataset([procedural_source()], length=4, crop_size=32, seed=3)
    item = data[2]
    assert item["inputs"].shape == (3, 6, 32, 32)
    assert 0 <= item["gt_gain_map"].min() and item["gt_gain_map"].max() <= 1
    assert torch.equal(data[2]["inputs"], item["inputs"])
    assert not torch.equal(data[1]["inputs"], item["inputs"])
