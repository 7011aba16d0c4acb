"""Small synthetic scenes for DaReg data/training tests (written with gmodiff.io.scene)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from gmodiff.io.scene import Scene, save_scene


def synthetic_scene(seed: int, height: int = 48, width: int = 56) -> Scene:
    """A smooth random radiance bracketed at 1/4/16 with gamma 2.2 and clipping, GT = radiance."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    radiance = np.stack([
        0.3 + 0.3 * np.sin(6 * xx * rng.uniform(0.5, 2) + c) * np.cos(5 * yy * rng.uniform(0.5, 2))
        for c in range(3)], axis=-1) ** 2
    radiance[rng.uniform(size=(height, width)) > 0.97] = 0.9  # a few highlights
    radiance = radiance.astype(np.float32)
    times = np.array([1.0, 4.0, 16.0])
    frames = [np.clip(radiance * t, 0, 1) ** (1 / 2.2) for t in times]
    # Ground truth relative to the shortest exposure, bounded by L_ref + 1/64 as in Kalantari data.
    gt = np.minimum(radiance, frames[1] + 1 / 64).astype(np.float32)
    return Scene(frames=[f.astype(np.float32) for f in frames], exposure_times=times,
                 ground_truth=gt, name=f"scene{seed:02d}")


def write_scenes(root: Path, count: int, height: int = 48, width: int = 56) -> Path:
    """Write ``count`` synthetic scene folders under ``root``; return ``root``."""
    for seed in range(count):
        save_scene(synthetic_scene(seed, height, width), root / f"scene{seed:02d}")
    return root
