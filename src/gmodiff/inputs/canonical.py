"""Canonical inputs: frames re-encoded with gamma 2.2 and a classical merge as an extra input.

A camera's response is unknown to the network; guessing it is what made the first default
model overestimate deep shadows on real cameras. Here the frames are linearised with a curve
estimated from the bracket itself (``gmodiff.camera.calibration``), or with the simulator's true curve
during training, and re-encoded as ``linear ** (1 / 2.2)``: exactly the encoding the spec §1
inputs (``L ** 2.2 / t``) and the gain-map codec assume. The classical deghost merge of the
canonical frames is then an input of its own (``merge_input`` DaRegs), so the network only has
to correct it where frames move or clip.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np

from gmodiff.camera.radiance import GAMMA
from gmodiff.gainmap import encode_gain_map
from gmodiff.io.frames import RAW_ENCODING
from gmodiff.io.scene import Scene
from gmodiff.pixelmath import owned, power

Linearise = Callable[[np.ndarray], np.ndarray]
CURVE_JITTER = 0.06
"""Default strength of :func:`jittered_inverse` (v4 was trained with it)."""
"""A camera's inverse response: encoded values in [0, 1] → linear values in [0, 1]."""


def canonical_frames(frames: list[np.ndarray], linearise: Linearise) -> list[np.ndarray]:
    """Frames linearised by ``linearise`` and re-encoded with gamma 2.2, float32 in [0, 1]."""
    out = []
    for frame in frames:
        linear = linearise(np.clip(np.asarray(frame, np.float32), 0.0, 1.0))
        # in place: the curve's output is a fresh array (a tile-sized copy less per frame)
        linear = np.clip(linear, 0.0, 1.0, out=linear if owned(linear, frame) else None)
        out.append(power(linear, 1.0 / GAMMA))
    return out


def canonical_encoder(scene: Scene, linearise: Linearise | None = None
                      ) -> Callable[[list[np.ndarray]], list[np.ndarray]]:
    """:func:`canonical_frames` with the curve fixed (estimated from the whole bracket when not
    given; raw scenes, whose frames are canonical already, pass through). It works pixel by pixel, so crops of frames give crops of the canonical frames:
    tiled DaReg encodes each tile's crops and never holds full-size canonical frames."""
    if linearise is None and scene.encoding == RAW_ENCODING:
        return list  # raw frames are canonical already: the curve is known, nothing to estimate
    if linearise is None:
        from gmodiff.camera.calibration import estimate_response

        linearise = estimate_response(scene.frames, scene.exposure_times).linearise
    return functools.partial(canonical_frames, linearise=linearise)


def canonicalise_scene(scene: Scene, linearise: Linearise | None = None) -> Scene:
    """``scene`` with canonical frames; the curve is estimated from the bracket when not given.

    Ground truth, exposures and reference stay as they are: the ground truth is linear already.
    """
    return dataclasses.replace(scene, frames=canonical_encoder(scene, linearise)(scene.frames))


def merge_slot(scene: Scene, plan=None, out: np.ndarray | None = None) -> np.ndarray:
    """The ``merge_input`` slot for a (canonical) scene: ``concat(H, GM)`` as (H, W, 6) float32,
    or written channels first into ``out`` (6, H, W) and returned as that.

    H is the deghost merge (linear, relative to t=1 like the frames' ``L**2.2 / t`` channels)
    and GM its gain map relative to the reference frame, what the network's gate blends in.
    ``plan`` is the merge's :class:`~gmodiff.baselines.merge.DeghostPlan` (fitted here if None).
    """
    from gmodiff.baselines.merge import deghost_merge

    hdr = deghost_merge(scene, plan=plan)
    gain_map = encode_gain_map(hdr, np.asarray(scene.reference, np.float32))
    if out is None:
        return np.concatenate([hdr, gain_map], axis=-1).astype(np.float32)
    out[:3] = hdr.transpose(2, 0, 1)
    out[3:] = gain_map.transpose(2, 0, 1)
    return out


def jittered_inverse(inverse: Linearise, rng: np.random.Generator,
                     strength: float = CURVE_JITTER) -> Linearise:
    """A true inverse response bent by a random power ``1 ± strength`` (training only).

    At run time the curve is estimated, never exact; training on slightly wrong curves keeps
    the network from relying on a perfect linearisation. Too strong a bend costs level, though:
    a network that cannot trust its inputs' level regresses deep shadows toward brighter
    training values (v4 at 0.06 lifts shadows ×1.1-1.2 on 3-stop brackets, issue #13).
    """
    power = float(np.exp(rng.uniform(-strength, strength)))

    def linearise(encoded: np.ndarray) -> np.ndarray:
        return np.power(np.clip(inverse(encoded), 0.0, 1.0), power)

    return linearise
