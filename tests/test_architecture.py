"""The floors of the house: imports only point down, and the CLI speaks in flags.

Floors (docs/architecture.md): gainmap/errors/result → io, metrics → data, preprocess →
models → pipeline → reconstruct (the method layer) → jobs, evaluation, train → cli, demo, serve.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gmodiff"

FLOORS = {
    0: ["gainmap", "errors", "result", "devices", "progress", "tiling", "memory"],
    1: ["io", "metrics"],
    2: ["data", "preprocess", "baselines", "align", "brackets", "calibration", "bracket_extras"],
    3: ["models"],
    4: ["pipeline", "pipeline_config", "tiled_dareg"],
    5: ["reconstruct"],
    6: ["jobs", "evaluation", "evaluation_regions", "train"],
    7: ["cli", "demo", "__main__", "serve"],
}
FLOOR_OF = {name: floor for floor, names in FLOORS.items() for name in names}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gmodiff."):
            names.add(_top(node.module))
        elif isinstance(node, ast.ImportFrom) and node.module == "gmodiff":
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(_top(a.name) for a in node.names if a.name.startswith("gmodiff."))
    return names


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        top = rel.parts[0].removesuffix(".py")
        if top != "__init__":
            found.append((top, path))
    return found


def test_every_module_has_a_floor():
    assert {top for top, _ in _modules()} <= set(FLOOR_OF)


@pytest.mark.parametrize("top,path", _modules(), ids=lambda v: str(v).split("gmodiff/")[-1])
def test_imports_only_point_down(top, path):
    """Including lazy imports inside functions: an upward import is a circle waiting to happen."""
    upward = sorted(name for name in _imports(path) - {top, "__version__"}
                    if FLOOR_OF.get(name, -1) > FLOOR_OF[top])
    assert not upward, f"{path.relative_to(SRC)} imports {upward} from a higher floor"


def test_models_hold_only_networks():
    """No scenes, caches or application entry points in models/."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (SRC / "models").glob("*.py"))
    for name in ("predict_scene", "reconstruct_with", "_LOADED", "_CACHE", "Scene"):
        assert name not in text


def test_library_advice_maps_to_existing_flags():
    """Library errors name options as code spells them; the CLI shows the flags, which exist."""
    from typer.main import get_command

    from gmodiff.cli import app
    from gmodiff.cli.flags import OPTION_FLAGS, as_flags

    command = get_command(app).commands["reconstruct"]
    flags = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    evaluate = get_command(app).commands["eval"]
    flags |= {opt for param in evaluate.params for opt in param.opts}
    assert set(OPTION_FLAGS.values()) <= flags
    assert as_flags("retry with `tile=16` or `dtype=fp32`") == "retry with --tile 16 or --dtype fp32"
    assert as_flags("set `refine=True`, or `refine=False`") == "set --refine, or --no-refine"
    assert as_flags("set `weights`; see `make`") == "set --weights; see make"


def test_steps_without_the_refiner_are_refused(tmp_path, capsys):
    """--steps N > 1 with refinement off (the bundled model's default, or --no-refine) is one
    line and exit 2, not a silent DaReg-only run."""
    from gmodiff.cli import main
    from gmodiff.io.scene import save_scene
    from gmodiff.pipeline import GMODiffPipeline
    from test_preprocess import _scene

    GMODiffPipeline.tiny(seed=0).save_pretrained(tmp_path / "w")
    save_scene(_scene(32, 32), tmp_path / "scene")
    out = tmp_path / "out.exr"
    base = ["reconstruct", str(tmp_path / "scene"), "-o", str(out)]
    assert main([*base, "--method", "gmodiff", "--weights", str(tmp_path / "w"), "--no-refine",
                 "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--refine" in err and "--steps 1" in err, err
    assert main([*base, "--method", "deghost", "--steps", "2"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main([*base, "--method", "gmodiff", "--weights", str(tmp_path / "w"),
                 "--dtype", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "--dtype fp32" in err and "--device cuda" in err, err
    assert not out.exists()
