"""Training checkpoints that resume exactly, for any stage (DaReg, refiner).

A checkpoint is one file ``checkpoint-<step>.pt`` holding the model, optimizer and scheduler
states, every RNG state (python, numpy, torch CPU/CUDA, and any extra generators such as a
sampler's), the step and a free ``extra`` dict. It is written through
:func:`gmodiff.io.atomic.atomic_path`, so a crash mid-save never leaves a half-written file, and
only the newest ``keep_last`` are kept. Loading never runs pickled code (``weights_only``, with
numpy arrays allowed for the numpy RNG state), so resuming from a foreign file is safe.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gmodiff.errors import CheckpointError
from gmodiff.io.atomic import atomic_path
from gmodiff.models.checkpoints import check_state_dict

_NAME = re.compile(r"^checkpoint-(\d+)\.pt$")

# What numpy.random.get_state() pickles into (an ndarray of uint32 keys): the only globals our
# checkpoints need beyond the tensors and containers torch's weights-only unpickler allows.
_NUMPY_RNG_GLOBALS = [np._core.multiarray._reconstruct, np.ndarray, np.dtype,
                      type(np.dtype(np.uint32))]


def load_payload(path: Path):
    """``torch.load`` that refuses pickled code: tensors, containers and numpy arrays only."""
    with torch.serialization.safe_globals(_NUMPY_RNG_GLOBALS):
        return torch.load(path, map_location="cpu", weights_only=True)


def rng_states(generators: dict[str, torch.Generator] | None = None) -> dict:
    """Snapshot of the python, numpy and torch RNGs (plus named extra torch generators)."""
    states = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def restore_rng_states(states: dict, generators: dict[str, torch.Generator] | None = None) -> None:
    """Put back RNG states captured by :func:`rng_states`."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    for name, generator in (generators or {}).items():
        if name in states.get("generators", {}):
            generator.set_state(states["generators"][name])


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` gives back besides the restored objects."""

    step: int
    path: Path
    extra: dict = field(default_factory=dict)


def checkpoint_path(directory: str | Path, step: int) -> Path:
    """File name of the checkpoint for ``step``."""
    return Path(directory) / f"checkpoint-{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[tuple[int, Path]]:
    """(step, path) of every checkpoint in ``directory``, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := _NAME.match(p.name))]
    return sorted(found)


def latest_checkpoint(directory: str | Path) -> Path | None:
    """The newest checkpoint in ``directory``, or None."""
    found = list_checkpoints(directory)
    return found[-1][1] if found else None


def save_checkpoint(
    directory: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    extra: dict | None = None,
    generators: dict[str, torch.Generator] | None = None,
    keep_last: int = 3,
) -> Path:
    """Atomically write a checkpoint for ``step`` and prune all but the newest ``keep_last``.

    ``model`` should be the unwrapped module (``accelerator.unwrap_model``) so the keys carry no
    ``module.`` prefix. Call it on the main process only.
    """
    target = checkpoint_path(directory, step)
    payload = {
        "step": int(step),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng_states(generators),
        "extra": dict(extra or {}),
    }
    with atomic_path(target) as tmp:
        torch.save(payload, tmp)
    # A run killed mid-save leaves its temp file behind (as large as a checkpoint); this is the
    # only writer, so any other temp checkpoint here is such a leftover.
    for stale in Path(directory).glob(".checkpoint-*.part.pt"):
        stale.unlink(missing_ok=True)
    if keep_last > 0:
        for _, old in list_checkpoints(directory)[:-keep_last]:
            old.unlink(missing_ok=True)
    return target


def resolve_checkpoint_file(path: Path, fix: str) -> Path:
    """``path`` itself if it is a file, else the newest ``checkpoint-*.pt`` in the folder ``path``.

    Raises ``CheckpointError`` (with ``fix`` as the advice) when there is neither.
    """
    if path.is_dir():
        newest = latest_checkpoint(path)
        if newest is None:
            raise CheckpointError("no checkpoint-*.pt files here", path, fix)
        path = newest
    if not path.is_file():
        raise CheckpointError("checkpoint not found", path, fix)
    return path


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler=None,
    generators: dict[str, torch.Generator] | None = None,
    restore_rng: bool = True,
) -> Checkpoint:
    """Restore what :func:`save_checkpoint` wrote into the given objects; return step and extra.

    ``path`` may be a checkpoint file or a folder (its newest checkpoint is used).
    """
    path = resolve_checkpoint_file(
        Path(path), "drop --resume to start fresh, or point at the run's checkpoints folder")
    try:
        payload = load_payload(path)
    except Exception as exc:  # corrupt or foreign file
        raise CheckpointError(f"cannot read checkpoint ({type(exc).__name__})", path,
                              "delete it and resume from an earlier one") from exc
    if (not isinstance(payload, dict) or "step" not in payload
            or not isinstance(payload.get("model"), dict)):
        raise CheckpointError("not a gmodiff training checkpoint", path, "use a checkpoint-*.pt file")
    if model is not None:
        # Name the missing / unexpected / mismatched keys (load_state_dict's first line does not).
        check_state_dict(model, payload["model"], path)
        try:
            model.load_state_dict(payload["model"])
        except RuntimeError as exc:
            raise CheckpointError(f"weights do not fit the model ({str(exc).splitlines()[0]})", path,
                                  "resume with the same config the run started with") from exc
    try:
        if optimizer is not None and payload.get("optimizer") is not None:
            optimizer.load_state_dict(payload["optimizer"])
        if scheduler is not None and payload.get("scheduler") is not None:
            scheduler.load_state_dict(payload["scheduler"])
        if restore_rng:
            restore_rng_states(payload["rng"], generators)
        return Checkpoint(step=int(payload["step"]), path=path, extra=payload.get("extra", {}))
    except (AttributeError, IndexError, KeyError, OverflowError, RuntimeError, TypeError,
            ValueError) as exc:  # bytes that unpickle but hold damaged optimizer/RNG state
        raise CheckpointError(f"damaged checkpoint ({type(exc).__name__} restoring the "
                              "optimizer, scheduler or RNG state)", path,
                              "delete it and resume from an earlier one") from exc
