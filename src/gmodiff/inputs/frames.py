"""Turning LDR frames into the networks' inputs (spec §1)."""

from __future__ import annotations

import numpy as np

from gmodiff.camera.radiance import linearise


def stack_frames(frames: list[np.ndarray], exposure_times, extra_slots: int = 0) -> np.ndarray:
    """Every frame's 6-channel input ``concat(LDR**2.2 / t, LDR)``, channels first, as one
    (S + extra, 6, H, W) float32 array whose last ``extra_slots`` slots are left for the caller
    to fill (the merge slot).

    Each frame's channels are written straight into their place: at 12 MP, per tile, building
    them by concatenate/stack/transpose/cat cost 3 s of the tiled DaReg stage."""
    height, width = np.asarray(frames[0]).shape[:2]
    out = np.empty((len(frames) + extra_slots, 6, height, width), np.float32)
    for slot, (frame, time) in enumerate(zip(frames, exposure_times, strict=True)):
        ldr = np.asarray(frame, dtype=np.float32)
        out[slot, :3] = linearise(ldr, float(time)).transpose(2, 0, 1)
        out[slot, 3:] = ldr.transpose(2, 0, 1)
    return out
