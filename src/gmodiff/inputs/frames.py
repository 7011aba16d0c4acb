"""Turning LDR frames into the networks' inputs (spec §1)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from gmodiff.camera.radiance import linearise

if TYPE_CHECKING:
    import torch


def frame_input(ldr: np.ndarray, exposure_time: float) -> np.ndarray:
    """Per-frame 6-channel input ``concat(LDR**2.2 / t, LDR)`` as (H, W, 6) float32."""
    ldr = np.asarray(ldr, dtype=np.float32)
    linear = linearise(ldr, exposure_time)
    return np.concatenate([linear, ldr], axis=-1)


def stack_inputs(frames: list[np.ndarray], exposure_times) -> torch.Tensor:
    """Network input for a bracket: tensor (3, 6, H, W), short → long."""
    import torch  # lazily: the classical merges import this module and need no torch

    per_frame = [frame_input(f, float(t)) for f, t in zip(frames, exposure_times, strict=True)]
    return torch.from_numpy(np.stack(per_frame).transpose(0, 3, 1, 2).copy())
