"""Region masks of a scene folder for :mod:`gmodiff.evaluation.folder` (files in, boolean masks out).

- ``clipped``: from the scene's reference frame (always available);
- ``motion``: from ``motion_mask.png`` in the scene folder (simulated scenes);
- ``unreliable``: from ``<scene>.mask.png`` beside the prediction (the DA mask that
  ``gmodiff reconstruct --debug-maps`` writes).

The definitions and thresholds live in :mod:`gmodiff.metrics.regions`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmodiff.errors import SceneError
from gmodiff.io.ldr import read_ldr
from gmodiff.io.scene import MOTION_MASK_FILE, load_scene


def da_mask_path(pred_path: Path) -> Path:
    """Where ``reconstruct --debug-maps`` puts the DA mask of ``<scene>.exr``: ``<scene>.mask.png``."""
    return pred_path.with_name(f"{pred_path.stem}.mask.png")


def carries_masks(folder: Path, pred_path: Path | None) -> bool:
    """Whether a scene has a motion mask or its prediction a DA mask beside it."""
    return (folder / MOTION_MASK_FILE).is_file() or (
        pred_path is not None and da_mask_path(pred_path).is_file())


def scene_region_masks(folder: Path, pred_path: Path, shape: tuple[int, int]) -> dict[str, np.ndarray]:
    """Boolean (H, W) region masks for one scene; ``shape`` is the ground truth's (H, W)."""
    from gmodiff.metrics.regions import region_masks

    scene = load_scene(folder, load_ground_truth=False)
    da_mask = None
    mask_path = da_mask_path(pred_path)
    if mask_path.is_file():
        da_mask = read_ldr(mask_path).pixels[..., 0]
        if da_mask.shape != tuple(shape):
            raise SceneError(f"DA mask is {da_mask.shape[1]}x{da_mask.shape[0]}, ground truth is "
                             f"{shape[1]}x{shape[0]}", mask_path,
                             "re-run reconstruct --debug-maps for this scene or delete the mask")
    return region_masks(reference=scene.reference, da_mask=da_mask, motion_mask=scene.motion_mask)
