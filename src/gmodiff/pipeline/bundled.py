"""Where pipeline folders live: the bundled ones by name, and a folder's recorded provenance.

Light on purpose (no torch, no diffusers): the CLI asks "is a default model installed?" and
plans memory before any model is loaded, and start-up must not pay for the networks' imports.
"""

from __future__ import annotations

import json
from pathlib import Path

from gmodiff.errors import CheckpointError
from gmodiff.io.atomic import atomic_path

PIPELINE_CONFIG = "gmodiff_pipeline.json"
REFINER_WEIGHTS = "refiner.safetensors"
WEIGHTS_DIR = Path(__file__).parents[1] / "weights"
BUNDLED = ("default",)
"""Pipelines shipped inside the package (``gmodiff/weights/<name>``), loadable by name."""


def read_provenance(directory: str | Path) -> dict:
    """The ``provenance`` a saved pipeline folder records (where its backbone was trained; {}
    when the folder has none)."""
    path = Path(directory) / PIPELINE_CONFIG
    return (json.loads(path.read_text()).get("provenance") or {}) if path.is_file() else {}


def write_provenance(directory: str | Path, provenance: dict) -> None:
    """Set the ``provenance`` of a saved pipeline folder (its config rewritten atomically)."""
    path = Path(directory) / PIPELINE_CONFIG
    config = json.loads(path.read_text())
    config["provenance"] = provenance
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(config, indent=2) + "\n")


def bundled_pipeline(name: str = "default") -> Path | None:
    """Folder of the bundled pipeline ``name`` if it is installed, else None."""
    folder = WEIGHTS_DIR / name
    return folder if (folder / PIPELINE_CONFIG).is_file() else None


def saved_refine(weights: str | Path = "default") -> bool:
    """The ``refine`` default a pipeline folder (or bundled name) records; False where the folder
    or its config cannot be read (the loader reports that, with its message, when it loads)."""
    try:
        config = resolve_weights(weights) / PIPELINE_CONFIG
        refine = json.loads(config.read_text()).get("refine", True)
    except (CheckpointError, OSError, ValueError, AttributeError, TypeError):
        return False
    return refine is True


def resolve_weights(weights: str | Path) -> Path:
    """A pipeline folder: a bundled name ("default") unless a folder of that name exists here."""
    path = Path(weights)
    if str(weights) in BUNDLED and not path.is_dir():
        found = bundled_pipeline(str(weights))
        if found is None:
            raise CheckpointError(f"the bundled {weights!r} pipeline is not installed",
                                  WEIGHTS_DIR / str(weights),
                                  "reinstall gmodiff, or train it with `make train-default`")
        return found
    return path
