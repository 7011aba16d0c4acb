"""Inference: the ``dareg`` branch of reconstruct_scene and ``gmodiff reconstruct --method dareg``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dareg_helpers import synthetic_scene
from gmodiff.errors import ConfigError
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.reconstruct import available_methods, reconstruct_scene


@pytest.fixture()
def weights(tmp_path):
    torch.manual_seed(0)
    model = DaReg(DaRegConfig.tiny())
    return model.save_pretrained(tmp_path / "dareg")


def test_reconstruct_scene_dareg_branch(weights):
    scene = synthetic_scene(1, 40, 44)
    result = reconstruct_scene(scene, "dareg", weights=weights)
    assert "dareg" in available_methods()
    assert result.method == "dareg" and result.hdr.shape == (40, 44, 3)
    assert result.gain_map.shape == (40, 44, 3) and result.mask.shape == (40, 44)
    assert np.isfinite(result.hdr).all() and {"load", "dareg", "total"} <= set(result.timings)
    with pytest.raises(ConfigError, match="weights"):
        reconstruct_scene(scene, "dareg")
