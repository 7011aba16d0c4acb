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


def stack_frames(frames: list[np.ndarray], exposure_times, extra_slots: int = 0) -> np.ndarray:
    """:func:`frame_input` of every frame, channels first, as one (S + extra, 6, H, W) float32
    array whose last ``extra_slots`` slots are left for the caller to fill (the merge slot).

    Each frame's channels are written straight into their place: at 12 MP, per tile, the
    concatenate/stack/transpose/cat copies cost 3 s of the tiled DaReg stage."""
    first = np.asarray(frames[0])
    height, width = first.shape[:2]
    out = np.empty((len(frames) + extra_slots, 6, height, width), np.float32)
    for slot, (frame, time) in enumerate(zip(frames, exposure_times, strict=True)):
        ldr = np.asarray(frame, dtype=np.float32)
        out[slot, :3] = linearise(ldr, float(time)).transpose(2, 0, 1)
        out[slot, 3:] = ldr.transpose(2, 0, 1)
    return out


def stack_inputs(frames: list[np.ndarray], exposure_times) -> torch.Tensor:
    """Network input for a bracket: tensor (3, 6, H, W), short → long."""
    import torch  # lazily: the classical merges import this module and need no torch

    return torch.from_numpy(stack_frames(list(frames), exposure_times))
