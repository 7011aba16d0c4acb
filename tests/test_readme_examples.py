"""README examples run as written: the camera-files Python block, on a bracket made here."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from bracket_helpers import exif_bytes, expose, save_jpeg, scene_radiance

README = Path(__file__).resolve().parents[1] / "README.md"


def _python_block_after(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    start = text.index(marker)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block after {marker!r}"
    return match.group(1)


def test_camera_files_python_example(tmp_path, monkeypatch, capsys):
    from gmodiff.io.hdr import declared_exposure, read_hdr

    # 128×192: the classical merge linearises with the camera curve estimated from the bracket,
    # which needs more than a thumbnail's pixels (at 32×48 it is 0.4 stop off in the shadows).
    radiance = scene_radiance(128, 192, seed=2) * 0.5
    for name, stops in (("IMG_0041.jpg", 0), ("IMG_0042.jpg", -2), ("IMG_0043.jpg", 2)):
        save_jpeg(tmp_path / name, expose(radiance, 2.0 ** stops), exif_bytes(2.0 ** stops / 100))
    monkeypatch.chdir(tmp_path)
    exec(compile(_python_block_after("Camera files (any number of frames"), "README.md", "exec"), {})
    assert "reference: IMG_0041.jpg (+0.0 EV)" in capsys.readouterr().out
    hdr = read_hdr(tmp_path / "photo.exr")
    assert declared_exposure(tmp_path / "photo.exr") == pytest.approx(4.0)
    seen = expose(radiance, 1.0).max(axis=2) / 255
    well = (seen > 0.1) & (seen < 0.9)
    assert np.median(hdr.mean(axis=2)[well] / radiance.mean(axis=2)[well]) == pytest.approx(1, abs=0.1)


def _bash_lines_after(marker: str) -> list[str]:
    text = README.read_text(encoding="utf-8")
    match = re.compile(r"```bash\n(.*?)```", re.S).search(text, text.index(marker))
    return [line.split("  #")[0].strip() for line in match.group(1).splitlines()
            if line.startswith("gmodiff ")]


def test_simulate_reconstruct_eval_commands_as_written(tmp_path, monkeypatch, capsys):
    """The README's simulate → reconstruct → eval chain, command by command (the `make
    metrics-env` line needs the second venv and is covered by tests/test_eval_extra.py)."""
    import shlex

    from gmodiff.cli import main

    lines = _bash_lines_after("## Simulate brackets, evaluate")
    assert [line.split()[1] for line in lines] == ["simulate", "simulate", "reconstruct", "eval"]
    for line in lines:
        for word in shlex.split(line):
            if word.startswith("/usr/share/") and not Path(word).is_file():
                pytest.skip(f"{word} not installed (blender-data)")
    monkeypatch.chdir(tmp_path)
    for line in lines:
        args = [a for a in shlex.split(line)[1:] if a != "--no-progress"]
        assert main([*args, "--no-progress"] if args[0] == "simulate" else args) == 0, line
    assert len(list((tmp_path / "out").glob("*.exr"))) == 12  # 4 procedural + 8 views
    assert (tmp_path / "metrics.json").is_file()


def test_python_api_example(tmp_path, monkeypatch, capsys):
    """The README's first Python block, on a small simulated scene in scenes/001."""
    from gmodiff.cli import main
    from gmodiff.pipeline.pipeline import bundled_pipeline

    if bundled_pipeline() is None:
        pytest.skip("bundled model not installed")
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "procedural", "sims", "--size", "96x64", "--seed", "0",
                 "--no-progress"]) == 0
    (tmp_path / "scenes").mkdir()
    next((tmp_path / "sims").iterdir()).rename(tmp_path / "scenes" / "001")
    namespace: dict = {}
    exec(compile(_python_block_after("Python API:"), "README.md", "exec"), namespace)
    assert namespace["out"].hdr.shape == (64, 96, 3)
    assert namespace["result"].hdr.shape == (64, 96, 3)


def test_train_smoke_chain_runs_as_written(tmp_path, monkeypatch):
    """The README's smoke run of the training chain (the commands with tiny step counts), in a
    scratch folder holding the repository's configs; the paper-size refiner line needs an SD-2.1
    folder and `make train-default` is run by tests/test_default_recipe.py."""
    import shlex

    from gmodiff.cli import main

    lines = [line for line in _bash_lines_after("## Train")
             if "--max-steps" in line or "--vae-steps" in line]
    assert [shlex.split(line)[2] for line in lines] == ["dareg", "dareg", "prior", "refiner"]
    (tmp_path / "configs").symlink_to(README.parent / "configs")
    monkeypatch.chdir(tmp_path)
    for line in lines:
        assert main([*shlex.split(line)[1:], "--no-progress"]) == 0, line
    for run in ("dareg-stage1-tiny", "dareg-stage2-tiny"):
        assert (tmp_path / "runs" / run / "final").is_dir(), run
