"""One road from a bracket to the networks: padding has one owner and one mode (the model's)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gmodiff.errors import SceneError
from gmodiff.io.scene import Scene
from gmodiff.inputs.encode import DefaultSpec, scene_inputs
from gmodiff.inputs.padding import crop, pad


def _scene(height: int = 40, width: int = 50, seed: int = 0) -> Scene:
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.05, 0.6, size=(height, width, 3)).astype(np.float32)
    times = np.array([1.0, 4.0, 16.0], dtype=np.float32)
    frames = [np.clip((base * t) ** (1 / 2.2), 0, 1).astype(np.float32) for t in times]
    return Scene(frames=frames, exposure_times=times, name="toy")


def test_pad_uses_the_mode_and_crop_undoes_it():
    x = torch.rand(2, 3, 6, 40, 50) + 1.0
    zeros = pad(x, DefaultSpec(pad_mode="constant"))
    edges = pad(x, DefaultSpec(pad_mode="replicate"))
    assert zeros.shape == edges.shape == (2, 3, 6, 64, 64)
    assert torch.all(zeros[..., 40:, :] == 0) and torch.all(edges[..., 40:, :] >= 1.0)
    assert torch.equal(crop(zeros, (40, 50)), x) and torch.equal(crop(edges, (40, 50)), x)
    assert pad(x[..., :32, :32], DefaultSpec()) is not None
    # reflect cannot pad more than the size itself: it falls back to replicate
    small = torch.rand(1, 3, 5, 7)
    assert torch.equal(pad(small, DefaultSpec(pad_mode="reflect")),
                       pad(small, DefaultSpec(pad_mode="replicate")))


def test_scene_inputs_refuse_brackets_the_networks_cannot_take():
    scene = _scene()
    batch = scene_inputs(scene, DefaultSpec())
    assert batch.inputs.shape == (1, 3, 6, 64, 64) and batch.ldr_short.shape == (1, 3, 64, 64)
    assert batch.size == (40, 50)
    two = Scene(frames=scene.frames[:2], exposure_times=scene.exposure_times[:2])
    with pytest.raises(SceneError, match="3 frames"):
        scene_inputs(two, DefaultSpec())


@pytest.mark.parametrize("overrides", [{"pad_mode": "replicate"}, {"pad_mode": "constant"},
                                       {"pad_mode": "reflect"},
                                       {"canonical_inputs": True, "merge_input": True}],
                         ids=["replicate", "constant", "reflect", "canonical-merge"])
def test_dareg_and_gmodiff_without_refinement_give_the_same_gain_map(tmp_path, overrides):
    """Same weights, same road: ``--method dareg`` and ``--method gmodiff --no-refine`` agree
    bit for bit, whatever the DaReg's pad mode (40×50 needs padding to 64×64) and input layout
    (canonical frames + the classical-merge slot)."""
    from gmodiff.models.backbone import BackboneConfig
    from gmodiff.models.dareg import DaReg, DaRegConfig
    from gmodiff.models.refiner import RefinerConfig
    from gmodiff.pipeline.pipeline import GMODiffPipeline
    from gmodiff.methods import reconstruct_scene

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        dareg = DaReg(DaRegConfig.tiny(**overrides))
        with torch.no_grad():  # non-trivial weights so the padded border matters
            for p in dareg.parameters():
                p.add_(0.05 * torch.randn_like(p))
    pipe = GMODiffPipeline.build(dareg, BackboneConfig(kind="tiny", seed=0),
                                 RefinerConfig.tiny(dareg.config.channels[-1]))
    pipe.save_pretrained(tmp_path / "p")
    scene = _scene()
    alone = reconstruct_scene(scene, "dareg", weights=tmp_path / "p" / "dareg")
    coarse = reconstruct_scene(scene, "gmodiff", weights=tmp_path / "p", refine=False)
    assert alone.gain_map.shape == (40, 50, 3)
    np.testing.assert_array_equal(alone.gain_map, coarse.gain_map)
    np.testing.assert_array_equal(alone.mask, coarse.mask)
    np.testing.assert_array_equal(alone.hdr, coarse.hdr)
    refined = reconstruct_scene(scene, "gmodiff", weights=tmp_path / "p", refine=True)
    np.testing.assert_array_equal(refined.coarse_gain_map, alone.gain_map)
    assert refined.refined and not coarse.refined
