"""A smooth random 3-frame bracket for timing runs (content does not change the cost).

Shared by speed.py and gpu_check.py; it imports nothing heavier than numpy and the Scene type,
so gpu_check can still write its rows when diffusers is missing on a device.
"""

from __future__ import annotations

import numpy as np


def toy_scene(height: int, width: int, seed: int = 0):
    """A smooth random bracket, exposures 1, 4, 16, gamma-2.2 encoded."""
    from gmodiff.io.scene import Scene

    rng = np.random.default_rng(seed)
    low = rng.uniform(0.02, 0.6, size=(height // 16 + 1, width // 16 + 1, 3))
    radiance = np.kron(low, np.ones((16, 16, 1)))[:height, :width].astype(np.float32)
    times = np.array([1.0, 4.0, 16.0], dtype=np.float32)
    frames = [np.clip((radiance * t) ** (1 / 2.2), 0, 1).astype(np.float32) for t in times]
    return Scene(frames=frames, exposure_times=times, name=f"toy{height}x{width}")
