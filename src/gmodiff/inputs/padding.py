"""The one padder: network inputs grow to the model's multiple with the model's ``pad_mode``.

The untiled road pads the whole encoded image; the tiled road pads each edge tile's encoded crop
to the tile's size with the same function, so both see the same values past the image's edge
(zeros for the reference release's ``"constant"``, repeated or mirrored rows otherwise).
"""

from __future__ import annotations

from typing import Protocol

import torch
import torch.nn.functional as F

PAD_MODES = ("replicate", "reflect", "constant")


class PadSpec(Protocol):
    """What padding needs of a model config."""

    multiple: int
    pad_mode: str
    """One of :data:`PAD_MODES` ("constant" pads zeros)."""


def pad_to(x: torch.Tensor, height: int, width: int, mode: str) -> torch.Tensor:
    """Pad the last two dims of ``x`` (any leading dims) at the bottom/right to (height, width)."""
    pad_h, pad_w = height - x.shape[-2], width - x.shape[-1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} down to {(height, width)}")
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "reflect" and (pad_h >= x.shape[-2] or pad_w >= x.shape[-1]):
        mode = "replicate"  # reflect cannot pad more than the size itself
    lead, (h, w) = x.shape[:-2], x.shape[-2:]
    # F.pad's replicate/reflect modes want (N, C, H, W); padding is per channel, so folding the
    # leading dims into channels changes nothing.
    padded = F.pad(x.reshape(1, -1, h, w), (0, pad_w, 0, pad_h), mode=mode)
    return padded.reshape(*lead, height, width)


def pad(x: torch.Tensor, spec: PadSpec) -> torch.Tensor:
    """Pad the last two dims of ``x`` up to multiples of ``spec.multiple`` with ``spec.pad_mode``."""
    height, width = x.shape[-2:]
    return pad_to(x, height + (-height) % spec.multiple, width + (-width) % spec.multiple,
                  spec.pad_mode)


def crop(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Cut a padded output back to ``size`` (H, W) in its last two dims."""
    return x[..., :size[0], :size[1]]
