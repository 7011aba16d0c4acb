"""DaReg over overlapping tiles of a bracket, so a 12-MP photo never holds full-size features.

Each tile's network input is built (``gmodiff.inputs.encode.encode_bracket``) from crops of the frames,
re-encoded for the model tile by tile (neither the full input stack nor full-size canonical frames
are ever made). Tiles start on multiples of DaReg's total down-sampling, so every tile's prior
tokens sit on the whole image's token grid; gain map, DA mask and tokens are then blended with the
same feathered weights (:mod:`gmodiff.tiling`). A tile past the image's bottom/right edge is
encoded from the part inside the image and padded with the model's ``pad_mode`` by the one padder
(:mod:`gmodiff.inputs.padding`), as the untiled road pads the whole image, so the outputs have
the padded size and see the same values past the edge on both roads.

Differences from the untiled output come only from context a tile cannot see: DaReg's channel
attention pools over the whole tile, and the deepest level's receptive field is wider than the
overlap. ``tests/test_tiling.py`` and ``benchmarks/results/memory.md`` bound the effect.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from gmodiff.inputs.encode import FrameEncoder, encode_bracket
from gmodiff.inputs.padding import pad_to
from gmodiff.models.dareg import DaReg, DaRegOutput
from gmodiff.tiling import Box, TileGrid, run_tiled


def padded_size(height: int, width: int, multiple: int) -> tuple[int, int]:
    """(H, W) rounded up to a multiple of ``multiple``."""
    return -(-height // multiple) * multiple, -(-width // multiple) * multiple


def crop_inside(frame: np.ndarray, box: Box) -> np.ndarray:
    """The part of ``frame[y0:y1, x0:x1]`` that lies inside the image (never empty)."""
    y0, y1, x0, x1 = box
    return frame[y0:min(y1, frame.shape[0]), x0:min(x1, frame.shape[1])]


def dareg_tiled(dareg: DaReg, frames: Sequence[np.ndarray], exposure_times: Sequence[float],
                tile: int, overlap: int, multiple: int = 32,
                on_tile: Callable[[int, int], None] | None = None,
                encode: FrameEncoder | None = None, mask: bool = True,
                network: Callable[..., DaRegOutput] | None = None) -> DaRegOutput:
    """DaReg outputs (gain map, mask, tokens) of the padded image, from tiles of at most
    ``tile`` px (:meth:`gmodiff.tiling.TileGrid.fitted`).

    ``encode`` (:func:`gmodiff.inputs.encode.network_encoder`) re-encodes each tile's crops, so
    the frames may be the scene's own and the model's full-size frames are never made; ``mask``
    False skips the DA-mask head (the output's mask is then None); ``network`` runs the tiles
    in place of ``dareg`` (its compiled forward, :mod:`gmodiff.pipeline.openvino_dareg`)."""
    multiple = max(multiple, dareg.config.multiple)
    if tile % multiple or overlap % multiple:
        raise ValueError(f"tile {tile} and overlap {overlap} must be multiples of {multiple}")
    height, width = frames[0].shape[:2]
    # Tiles shrunk evenly to the count the largest size needs: 8 % fewer pixels computed at 12 MP.
    grid = TileGrid.fitted(*padded_size(height, width, multiple), tile=tile, overlap=overlap,
                           align=multiple)
    parameter = next(dareg.parameters())
    times = [float(t) for t in exposure_times]
    # The merge slot's warps and mappings are fitted once on the whole frames, so every tile
    # merges with the same ones (and the fits are not paid once per tile).
    merge_plan = None
    if getattr(dareg.config, "merge_input", False):
        from gmodiff.baselines.merge import plan_deghost
        from gmodiff.inputs.encode import REFERENCE_INDEX

        merge_plan = plan_deghost(frames, REFERENCE_INDEX, encode=encode)

    def run(box: Box) -> dict[str, tuple[torch.Tensor, float]]:
        crops = [crop_inside(frame, box) for frame in frames]
        if encode is not None:
            crops = encode(crops)
        y0, y1, x0, x1 = box
        plan = merge_plan.cropped(y0, x0) if merge_plan is not None else None
        inputs = pad_to(encode_bracket(crops, times, dareg.config, plan), y1 - y0, x1 - x0,
                        dareg.config.pad_mode)
        with torch.no_grad():
            out = (network or dareg)(inputs[None].to(parameter.device, parameter.dtype),
                                     with_mask=mask)
        out = out.float()  # bf16 under autocast; blending and the refiner want float32
        grid_h, grid_w = (y1 - y0) // multiple, (x1 - x0) // multiple
        token_map = out.tokens.transpose(1, 2).reshape(out.tokens.shape[0], -1, grid_h, grid_w)
        pieces = {"gain_map": (out.gain_map, 1.0), "tokens": (token_map, 1.0 / multiple)}
        if out.mask is not None:
            pieces["mask"] = (out.mask, 1.0)
        return pieces

    with torch.no_grad():
        blended = run_tiled(grid, run, on_tile)
    tokens = blended["tokens"].flatten(2).transpose(1, 2).contiguous()
    return DaRegOutput(gain_map=blended["gain_map"], mask=blended.get("mask"), tokens=tokens)
