"""The ``Scene`` type: one bracketed exposure stack plus its optional ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class Scene:
    """A bracket of LDR frames of one scene.

    ``frames`` are float32 (H, W, 3) RGB in [0, 1], in the camera's non-linear encoding, ordered
    short → long exposure. ``exposure_times`` are relative (the shortest is normally 1, i.e.
    ``t = 2**stops`` with stops from ``exposure.txt``). ``ground_truth`` is linear radiance aligned
    to the reference frame, relative to the t=1 exposure (so roughly in [0, 1]).
    """

    frames: list[np.ndarray]
    exposure_times: np.ndarray
    reference_index: int = 1
    ground_truth: np.ndarray | None = None
    name: str = "scene"
    root: Path | None = None
    frame_paths: list[Path] = field(default_factory=list)

    @property
    def reference(self) -> np.ndarray:
        """The reference (normally medium) LDR frame."""
        return self.frames[self.reference_index]

    @property
    def exposure_stops(self) -> np.ndarray:
        """Exposure values in stops (log2 of the relative exposure times)."""
        return np.log2(np.asarray(self.exposure_times, dtype=np.float64))

    @property
    def height(self) -> int:
        return int(self.frames[0].shape[0])

    @property
    def width(self) -> int:
        return int(self.frames[0].shape[1])
