"""Fuzz ``gmodiff_pipeline.json``: hostile field values must load or raise ``CheckpointError``.

Two levels. ``read_pipeline_config`` (the bounds check every load runs first) gets hundreds of
configs with fields replaced by hostile values (huge, negative, NaN, wrong types, missing,
unknown keys): each must pass or be a one-line CheckpointError naming the file, within 2 s and a
few MB, without building anything. Then a few dozen near-valid configs go all the way through
``GMODiffPipeline.from_pretrained`` on a tiny pipeline: whatever the bounds accept must build
(or be refused as not fitting the weights) as a CheckpointError, never a traceback.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fuzz_support import FUZZ_SETTINGS, guarded_call, time_limit
from gmodiff.errors import CheckpointError

DELETE = object()
MAX_BUILDS = 12
"""Full loads in the second test: each builds a tiny pipeline (about a second)."""

FIELDS = [
    ("format",), ("version",), ("refine",), ("refiner_weights",), ("tile",), ("backbone",),
    ("refiner",),
    ("backbone", "kind"), ("backbone", "path"), ("backbone", "seed"), ("backbone", "vae_widths"),
    ("refiner", "rank_unet"), ("refiner", "rank_vae"), ("refiner", "rank_vae_cond"),
    ("refiner", "lora_alpha"), ("refiner", "timestep"), ("refiner", "token_channels"),
    ("refiner", "mask_channels"), ("refiner", "sample_latents"), ("refiner", "seed"),
    ("refiner", "target_modules"),
    ("tile", "latent_tile"), ("tile", "latent_overlap"), ("tile", "vae_tile"),
    ("tile", "vae_overlap"),
]

hostile_values = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, 1, -1, 7, 8, 15, 16, 96, 999, 1000, 2**31, 2**63, 10**9]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.booleans(),
    st.none(),
    st.lists(st.one_of(st.integers(-(10**9), 10**9), st.text(max_size=4)), max_size=6),
    st.dictionaries(st.text(max_size=8), st.one_of(st.integers(), st.lists(st.text(max_size=6),
                                                                           max_size=3)),
                    max_size=3),
    st.just(DELETE),
)
edits = st.lists(st.tuples(st.sampled_from(FIELDS), hostile_values), min_size=1, max_size=3)


def _apply(config: dict, where: tuple[str, ...], value) -> None:
    node = config
    for key in where[:-1]:
        node = node.get(key) if isinstance(node, dict) else None
        if not isinstance(node, dict):
            return  # an earlier edit replaced the parent
    if value is DELETE:
        node.pop(where[-1], None)
    else:
        node[where[-1]] = value


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory) -> Path:
    from gmodiff.pipeline.pipeline import GMODiffPipeline

    folder = tmp_path_factory.mktemp("fuzzpipe") / "tiny"
    GMODiffPipeline.tiny(seed=0).save_pretrained(folder)
    return folder


def _config(pipeline: Path) -> dict:
    return json.loads((pipeline / "gmodiff_pipeline.json").read_text())


def test_hostile_pipeline_configs_are_refused_before_building(tmp_path, tiny_pipeline, monkeypatch):
    """The bounds check alone: no network is built, whatever the values."""
    from gmodiff.pipeline import folder as pipeline_config
    from gmodiff.pipeline.folder import read_pipeline_config

    def never(*args, **kwargs):
        raise AssertionError("the config check built a network")

    monkeypatch.setattr(pipeline_config, "build_refiner", never)
    seed_config = _config(tiny_pipeline)
    path = tmp_path / "gmodiff_pipeline.json"
    outcomes = []

    @FUZZ_SETTINGS
    @given(edits=edits, extra=st.booleans())
    def check(edits, extra):
        config = json.loads(json.dumps(seed_config))
        for where, value in edits:
            _apply(config, where, value)
        if extra:
            config["refiner"] = dict(config.get("refiner") or {}, surprise=1) \
                if isinstance(config.get("refiner"), dict) else config.get("refiner")
        path.write_text(json.dumps(config))  # NaN/Infinity written as JSON constants
        result, err = guarded_call(read_pipeline_config, path, seconds=2.0, max_bytes=16 << 20)
        if err is not None:
            assert isinstance(err, CheckpointError), f"{type(err).__name__}: {err}"
            assert str(path) in str(err)
        outcomes.append("ok" if err is None else "refused")

    check()
    assert outcomes.count("refused") > len(outcomes) // 2
    assert "ok" in outcomes


small_values = {
    ("refiner", "rank_unet"): st.integers(-1, 6),
    ("refiner", "rank_vae"): st.integers(-1, 6),
    ("refiner", "rank_vae_cond"): st.integers(-1, 6),
    ("refiner", "lora_alpha"): st.sampled_from([-1.0, 0.0, 0.5, 8.0, 1e9]),
    ("refiner", "timestep"): st.integers(-3, 1002),
    ("refiner", "token_channels"): st.sampled_from([0, 64, 127, 128, 129]),
    ("refiner", "mask_channels"): st.lists(st.integers(-1, 40), min_size=1, max_size=3),
    ("refiner", "target_modules"): st.sampled_from([None, {}, {"unet_default_encoder": ["x"]},
                                                    {"vae_default_encoder": ["encoder.conv_in"]}]),
    ("backbone", "vae_widths"): st.one_of(st.none(), st.lists(st.sampled_from([7, 8, 16, 32]),
                                                              min_size=3, max_size=5)),
    ("backbone", "kind"): st.sampled_from(["tiny", "folder", "huge"]),
    ("tile", "latent_tile"): st.integers(-1, 40),
    ("tile", "latent_overlap"): st.integers(-1, 40),
    ("tile", "vae_tile"): st.one_of(st.none(), st.integers(-1, 40)),
    ("refiner_weights",): st.sampled_from(["full", "trainable", "half"]),
}
near_valid_edits = st.lists(
    st.sampled_from(sorted(small_values)).flatmap(
        lambda where: small_values[where].map(lambda value: (where, value))),
    min_size=1, max_size=2)


def test_near_valid_pipeline_configs_load_or_raise_checkpoint_error(tmp_path, tiny_pipeline):
    """Whatever the bounds accept goes on to build: it loads, or is a CheckpointError (weights
    that do not fit, LoRA targets the backbone lacks), never another exception."""
    from gmodiff.pipeline.pipeline import GMODiffPipeline

    seed_config = _config(tiny_pipeline)
    folder = tmp_path / "pipe"
    shutil.copytree(tiny_pipeline, folder)
    outcomes = []

    @settings(FUZZ_SETTINGS, max_examples=MAX_BUILDS)
    @given(edits=near_valid_edits)
    def check(edits):
        config = json.loads(json.dumps(seed_config))
        for where, value in edits:
            _apply(config, where, value)
        (folder / "gmodiff_pipeline.json").write_text(json.dumps(config))
        # No allocation tracing here: it slows building torch modules tenfold (torch's own
        # buffers are not traced anyway); the bounds test above covers the allocation limit.
        try:
            with time_limit(60.0):
                GMODiffPipeline.from_pretrained(folder)
            outcomes.append("ok")
        except CheckpointError as err:
            assert "\n" not in str(err)
            outcomes.append("refused")

    check()
    assert "refused" in outcomes and "ok" in outcomes, outcomes
