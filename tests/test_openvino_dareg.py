"""DaReg compiled by OpenVINO (issue 25's CPU runtime) gives PyTorch's result within its stated
tolerance, is exported once per set of weights, and falls back to PyTorch where it cannot run."""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch

from gmodiff.errors import ConfigError
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.pipeline import openvino_dareg
from gmodiff.pipeline.openvino_dareg import TOLERANCE, OpenVinoDaReg, cpu_runtime
from gmodiff.pipeline.pipeline import GMODiffPipeline

pytest.importorskip("openvino")


def _dareg(seed: int = 0) -> DaReg:
    torch.manual_seed(seed)
    model = DaReg(DaRegConfig.tiny(merge_input=True))
    with torch.no_grad():  # trained-like weights: zero residual scales would make blocks identities
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    return model.eval()


def _inputs(height: int, width: int, seed: int = 1) -> torch.Tensor:
    return torch.rand(1, 4, 6, height, width, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("with_mask", [False, True])
def test_compiled_forward_matches_pytorch(tmp_path, with_mask):
    model = _dareg()
    compiled = OpenVinoDaReg(model, folder=tmp_path)
    for height, width in [(64, 96), (70, 40)]:  # a multiple of 32, and one padded inside
        inputs = _inputs(height, width)
        with torch.no_grad():
            expected = model(inputs, with_mask=with_mask)
        got = compiled(inputs, with_mask=with_mask)
        assert compiled.failed is None
        assert got.gain_map.shape == expected.gain_map.shape == (1, 3, height, width)
        assert (got.gain_map - expected.gain_map).abs().max() < TOLERANCE
        assert got.tokens.shape == expected.tokens.shape
        assert (got.tokens - expected.tokens).abs().max() < 10 * TOLERANCE
        if with_mask:
            assert (got.mask - expected.mask).abs().max() < TOLERANCE
        else:
            assert got.mask is None
    # Each shape compiled once and kept; the one graph read from one exported file.
    assert len(compiled._compiled) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [compiled.graph_path(with_mask).name, "compiled"])


def test_the_graph_is_exported_once_per_set_of_weights(tmp_path, monkeypatch):
    model = _dareg()
    OpenVinoDaReg(model, folder=tmp_path)(_inputs(32, 32), with_mask=False)
    exported = list(tmp_path.iterdir())

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = OpenVinoDaReg(model, folder=tmp_path)
    again(_inputs(32, 32), with_mask=False)
    assert again.failed is None and list(tmp_path.iterdir()) == exported
    other = _dareg(seed=1)  # other weights: another file, so a stale graph is never read
    assert OpenVinoDaReg(other, folder=tmp_path).graph_path(False) != again.graph_path(False)


def test_the_cache_keeps_the_newest_graphs_only(tmp_path, monkeypatch):
    monkeypatch.setattr(openvino_dareg, "MAX_GRAPHS", 2)
    for index, name in enumerate(["a", "b", "c"]):
        stale = tmp_path / f"dareg-{name}.onnx"
        stale.write_bytes(b"old")
        os.utime(stale, (1000 + index, 1000 + index))
    compiled = OpenVinoDaReg(_dareg(), folder=tmp_path)
    compiled(_inputs(32, 32), with_mask=False)
    assert sorted(p.name for p in tmp_path.glob("*.onnx")) == sorted(
        ["dareg-c.onnx", compiled.graph_path(False).name])


def test_compiled_shapes_are_cached_on_disk_within_their_bound(tmp_path, monkeypatch):
    """OpenVINO keeps each compiled shape in compiled/ (0.3 s to load instead of 0.8-1 s to
    compile); the folder keeps the newest MAX_BLOBS, and a shape read from there still matches."""
    monkeypatch.setattr(openvino_dareg, "MAX_BLOBS", 2)
    model = _dareg()
    compiled = OpenVinoDaReg(model, folder=tmp_path)
    for side in (32, 64, 96):
        compiled(_inputs(side, side), with_mask=False)
    blobs = list((tmp_path / "compiled").glob("*.blob"))
    assert len(blobs) == 2
    again = OpenVinoDaReg(model, folder=tmp_path)  # a new process would read its blob
    inputs = _inputs(96, 96, seed=7)
    got = again(inputs, with_mask=False)
    with torch.no_grad():
        expected = model(inputs, with_mask=False)
    assert again.failed is None and (got.gain_map - expected.gain_map).abs().max() < TOLERANCE
    assert len(list((tmp_path / "compiled").glob("*.blob"))) == 2


def test_a_failing_runtime_falls_back_to_pytorch_with_one_warning(tmp_path, monkeypatch):
    model = _dareg()
    compiled = OpenVinoDaReg(model, folder=tmp_path)

    def broken(*args, **kwargs):
        raise RuntimeError("no such device\nsecond line")

    monkeypatch.setattr(compiled, "_request", broken)
    inputs = _inputs(32, 64)
    with pytest.warns(RuntimeWarning, match=r"OpenVINO could not run DaReg \(RuntimeError: no "
                                            r"such device\); running it in PyTorch"):
        got = compiled(inputs, with_mask=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # said once only
        again = compiled(inputs, with_mask=False)
    with torch.no_grad():
        expected = model(inputs, with_mask=False)
    assert torch.equal(got.gain_map, expected.gain_map) and torch.equal(again.gain_map,
                                                                         expected.gain_map)


def test_the_runtime_is_chosen_by_the_environment(monkeypatch):
    model = _dareg()
    monkeypatch.setenv(openvino_dareg.RUNTIME_ENV, "torch")
    assert cpu_runtime(model) is model
    monkeypatch.setenv(openvino_dareg.RUNTIME_ENV, "OpenVINO")
    assert isinstance(cpu_runtime(model), OpenVinoDaReg)
    monkeypatch.setenv(openvino_dareg.RUNTIME_ENV, "tensorrt")
    with pytest.raises(ConfigError, match="GMODIFF_CPU_RUNTIME='tensorrt'"):
        cpu_runtime(model)
    monkeypatch.delenv(openvino_dareg.RUNTIME_ENV)
    monkeypatch.setattr(openvino_dareg, "openvino_available", lambda: False)
    assert cpu_runtime(model) is model  # not installed: PyTorch, silently


def test_the_pipeline_runs_dareg_compiled_only_on_cpu_in_fp32():
    pipe = GMODiffPipeline.tiny(seed=0).optimise_for_cpu(bf16=False)
    assert isinstance(pipe.dareg_forward, OpenVinoDaReg) and pipe.dareg_forward.dareg is pipe.dareg
    pipe.dareg = DaReg(pipe.dareg.config).eval()  # a replaced DaReg is never run from a stale graph
    assert pipe.dareg_forward is pipe.dareg
    # AMX hosts keep PyTorch's measured bf16 road.
    assert GMODiffPipeline.tiny(seed=0).optimise_for_cpu(bf16=True).dareg_forward.__class__ is DaReg


def test_a_whole_image_forward_stays_in_pytorch_and_tiles_take_the_compiled_road(monkeypatch):
    """Compiling a shape costs more than one compiled forward saves (speed.md: 1 MP), so only
    the tiled road, where every tile shares one compiled shape, runs OpenVINO."""
    from dareg_helpers import synthetic_scene
    from gmodiff.inputs.encode import NetworkInputs
    from gmodiff.memory import MemoryPlan

    calls = []

    def recorded(self, inputs, with_mask=True):  # counts compiled calls, answers from PyTorch
        calls.append(tuple(inputs.shape[-2:]))
        return self.dareg(inputs, with_mask=with_mask)

    monkeypatch.setattr(OpenVinoDaReg, "__call__", recorded)
    pipe = GMODiffPipeline.tiny(seed=0).optimise_for_cpu(bf16=False)
    batch = NetworkInputs(torch.rand(1, 3, 6, 64, 64), torch.rand(1, 3, 64, 64), (64, 64))
    assert pipe.predict_coarse(batch).gain_map.shape[-2:] == (64, 64) and not calls
    plan = MemoryPlan(budget=0, dareg_tile=64, dareg_overlap=32, latent_tile=96,
                      latent_overlap=32, vae_tile=None, estimate=0)
    pipe(synthetic_scene(3, height=96, width=128), seed=0, plan=plan, refine=False)
    assert len(calls) > 1  # every tile went through the compiled forward
