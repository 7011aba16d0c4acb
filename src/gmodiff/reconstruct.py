"""One entry point from a :class:`Scene` to an HDR image, whatever the method.

Classical merges live in ``gmodiff.baselines``; learned methods (``dareg``, ``gmodiff``) add one
branch each to :func:`reconstruct_scene`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from gmodiff.errors import ConfigError
from gmodiff.io.scene import Scene

CLASSICAL_ALIAS = "classical"
"""Method name meaning "the best classical baseline" (see ``gmodiff.baselines.BEST_CLASSICAL``)."""
AUTO = "auto"
"""Method name meaning "the bundled GMODiff model when installed (3-frame brackets), else classical"."""


@dataclass
class Reconstruction:
    """An HDR result: linear float32 (H, W, 3) relative to t=1, plus optional intermediates."""

    hdr: np.ndarray
    gain_map: np.ndarray | None = None
    mask: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds per stage; ``total`` is always present."""
    method: str = ""


def available_methods() -> list[str]:
    """Method names :func:`reconstruct_scene` accepts."""
    from gmodiff.baselines import CLASSICAL_METHODS

    return [AUTO, CLASSICAL_ALIAS, *CLASSICAL_METHODS, "dareg", "gmodiff"]


def auto_method(scene: Scene) -> str:
    """What ``auto`` means for ``scene``: gmodiff if a bundled model is installed and the bracket
    has the 3 frames it needs, else the best classical baseline."""
    from gmodiff.pipeline import bundled_pipeline

    return "gmodiff" if bundled_pipeline() is not None and len(scene.frames) == 3 else CLASSICAL_ALIAS


def reconstruct_scene(scene: Scene, method: str = CLASSICAL_ALIAS, **options) -> Reconstruction:
    """Reconstruct the reference-aligned HDR image of ``scene`` with ``method``.

    ``options`` are passed to the method (e.g. ``align=False`` for ``deghost``).
    """
    from gmodiff.baselines import BEST_CLASSICAL, CLASSICAL_METHODS

    start = time.perf_counter()
    if method == AUTO:
        method = auto_method(scene)
        if method != "gmodiff":  # the gmodiff options (weights, steps, ...) mean nothing here
            options = {}
    name = BEST_CLASSICAL if method == CLASSICAL_ALIAS else method
    if name in CLASSICAL_METHODS:
        hdr = CLASSICAL_METHODS[name](scene, **options)
        elapsed = time.perf_counter() - start
        return Reconstruction(hdr=np.asarray(hdr, dtype=np.float32),
                              timings={"merge": elapsed, "total": elapsed}, method=name)
    if name == "dareg":  # options: weights, device, channel_order
        from gmodiff.models.dareg import reconstruct_with_dareg

        return reconstruct_with_dareg(scene, **options)
    if name == "gmodiff":  # options: weights, backbone, steps, tile, device, dtype, fuse_lora
        from gmodiff.pipeline import reconstruct_with_gmodiff

        return reconstruct_with_gmodiff(scene, **options)
    raise ConfigError(f"unknown reconstruction method {method!r}",
                      fix=f"use one of {', '.join(available_methods())}")
