"""What the three network frames leave out of a plain bracket, put back after reconstruction.

- **Frames beyond the chosen ones** (e.g. −6 and +6 EV when the network takes −3/0/+3): the
  network never sees them, so their range would be lost. They are merged classically into the
  result where the network's own outermost frame has no data: a darker frame fills highlights where
  the short frame is clipped, a brighter one fills shadows where the long frame is near black.
  Nearest frames first, each only where the previous source failed, with smooth weights.
- **Brackets with a reused slot** (two frames, or a reference at one end): the network sees a
  duplicated frame it was never trained on and its output level drifts (0.6–0.8 stops dark on
  two-frame brackets with the bundled model). The result is scaled so its well-exposed pixels
  match the reference frame's radiance (``LDR^2.2 / t``), the convention every classical merge
  here uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmodiff.camera.radiance import linearise
from gmodiff.io.scene import Scene

CLIP_START, CLIP_END = 0.85, 0.98
"""A frame's pixel counts as clipped from CLIP_END (max channel), trusted below CLIP_START."""
DARK_START, DARK_END = 0.08, 0.02
"""A frame's pixel counts as near black below DARK_END (max channel), trusted above DARK_START."""
WELL_EXPOSED = (0.01, 0.95)
MIN_WELL_EXPOSED = 64
"""Fewer well-exposed reference pixels than this: no level correction (nothing to anchor to)."""
_LUMA = np.array([0.2126, 0.7152, 0.0722], dtype=np.float32)


@dataclass
class ExtraFrame:
    """A usable frame outside the network's three, aligned to the reference."""

    frame: np.ndarray
    exposure: float
    """Relative exposure in the scene's units (the scene's shortest frame is 1)."""
    path: Path


def _smoothstep(x: np.ndarray, edge0: float, edge1: float) -> np.ndarray:
    t = np.clip((x - edge0) / (edge1 - edge0), 0.0, 1.0)
    return (t * t * (3 - 2 * t)).astype(np.float32)


def _radiance(frame: np.ndarray, exposure: float) -> np.ndarray:
    return linearise(np.clip(frame, 0.0, 1.0), exposure)


def extend_range(hdr: np.ndarray, scene: Scene, extras: list[ExtraFrame]) -> np.ndarray:
    """``hdr`` with highlights/shadows filled from frames darker/brighter than the scene's."""
    if not extras:
        return hdr
    out = np.array(hdr, dtype=np.float32, copy=True)
    times = np.asarray(scene.exposure_times, dtype=np.float64)
    darker = sorted((e for e in extras if e.exposure < times[0]), key=lambda e: -e.exposure)
    brighter = sorted((e for e in extras if e.exposure > times[-1]), key=lambda e: e.exposure)
    source = scene.frames[0]
    for extra in darker:
        # Where the previous source is clipped and this frame is not.
        weight = (_smoothstep(source.max(axis=2), CLIP_START, CLIP_END)
                  * (1 - _smoothstep(extra.frame.max(axis=2), CLIP_START, CLIP_END)))
        out += weight[..., None] * (_radiance(extra.frame, extra.exposure) - out)
        source = extra.frame
    source = scene.frames[-1]
    for extra in brighter:
        weight = (_smoothstep(source.max(axis=2), DARK_START, DARK_END)
                  * (1 - _smoothstep(extra.frame.max(axis=2), CLIP_START, CLIP_END)))
        out += weight[..., None] * (_radiance(extra.frame, extra.exposure) - out)
        source = extra.frame
    return out


def level_ratio(hdr: np.ndarray, scene: Scene) -> float:
    """Ratio of median luminances, reference radiance over ``hdr``, on the reference's unclipped
    pixels (a ratio of medians, not a median of ratios: the network's error is not one gain)."""
    reference = scene.reference
    low, high = WELL_EXPOSED
    well = (reference.min(axis=2) > low) & (reference.max(axis=2) < high)
    if int(well.sum()) < MIN_WELL_EXPOSED:
        return 1.0
    t_ref = float(scene.exposure_times[scene.reference_index])
    measured = float(np.median(_radiance(reference[well], t_ref) @ _LUMA))
    predicted = float(np.median(np.asarray(hdr, dtype=np.float32)[well] @ _LUMA))
    ratio = measured / predicted if predicted > 1e-8 else 1.0
    return ratio if np.isfinite(ratio) and ratio > 0 else 1.0


def anchor_level(hdr: np.ndarray, scene: Scene) -> np.ndarray:
    """``hdr`` scaled so its well-exposed pixels sit at the reference frame's level."""
    ratio = level_ratio(hdr, scene)
    return hdr if ratio == 1.0 else (np.asarray(hdr, dtype=np.float32) * np.float32(ratio))
