"""The bundled model returns its DaReg stage unless asked to refine (issue 28's real stacks:
its tiny refiner costs 0.5 dB there); `--refine`, `--steps N` and the web page's choice run it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gmodiff.errors import ConfigError, as_flags
from gmodiff.methods import ReconstructOptions, reconstruct_scene, will_refine
from gmodiff.pipeline.bundled import PIPELINE_CONFIG, bundled_pipeline, saved_refine


def test_which_runs_refine():
    """The bundle's saved default is off; a flag, steps > 1 or a refining folder turn it on."""
    assert saved_refine("default") is False
    assert not will_refine("auto", ReconstructOptions())
    assert not will_refine("gmodiff", ReconstructOptions())
    assert will_refine("auto", ReconstructOptions(refine=True))
    assert will_refine("gmodiff", ReconstructOptions(steps=4))
    assert not will_refine("deghost", ReconstructOptions(refine=True))  # no refiner to run


def test_a_folder_that_refines_by_default(tmp_path):
    """A trained pipeline folder keeps its own saved default (refine true, or unset = true)."""
    folder = tmp_path / "pipe"
    folder.mkdir()
    config = json.loads((bundled_pipeline() / PIPELINE_CONFIG).read_text())
    config["refine"] = True
    (folder / PIPELINE_CONFIG).write_text(json.dumps(config))
    assert will_refine("gmodiff", ReconstructOptions(weights=folder))
    del config["refine"]
    (folder / PIPELINE_CONFIG).write_text(json.dumps(config))
    assert saved_refine(folder) is True
    assert saved_refine(tmp_path / "missing") is False  # the loader reports it, not this probe
    assert not will_refine("gmodiff", ReconstructOptions(weights=folder, refine=False))


def test_steps_and_no_refine_contradict():
    with pytest.raises(ConfigError) as caught:
        ReconstructOptions(refine=False, steps=5)
    message = as_flags(str(caught.value))
    assert "--steps 5" in message and "--no-refine" in message


def test_steps_above_one_refine_the_bundled_model():
    """`--steps 3` on the bundled model runs a refiner chain; the plain call does not."""
    from dareg_helpers import synthetic_scene

    scene = synthetic_scene(5, 40, 48)
    plain = reconstruct_scene(scene, "auto", ReconstructOptions())
    chained = reconstruct_scene(scene, "auto", ReconstructOptions(steps=3))
    assert plain.refined is False and chained.refined is True
    assert plain.timings["refiner"] == 0.0 < chained.timings["refiner"]


def test_web_page_choices_match_the_server():
    """Every method the page offers is one the server runs, and none repeats the default."""
    from gmodiff.serve import jobs

    html = (Path(jobs.__file__).parent / "static" / "index.html").read_text()
    offered = re.findall(r'<option value="(\w+)"', html.split('id="compare"')[0])
    assert offered == list(jobs.METHODS)
    assert jobs.METHODS["refine"][1].refine is True and jobs.METHODS["auto"][1].refine is None
    script = (Path(jobs.__file__).parent / "static" / "app.js").read_text()
    assert all(f"{name}:" in script for name in jobs.METHODS)

