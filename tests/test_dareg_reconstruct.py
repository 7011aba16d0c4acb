"""Inference: the ``dareg`` branch of reconstruct_scene and ``gmodiff reconstruct --method dareg``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dareg_helpers import synthetic_scene
from gmodiff.errors import ConfigError
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.methods import available_methods, reconstruct_scene


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


def test_cli_reconstruct_dareg_with_debug_maps_and_batch(weights, tmp_path):
    from gmodiff.cli import main
    from gmodiff.io.hdr import read_hdr
    from gmodiff.io.ldr import read_ldr
    from gmodiff.io.scene import save_scene

    for seed in range(2):
        save_scene(synthetic_scene(seed, 36, 40), tmp_path / "scenes" / f"s{seed}")
    out = tmp_path / "one.exr"
    assert main(["reconstruct", str(tmp_path / "scenes" / "s0"), "-o", str(out), "--method", "dareg",
                 "--weights", str(weights), "--debug-maps"]) == 0
    assert read_hdr(out).shape == (36, 40, 3)
    assert read_ldr(tmp_path / "one.gain_map.png").pixels.shape == (36, 40, 3)
    assert read_ldr(tmp_path / "one.mask.png").bit_depth == 8
    assert main(["reconstruct", str(tmp_path / "scenes"), "-o", str(tmp_path / "many"), "--method",
                 "dareg", "--weights", str(weights), "--no-progress"]) == 0
    assert sorted(p.name for p in (tmp_path / "many").iterdir()) == ["s0.exr", "s1.exr"]


@pytest.mark.parametrize("args,message", [
    (["--method", "dareg"], "--weights"),
    (["--method", "deghost", "--debug-maps"], "learned method"),
    (["--method", "dareg", "--weights", "missing-folder"], "missing-folder"),
])
def test_cli_reconstruct_dareg_bad_options_exit_2(args, message, tmp_path, capsys):
    from gmodiff.cli import main
    from gmodiff.io.scene import save_scene

    save_scene(synthetic_scene(0, 32, 32), tmp_path / "s0")
    out = tmp_path / "out.exr"
    assert main(["reconstruct", str(tmp_path / "s0"), "-o", str(out), *args]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
