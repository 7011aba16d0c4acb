"""The floors of the house: imports only point down, nothing goes round, the CLI speaks in flags.

A *unit* is a folder under ``src/gmodiff`` or a module at its root. Units sit on floors
(docs/architecture.md draws the same table, and a test below reads it back); an import, lazy
ones inside functions included, may only point to its own floor or a lower one, and no chain
of imports may come back to where it started, between modules or between units (same floor
included). Run ``python tests/test_architecture.py`` for the counts.
"""

from __future__ import annotations

import ast
import re
import sys
from collections import defaultdict
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "gmodiff"
DOC = SRC.parents[1] / "docs" / "architecture.md"

FLOORS = {
    0: ["errors", "result", "devices", "progress", "gainmap", "tiling", "memory", "channels",
        "pixelmath", "srgb"],
    1: ["io", "metrics", "camera"],
    2: ["bracket", "baselines"],
    3: ["inputs"],
    4: ["models"],
    5: ["data", "pipeline"],
    6: ["methods"],
    7: ["jobs", "evaluation", "train"],
    8: ["cli", "serve", "__main__"],
}
FLOOR_OF = {name: floor for floor, names in FLOORS.items() for name in names}
ROOT_MODULES = {"errors", "result", "devices", "progress", "gainmap", "tiling", "memory",
                "channels", "pixelmath", "srgb", "methods", "jobs", "__main__"}
"""The small shared modules allowed at the package root; everything else lives in a folder."""


def _module_names() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(["gmodiff", *parts])] = path
    return found


MODULES = _module_names()


def _resolve(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def module_graph() -> dict[str, set[str]]:
    """Module → the gmodiff modules it imports (lazy imports inside functions included)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gmodiff"):
                for alias in node.names:  # `from gmodiff.io import scene` names a module
                    full = f"{node.module}.{alias.name}"
                    targets.append(full if full in MODULES else _resolve(node.module))
            elif isinstance(node, ast.Import):
                targets += [_resolve(a.name) for a in node.names if a.name.startswith("gmodiff.")]
            graph[module].update(t for t in targets if t not in (module, "gmodiff", ""))
    return graph


def unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = defaultdict(set)
    for source, targets in module_graph().items():
        graph[unit(source)].update(unit(t) for t in targets if unit(t) != unit(source))
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one node (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def upward_imports() -> list[tuple[str, str]]:
    return sorted((source, target) for source, targets in module_graph().items()
                  for target in targets
                  if FLOOR_OF.get(unit(target), -1) > FLOOR_OF.get(unit(source), 99))


def test_every_unit_has_a_floor():
    assert {unit(m) for m in MODULES if m != "gmodiff"} <= set(FLOOR_OF)


def test_only_small_shared_modules_sit_at_the_package_root():
    loose = {p.stem for p in SRC.glob("*.py")} - {"__init__"}
    assert loose <= ROOT_MODULES, sorted(loose - ROOT_MODULES)


def test_no_import_runs_up_a_floor():
    """Including lazy imports inside functions: an upward import is a circle waiting to happen."""
    assert upward_imports() == []


def test_no_cycle_between_modules():
    assert cycles(module_graph()) == []


def test_no_cycle_between_units_same_floor_included():
    assert cycles(unit_graph()) == []


def test_the_floor_table_in_docs_matches_this_test():
    rows = re.findall(r"^\| (\d) \| (.+?) \|", DOC.read_text(encoding="utf-8"), flags=re.M)
    documented = {int(floor): sorted(re.findall(r"`([\w_]+)(?:/|\.py)?`", names))
                  for floor, names in rows}
    assert documented == {floor: sorted(names) for floor, names in FLOORS.items()}


def test_models_hold_only_networks():
    """No scenes, caches or application entry points in models/."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in (SRC / "models").glob("*.py"))
    for name in ("predict_scene", "reconstruct_with", "_LOADED", "_CACHE", "Scene"):
        assert name not in text


def test_library_advice_maps_to_existing_flags():
    """Library errors name options as code spells them; the CLI shows the flags, which exist."""
    from typer.main import get_command

    from gmodiff.cli import app
    from gmodiff.errors import OPTION_FLAGS, as_flags

    command = get_command(app).commands["reconstruct"]
    flags = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    evaluate = get_command(app).commands["eval"]
    flags |= {opt for param in evaluate.params for opt in param.opts}
    assert set(OPTION_FLAGS.values()) <= flags
    assert as_flags("retry with `tile=16` or `dtype=fp32`") == "retry with --tile 16 or --dtype fp32"
    assert as_flags("set `refine=True`, or `refine=False`") == "set --refine, or --no-refine"
    assert as_flags("set `weights`; see `make`") == "set --weights; see make"


def test_steps_without_the_refiner_are_refused(tmp_path, capsys):
    """--steps N > 1 with --no-refine is one line and exit 2, not a silent DaReg-only run (on a
    pipeline that does not refine by default, --steps alone refines: test_refine_default)."""
    from gmodiff.cli import main
    from gmodiff.io.scene import save_scene
    from gmodiff.pipeline.pipeline import GMODiffPipeline
    from test_preprocess import _scene

    GMODiffPipeline.tiny(seed=0).save_pretrained(tmp_path / "w")
    save_scene(_scene(32, 32), tmp_path / "scene")
    out = tmp_path / "out.exr"
    base = ["reconstruct", str(tmp_path / "scene"), "-o", str(out)]
    assert main([*base, "--method", "gmodiff", "--weights", str(tmp_path / "w"), "--no-refine",
                 "--steps", "3"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--no-refine" in err and "--steps 1" in err, err
    assert main([*base, "--method", "deghost", "--steps", "2"]) == 2
    assert "--steps" in capsys.readouterr().err
    assert main([*base, "--method", "gmodiff", "--weights", str(tmp_path / "w"),
                 "--dtype", "fp16"]) == 2
    err = capsys.readouterr().err
    assert "--dtype fp32" in err and "--device cuda" in err, err
    assert not out.exists()


if __name__ == "__main__":  # the counts docs/architecture.md asks for
    print(f"{len(MODULES)} modules; module cycles: {len(cycles(module_graph()))}; unit cycles: "
          f"{len(cycles(unit_graph()))}; upward imports: {len(upward_imports())}")
    sys.exit(1 if cycles(module_graph()) or cycles(unit_graph()) or upward_imports() else 0)
