"""Loading state dicts in the reference layout (spec §7) with errors that say what is wrong."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from gmodiff.errors import CheckpointError

_WRAPPER_KEYS = ("state_dict", "params", "model")
_PREFIXES = ("module.", "_orig_mod.")
_LISTED = 6  # how many offending keys an error message names


def unwrap_state_dict(state: Mapping) -> dict[str, torch.Tensor]:
    """Take the tensor dict out of a checkpoint: unwrap ``state_dict``-style containers and
    strip ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) prefixes."""
    for key in _WRAPPER_KEYS:
        inner = state.get(key) if isinstance(state, Mapping) else None
        if isinstance(inner, Mapping) and inner and not isinstance(next(iter(inner.values())), (int, float)):
            state = inner
            break
    cleaned: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        name = str(key)
        stripped = True
        while stripped:
            stripped = False
            for prefix in _PREFIXES:
                if name.startswith(prefix):
                    name = name[len(prefix):]
                    stripped = True
        cleaned[name] = value
    return cleaned


def _describe(keys: list[str]) -> str:
    shown = ", ".join(keys[:_LISTED])
    return shown + (f" (+{len(keys) - _LISTED} more)" if len(keys) > _LISTED else "")


def state_dict_differences(
    expected: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor],
    optional: set[str] = frozenset(),
) -> tuple[list[str], list[str], list[str]]:
    """Sorted (missing, unexpected, shape-mismatched) keys of ``state`` against ``expected``.

    Keys in ``optional`` may be absent from ``state`` without counting as missing.
    """
    missing = sorted(set(expected) - set(state) - set(optional))
    unexpected = sorted(set(state) - set(expected))
    mismatched = sorted(k for k in set(expected) & set(state)
                        if tuple(state[k].shape) != tuple(expected[k].shape))
    return missing, unexpected, mismatched


def check_state_dict(
    model: nn.Module, state: Mapping[str, torch.Tensor], source: str | Path | None = None
) -> None:
    """Raise CheckpointError naming missing, unexpected and shape-mismatched keys, if any."""
    expected = model.state_dict()
    missing, unexpected, mismatched_keys = state_dict_differences(expected, state)
    mismatched = sorted(f"{k} {tuple(state[k].shape)}≠{tuple(expected[k].shape)}"
                        for k in mismatched_keys)
    problems = []
    if missing:
        problems.append(f"missing keys: {_describe(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_describe(unexpected)}")
    if mismatched:
        problems.append(f"shape mismatches: {_describe(mismatched)}")
    if problems:
        raise CheckpointError(
            "checkpoint does not match the model; " + "; ".join(problems),
            source,
            "check the model size preset (paper/tiny) and whether it has a mask head",
        )


def load_reference_state_dict(
    model: nn.Module, state: Mapping, source: str | Path | None = None
) -> nn.Module:
    """Load ``state`` (reference layout, possibly wrapped / ``module.``-prefixed) strictly."""
    if not isinstance(state, Mapping):
        raise CheckpointError(f"expected a dict of tensors, got {type(state).__name__}", source)
    tensors = unwrap_state_dict(state)
    check_state_dict(model, tensors, source)
    model.load_state_dict(tensors, strict=True)
    return model


def load_reference_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Read a torch checkpoint file (e.g. ``dareg_mask.pth``) and load it strictly into ``model``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("checkpoint file not found", path, "check the path")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or foreign files
        raise CheckpointError(
            f"cannot read checkpoint ({type(exc).__name__}: {exc})".splitlines()[0],
            path,
            "the file must be a torch state dict saved with torch.save",
        ) from exc
    return load_reference_state_dict(model, state, source=path)
