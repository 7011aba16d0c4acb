"""`make train-default`: every step's config loads, every weight folder a step reads is written by
an earlier step, no step that builds the bundled model sees the evaluation panoramas, and the
whole recipe runs at two steps a stage. A full run takes hours; these catch a recipe that rots."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gmodiff.data.sources import (BLENDER_HELD_OUT, BLENDER_NAMES, PMNDRS_HDRI_DIR, PMNDRS_TRAIN,
                                  blender_panoramas)
from gmodiff.train.dareg import DaRegTrainConfig
from gmodiff.train.prior import PriorTrainConfig
from gmodiff.train.refiner import RefinerTrainConfig

REPO = Path(__file__).resolve().parents[1]
CONFIG_CLASSES = {"dareg": DaRegTrainConfig, "prior": PriorTrainConfig, "refiner": RefinerTrainConfig}
BUNDLE_OUT = "src/gmodiff/weights/default"


def recipe_lines() -> list[str]:
    """The shell lines of the Makefile's train-default target, with make variables dropped."""
    lines, inside = [], False
    for line in (REPO / "Makefile").read_text(encoding="utf-8").splitlines():
        if line.startswith("train-default:"):
            inside = True
        elif inside and line.startswith("\t"):
            lines.append(re.sub(r"\$\(call resume_flag,[^)]*\)|\$\([A-Z_]+\)", "", line).strip())
        elif inside:
            break
    return lines


def load_config(path: Path):
    """A recipe config, read with the training config class its file name says."""
    kind = "dareg" if "dareg" in path.stem else "prior" if "prior" in path.stem else "refiner"
    return CONFIG_CLASSES[kind].from_yaml(path)


def option(words: list[str], name: str) -> str | None:
    """The value after ``name`` in a command line, or None."""
    return words[words.index(name) + 1] if name in words else None


def steps() -> list[tuple[str, list[str], str]]:
    """(kind, folders read, folder written) per recipe line, in order."""
    found = []
    for line in recipe_lines():
        words = shlex.split(line)
        kind = words[words.index("train") + 1]
        if kind == "bundle":
            reads = [v for v in (option(words, "--pipeline"), option(words, "--dareg")) if v]
            found.append((kind, reads, option(words, "--out")))
            continue
        config = CONFIG_CLASSES[kind].from_yaml(REPO / option(words, "--config"))  # as make runs it
        reads = [getattr(config, name, None) for name in
                 ("init_weights", "dareg_weights", "init_pipeline", "backbone")]
        found.append((kind, [r for r in reads if isinstance(r, str) and r.startswith("runs/")],
                      config.out_dir))
    return found


def test_every_folder_a_step_reads_is_written_earlier():
    recipe = steps()
    assert len(recipe) >= 10 and recipe[-1] == ("bundle", recipe[-1][1], BUNDLE_OUT)
    written: set[str] = set()
    for kind, reads, out in recipe:
        for folder in reads:
            assert folder in written or folder.removesuffix("/final") in written, (kind, folder, out)
        assert out not in written, f"{out} is written twice"
        written.add(out)


def test_resume_folders_match_the_configs():
    text = (REPO / "Makefile").read_text(encoding="utf-8")
    for match in re.finditer(r"--config (\S+) .*\$\(call resume_flag,([^)]*)\)", text):
        config_path, resume = match.groups()
        assert load_config(REPO / config_path).out_dir == resume


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("default-*.yaml")), ids=lambda p: p.stem)
def test_default_configs_never_read_evaluation_panoramas(path):
    config = load_config(path)
    for entry in list(config.simulated_panoramas) + list(config.val_panoramas):
        source, name = entry.split(":", 1)
        if source == "blender":
            assert BLENDER_NAMES[int(name)] not in BLENDER_HELD_OUT, entry
        else:
            assert source == "pmndrs" and name in PMNDRS_TRAIN, entry


def test_blender_names_follow_the_installed_order():
    installed = [p.stem for p in blender_panoramas()]
    if not installed:
        pytest.skip("blender-data is not installed")
    assert tuple(installed) == BLENDER_NAMES


def test_the_whole_recipe_runs_two_steps_a_stage(tmp_path, monkeypatch):
    """Every step of `make train-default` at two steps (the prior: one VAE + one UNet step), in
    order, in one process; the bundle it ends with reconstructs a scene."""
    from gmodiff.cli import main
    from gmodiff.pipeline.pipeline import load_pipeline

    if len(blender_panoramas()) < 8 or not (PMNDRS_HDRI_DIR / "hall.exr.js").is_file():
        pytest.skip("blender-data or @pmndrs/assets is not installed (make install)")
    monkeypatch.chdir(tmp_path)
    for line in recipe_lines():
        words = shlex.split(line)
        args = words[words.index("gmodiff") + 1:]
        if "--config" in args:
            args[args.index("--config") + 1] = str(REPO / option(args, "--config"))
        kind = args[1]
        if kind in ("dareg", "refiner"):
            args += ["--max-steps", "2"]
        elif kind == "prior":
            args += ["--vae-steps", "1", "--unet-steps", "1"]
        assert main(args) == 0, line
    bundle = tmp_path / BUNDLE_OUT
    assert load_pipeline(bundle).refiner.config.residual_gate
    sample = REPO / "src" / "gmodiff" / "samples" / "sunset"
    assert main(["reconstruct", str(sample), "-o", "out.hdr", "--weights", str(bundle), "--quiet"]) == 0
    assert (tmp_path / "out.hdr").stat().st_size > 0
