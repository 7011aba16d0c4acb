"""Bracket → network input tensors, and back: the one place inputs are encoded, padded, cropped.

Every road from a bracket to the networks goes through here: inference (``gmodiff.methods``
and ``GMODiffPipeline``), the training datasets (``gmodiff.data.datasets``) and the refiner's
training (through ``GMODiffPipeline.predict``). Padding has one owner, :func:`pad`, and one mode:
the model config's ``pad_mode``, so every road pads alike.

A per-model input step (frames linearised with an estimated camera response, an extra input for
another DaReg input layout, ...) plugs into :func:`encode_bracket`, which is handed the model
config. This module sits on the data floor: it knows a model config only by the fields of
:class:`InputSpec`, never imports ``gmodiff.models``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch

from gmodiff.errors import SceneError
from gmodiff.inputs.frames import stack_frames
from gmodiff.inputs.padding import pad

FRAMES = 3
"""The networks take three frames, short → long."""
REFERENCE_INDEX = 1
"""The middle frame is the reference the gain map lifts to HDR."""


class InputSpec(Protocol):
    """What preprocessing reads from a model config (``DaRegConfig`` has these fields)."""

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this."""

    pad_mode: str
    """One of :data:`PAD_MODES` ("constant" pads zeros)."""


@dataclass(frozen=True)
class InputLayout:
    """The input fields of a model config that data must follow (``DaRegConfig`` has them):
    training datasets carry one so their items match the network they feed."""

    canonical_inputs: bool = False
    merge_input: bool = False


@dataclass(frozen=True)
class DefaultSpec:
    """The spec of a model that states none: replicate-pad to a multiple of 32."""

    multiple: int = 32
    pad_mode: str = "replicate"


@dataclass
class NetworkInputs:
    """A batch ready for DaReg and the refiner, padded to the model's multiple."""

    inputs: torch.Tensor
    """(B, S, C, H', W'): per-frame network inputs, short → long (+ the merge slot, S = 4)."""
    ldr_short: torch.Tensor
    """(B, 3, H', W') short exposure in [0, 1] (the refiner's condition)."""
    size: tuple[int, int]
    """(H, W) before padding: :func:`crop` cuts outputs back to it."""


def require_bracket(scene) -> None:
    """Refuse a scene the networks cannot take: three frames with the middle one as reference."""
    if len(scene.frames) != FRAMES or scene.reference_index != REFERENCE_INDEX:
        raise SceneError(f"the networks need 3 frames with the middle one as reference, got "
                         f"{len(scene.frames)} frames (reference {scene.reference_index})",
                         scene.root, "give a short, medium and long exposure")


FrameEncoder = Callable[[list[np.ndarray]], list[np.ndarray]]
"""Frames (or same-place crops of them) → the frames a model takes, pixel by pixel."""


def network_encoder(scene, spec: InputSpec | None = None) -> FrameEncoder:
    """How the model wants this scene's frames: re-encoded from a camera response estimated on
    the whole bracket when the config has ``canonical_inputs`` (``gmodiff.inputs.canonical``),
    else as they are. Pixel by pixel, so it may run on crops (tiled DaReg)."""
    if not getattr(spec, "canonical_inputs", False):
        return list
    from gmodiff.inputs.canonical import canonical_encoder

    return canonical_encoder(scene)


def network_scene(scene, spec: InputSpec | None = None):
    """The scene as the model sees it: its frames through :func:`network_encoder` (``scene``
    itself when the model takes frames as they are). Gain maps decode against this scene's
    reference frame."""
    if not getattr(spec, "canonical_inputs", False):
        return scene
    return dataclasses.replace(scene, frames=network_encoder(scene, spec)(scene.frames))


def encode_bracket(frames: Sequence[np.ndarray], exposure_times: Sequence[float],
                   spec: InputSpec | None = None, merge_plan=None) -> torch.Tensor:
    """Network input (S, C, H, W) of a bracket (frames short → long, H×W×3 in [0, 1]).

    The per-model input step hooks in here: ``spec`` is the model config, so a model whose
    config asks for another encoding gets it on every road (inference and training alike).
    Every model takes the standard layout ``concat(LDR**2.2 / t, LDR)`` per frame (S = 3); a
    config with ``merge_input`` adds the classical merge of the bracket as a fourth slot;
    ``merge_plan`` (:class:`gmodiff.baselines.merge.DeghostPlan`, for crops: fitted on the whole
    frames) gives that merge its warps and mappings.
    """
    merge = bool(getattr(spec, "merge_input", False))
    inputs = stack_frames(list(frames), exposure_times, extra_slots=int(merge))
    if not merge:
        return torch.from_numpy(inputs)
    from gmodiff.inputs.canonical import merge_slot
    from gmodiff.io.scene import Scene

    bracket = Scene(frames=list(frames), exposure_times=np.asarray(exposure_times, np.float64),
                    reference_index=REFERENCE_INDEX)
    merge_slot(bracket, merge_plan, out=inputs[-1])
    return torch.from_numpy(inputs)


def batch_inputs(inputs: torch.Tensor, ldr_short: torch.Tensor, spec: InputSpec) -> NetworkInputs:
    """Pad a batch of encoded inputs (B, 3, C, H, W) and short frames (B, 3, H, W) for a model."""
    size = (int(inputs.shape[-2]), int(inputs.shape[-1]))
    return NetworkInputs(pad(inputs, spec), pad(ldr_short, spec), size)


def scene_inputs(scene, spec: InputSpec) -> NetworkInputs:
    """A batch of one from a :class:`~gmodiff.io.scene.Scene`, checked and padded for a model.

    Pass the scene through :func:`network_scene` first for models with ``canonical_inputs``."""
    require_bracket(scene)
    inputs = encode_bracket(scene.frames, scene.exposure_times, spec)[None]
    short = np.ascontiguousarray(np.asarray(scene.frames[0], dtype=np.float32).transpose(2, 0, 1))
    return batch_inputs(inputs, torch.from_numpy(short)[None], spec)


def to_image(x: torch.Tensor) -> np.ndarray:
    """First item of a (B, C, H, W) output as a float32 (H, W, C) array, or (H, W) for C = 1."""
    image = x[0].float().cpu().numpy()
    return image[0] if image.shape[0] == 1 else np.ascontiguousarray(image.transpose(1, 2, 0))
