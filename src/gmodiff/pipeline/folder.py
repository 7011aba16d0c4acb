"""Read and validate a pipeline folder's ``gmodiff_pipeline.json`` and ``refiner.safetensors``.

Every field is checked against its bounds (the config dataclasses' own validation) before any
network is built, so a corrupt or hostile folder is one ``CheckpointError`` naming the file, not
an allocation of gigabytes or a traceback from deep inside torch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gmodiff.errors import CheckpointError, GmodiffError
from gmodiff.models.backbone import BackboneConfig
from gmodiff.models.refiner_config import RefinerConfig, TileOptions

FORMAT = "gmodiff-pipeline"
VERSIONS = (1,)
WEIGHT_KINDS = ("full", "trainable")
MAX_CONFIG_BYTES = 16 << 20
"""A pipeline config is a few KB (an SD-2.1 one with LoRA target lists, a few hundred KB)."""
_FIX = "re-save the pipeline (GMODiffPipeline.save_pretrained) or restore the file"


@dataclass
class PipelineFileConfig:
    """The validated contents of ``gmodiff_pipeline.json``."""

    backbone: BackboneConfig
    refiner: RefinerConfig
    refiner_weights: str
    refine: bool
    tile: TileOptions


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def read_pipeline_config(path: str | Path) -> PipelineFileConfig:
    """Parse and bound-check ``gmodiff_pipeline.json``; any problem is a ``CheckpointError``."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise ValueError(f"{size} bytes, more than a pipeline config holds")
        data = json.loads(path.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("format") != FORMAT:
            raise ValueError("wrong format tag")
        if data.get("version", 1) not in VERSIONS or isinstance(data.get("version"), bool):
            raise ValueError(f"unsupported version {data.get('version')!r}")
        backbone = data["backbone"]
        if not isinstance(backbone, dict):
            raise ValueError("backbone is not an object")
        weights = data.get("refiner_weights", "trainable")
        if weights not in WEIGHT_KINDS:
            raise ValueError(f"refiner_weights {weights!r} is not one of {WEIGHT_KINDS}")
        refine = data.get("refine", True)
        if not isinstance(refine, bool):
            raise ValueError(f"refine {refine!r} is not true/false")
        return PipelineFileConfig(
            backbone=BackboneConfig(**backbone),
            refiner=RefinerConfig.from_dict(data["refiner"]),
            refiner_weights=weights,
            refine=refine,
            tile=TileOptions.from_dict(data.get("tile", {})),
        )
    except GmodiffError as exc:  # a field out of its bounds (ConfigError, BackboneError)
        raise CheckpointError(f"unreadable pipeline config ({exc})", path, _FIX) from exc
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as exc:
        detail = f"{type(exc).__name__}: {exc}" if isinstance(exc, KeyError) else str(exc)
        raise CheckpointError(f"unreadable pipeline config ({detail[:200]})", path,
                              _FIX) from exc


def check_token_width(config: RefinerConfig, dareg_width: int, path: str | Path) -> None:
    """The refiner's prior-token width must be its DaReg's deepest width."""
    if config.token_channels != dareg_width:
        raise CheckpointError(
            f"refiner expects {config.token_channels}-wide DaReg tokens, its dareg/ gives "
            f"{dareg_width}", path, _FIX)


def read_refiner_weights(path: str | Path) -> dict:
    """The tensors of ``refiner.safetensors``; a truncated or corrupt file is a CheckpointError."""
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = load_file(str(path))
    except Exception as exc:  # safetensors raises several types (SafetensorError, OSError, ...)
        raise CheckpointError(f"cannot read refiner weights ({type(exc).__name__}: "
                              f"{str(exc)[:120]})", path, "re-export them") from exc
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise CheckpointError(f"refiner weight {name} holds NaN or infinite values", path,
                                  "re-export them")
    return state


def build_refiner(backbone, config: RefinerConfig, path: str | Path):
    """``GMRefiner(backbone, config)``; a config that names modules the backbone lacks (or any
    other mismatch found while wrapping it with LoRA) is a CheckpointError naming ``path``."""
    from gmodiff.models.refiner import GMRefiner

    try:
        return GMRefiner(backbone, config)
    except (ValueError, KeyError, TypeError, RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"the refiner config does not fit the backbone "
                              f"({type(exc).__name__}: {str(exc)[:160]})", path, _FIX) from exc

