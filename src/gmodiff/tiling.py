"""Overlapping tiles over an image and their smooth re-assembly (any network, any output scale).

A tile's outputs near its borders are less trustworthy (the network saw padding there instead of
the neighbouring pixels), so each tile is weighted by a *feather*: a linear ramp from ~0 at an
inner tile border to 1 at ``overlap`` pixels in, and a flat 1 on borders that are the image's own.
Outputs at any scale of the input grid (full-size maps, 1/32 token grids) blend on the same tiles.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

Box = tuple[int, int, int, int]
"""A tile as (y0, y1, x0, x1), half-open, in input pixels."""

FEATHER_FLOOR = 1e-3
"""Smallest feather weight: keeps a pixel covered by one tile's rim only well-defined."""


def tile_starts(length: int, tile: int, overlap: int, align: int = 1) -> list[int]:
    """Starts of tiles of ``tile`` px covering ``length`` with ≥ ``overlap`` px shared, each a
    multiple of ``align`` (``length`` and ``tile`` should be multiples of it too)."""
    if length <= tile:
        return [0]
    stride = max((tile - overlap) // align * align, align)
    last = (length - tile) // align * align
    starts = list(range(0, last, stride))
    return starts + [last] if last + tile >= length else starts + [last, length - tile]


def fitted_tile(length: int, tile: int, overlap: int, align: int = 1) -> int:
    """The smallest tile side (a multiple of ``align``, at most ``tile``) that covers ``length``
    with as few tiles as ``tile`` itself needs.

    Tiles of the largest size leave the last one overlapping its neighbour by far more than
    ``overlap`` (a 3024-px side in 768-px tiles computes 3840 px); shrinking them evenly to the
    same count computes only what the overlap asks for."""
    if length <= tile:
        return tile
    count = len(tile_starts(length, tile, overlap, align))
    side = -(-(length + (count - 1) * overlap) // count)
    side = -(-side // align) * align
    return min(tile, max(side, overlap + align))


@dataclass(frozen=True)
class TileGrid:
    """Overlapping tiles of ``tile`` px (``overlap`` px shared) over an h×w image; ``tile_width``
    gives the tiles another width (None: square)."""

    height: int
    width: int
    tile: int
    overlap: int
    align: int = 1
    tile_width: int | None = None

    @classmethod
    def fitted(cls, height: int, width: int, tile: int, overlap: int, align: int = 1) -> TileGrid:
        """The grid of at most ``tile``-px tiles with the fewest pixels computed
        (:func:`fitted_tile` on each side)."""
        return cls(height, width, fitted_tile(height, tile, overlap, align), overlap, align,
                   fitted_tile(width, tile, overlap, align))

    def boxes(self) -> list[Box]:
        """Every tile, row by row."""
        tile_w = self.tile_width or self.tile
        ys = tile_starts(self.height, self.tile, self.overlap, self.align)
        xs = tile_starts(self.width, tile_w, self.overlap, self.align)
        return [(y0, min(y0 + self.tile, self.height), x0, min(x0 + tile_w, self.width))
                for y0 in ys for x0 in xs]

    def computed_pixels(self) -> int:
        """Pixels the tiles cover, overlaps counted once per tile (the work a tiled run does)."""
        return sum((y1 - y0) * (x1 - x0) for y0, y1, x0, x1 in self.boxes())

    def __len__(self) -> int:
        return len(self.boxes())

    def __iter__(self) -> Iterator[Box]:
        return iter(self.boxes())


def _ramp(n: int, ramp_start: int, ramp_end: int) -> torch.Tensor:
    """1-D feather of length n: linear up over ``ramp_start`` px, down over ``ramp_end`` px."""
    position = torch.arange(n, dtype=torch.float32) + 0.5
    weight = torch.ones(n)
    if ramp_start > 0:
        weight = torch.minimum(weight, position / ramp_start)
    if ramp_end > 0:
        weight = torch.minimum(weight, (n - position) / ramp_end)
    return weight.clamp_min(FEATHER_FLOOR)


def feather(box: Box, height: int, width: int, ramp: float, scale: float = 1.0) -> torch.Tensor:
    """(h, w) weights of ``box`` (input px) at output ``scale``: ramps of ``ramp`` input px on the
    sides inside the image, none on the image's own borders."""
    y0, y1, x0, x1 = box
    r = max(int(round(ramp * scale)), 0)
    rows = _ramp(round((y1 - y0) * scale), r if y0 > 0 else 0, r if y1 < height else 0)
    cols = _ramp(round((x1 - x0) * scale), r if x0 > 0 else 0, r if x1 < width else 0)
    return rows[:, None] * cols[None, :]


class TileBlender:
    """Accumulates tile outputs (B, C, h·s, w·s) per name and scale s; ``result`` normalises."""

    def __init__(self, grid: TileGrid):
        self.grid = grid
        self._sums: dict[str, torch.Tensor] = {}
        self._weights: dict[str, torch.Tensor] = {}
        self._scales: dict[str, float] = {}

    def add(self, name: str, box: Box, piece: torch.Tensor, scale: float = 1.0) -> None:
        """Add one tile's output ``piece`` for ``box`` (input px); ``scale`` = output/input size."""
        grid = self.grid
        if name not in self._sums:
            size = (round(grid.height * scale), round(grid.width * scale))
            self._sums[name] = torch.zeros((*piece.shape[:2], *size), dtype=torch.float32)
            self._weights[name] = torch.zeros(size, dtype=torch.float32)
            self._scales[name] = scale
        y0, y1, x0, x1 = (round(v * scale) for v in box)
        weight = feather(box, grid.height, grid.width, grid.overlap, scale)
        self._sums[name][:, :, y0:y1, x0:x1] += piece.detach().float().cpu() * weight
        self._weights[name][y0:y1, x0:x1] += weight

    def result(self, name: str) -> torch.Tensor:
        """The blended (B, C, H·s, W·s) output ``name`` (its sum buffer is reused in place)."""
        out = self._sums.pop(name)
        out /= self._weights.pop(name)
        return out


def run_tiled(grid: TileGrid, fn: Callable[[Box], dict[str, tuple[torch.Tensor, float]]],
              on_tile: Callable[[int, int], None] | None = None) -> dict[str, torch.Tensor]:
    """Run ``fn(box)`` → {name: (piece, scale)} on every tile and blend each named output."""
    blender = TileBlender(grid)
    names: list[str] = []
    boxes = grid.boxes()
    for index, box in enumerate(boxes):
        for name, (piece, scale) in fn(box).items():
            if name not in names:
                names.append(name)
            blender.add(name, box, piece, scale)
        if on_tile is not None:
            on_tile(index + 1, len(boxes))
    return {name: blender.result(name) for name in names}
