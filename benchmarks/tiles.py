"""Cost and speed of DaReg's tile layout (issue 25): whole image vs square tiles vs fitted tiles.

Photos above ``gmodiff.memory.MAX_WHOLE_IMAGE_PX`` run DaReg over overlapping tiles. Square
tiles of the plan's size leave the last row and column overlapping their neighbours by far more
than the overlap asks (a 3024-px side in 768-px tiles computes 3840 px); fitted tiles
(:meth:`gmodiff.tiling.TileGrid.fitted`, the default) are shrunk evenly to the same count. This
script scores, on out-of-distribution scenes (``ood_scenes``, evaluation only) rendered at a
tiled size, the DaReg stage three ways: untiled, square tiles and fitted tiles (the memory plan's
tile and overlap, or ``--overlap``), with its time and the pixels each layout computes.

    python benchmarks/tiles.py                    # → benchmarks/results/tiles.md
    python benchmarks/tiles.py --overlap 64 --layouts fitted --out /tmp/tiles64.md
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

import gmodiff.pipeline.dareg_tiles as dareg_tiles
from cli_path import PlannedPipeline  # same folder: benchmarks run as scripts
from gmodiff.io.atomic import atomic_path
from gmodiff.memory import plan_memory
from gmodiff.metrics import psnr_l, psnr_mu
from gmodiff.pipeline.pipeline import GMODiffPipeline
from gmodiff.tiling import TileGrid
from ood_scenes import build_scene, missing_sources, scene_specs

REPO = Path(__file__).resolve().parents[1]
LAYOUTS = ("untiled", "square tiles", "fitted tiles")


class SquareGrid(TileGrid):
    """The layout before fitted tiles: every tile the plan's full size."""

    @classmethod
    def fitted(cls, height, width, tile, overlap, align=1):
        return TileGrid(height, width, tile, overlap, align)


def run_layout(pipe: PlannedPipeline, scene, layout: str, overlap: int | None):
    """(HDR, seconds, memory plan) of the DaReg stage of ``scene`` with one tile layout."""
    plan = plan_memory(scene.height, scene.width, refine=False)
    if plan.dareg_tile is None and layout != "untiled":
        raise SystemExit(f"{scene.width}x{scene.height} runs untiled; pick a larger --size")
    if overlap is not None:
        plan = dataclasses.replace(plan, dareg_overlap=overlap)
    dareg_tiles.TileGrid = SquareGrid if layout == "square tiles" else TileGrid
    try:
        start = time.perf_counter()
        result = pipe.pipe(scene, refine=False, plan=None if layout == "untiled" else plan,
                           mask=False)
        seconds = time.perf_counter() - start
    finally:
        dareg_tiles.TileGrid = TileGrid
    return result.hdr, seconds, plan


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=6, help="scenes (every 5th OOD spec)")
    parser.add_argument("--size", default="1536x2048", help="H x W of each scene")
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap (default: the plan's)")
    parser.add_argument("--layouts", default="untiled,square,fitted",
                        help="comma-separated subset of untiled, square, fitted")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "tiles.md")
    args = parser.parse_args()
    if missing := missing_sources():
        raise SystemExit(f"benchmarks/tiles.py: missing sources {missing}; run `make install`")
    height, width = (int(v) for v in args.size.lower().split("x"))
    layouts = [name for name in LAYOUTS if name.split()[0] in args.layouts.split(",")]
    if "untiled" not in layouts:
        layouts.insert(0, "untiled")  # every tiled layout is also scored against it
    torch.manual_seed(0)
    pipe = PlannedPipeline(GMODiffPipeline.from_pretrained("default"))
    specs = scene_specs()[::5][:args.count]
    rows: dict[str, dict[str, list[float]]] = {k: {"mu": [], "l": [], "vs": [], "s": []} for k in LAYOUTS}
    plan = None
    for spec in specs:
        scene = build_scene(spec, (height, width))
        outputs = {}
        for layout in layouts:
            hdr, seconds, plan = run_layout(pipe, scene, layout, args.overlap)
            outputs[layout] = hdr
            rows[layout]["mu"].append(psnr_mu(hdr, scene.ground_truth))
            rows[layout]["l"].append(psnr_l(hdr, scene.ground_truth))
            rows[layout]["vs"].append(psnr_mu(hdr, outputs["untiled"]) if layout != "untiled" else np.inf)
            rows[layout]["s"].append(seconds)
            print(f"{spec.name} {layout}: {rows[layout]['mu'][-1]:.2f} dB, {seconds:.1f} s", flush=True)
    padded = dareg_tiles.padded_size(height, width, 32)
    grids = {"square tiles": TileGrid(*padded, plan.dareg_tile, plan.dareg_overlap, 32),
             "fitted tiles": TileGrid.fitted(*padded, plan.dareg_tile, plan.dareg_overlap, 32)}
    twelve = {"square tiles": TileGrid(3008, 4000, plan.dareg_tile, plan.dareg_overlap, 32),
              "fitted tiles": TileGrid.fitted(3008, 4000, plan.dareg_tile, plan.dareg_overlap, 32)}
    lines = [
        "# DaReg tile layout: whole image, square tiles, fitted tiles (`benchmarks/tiles.py`)", "",
        f"{len(specs)} out-of-distribution scenes (every 5th of `ood_scenes.scene_specs()`: "
        + ", ".join(s.name for s in specs) + f") rendered at {width}×{height}; the bundled default "
        f"model's DaReg stage (its default output) on the CLI's optimised path; tiles of "
        f"{plan.dareg_tile} px with {plan.dareg_overlap} px overlap"
        + (" (`--overlap`). " if args.overlap is not None else " (the memory plan's). ")
        + f"{platform.machine()} CPU, {os.cpu_count()} cores, torch {torch.__version__}. Seconds: "
        "the pipeline call (curve estimate, merge slot, DaReg, decode), one run each; load average "
        f"at the end {os.getloadavg()[0]:.1f} (compare times within this table only).", "",
        "| layout | PSNR-μ | PSNR-l | PSNR-μ vs untiled | s/scene | pixels computed | "
        "12 MP (4000×3008): pixels computed |",
        "|---|---|---|---|---|---|---|",
    ]
    for layout in layouts:
        r = rows[layout]
        vs = "–" if layout == "untiled" else f"{np.mean(r['vs']):.2f}"
        px = f"{width * height / 1e6:.2f} MP" if layout == "untiled" else \
            f"{grids[layout].computed_pixels() / 1e6:.2f} MP ({len(grids[layout])} tiles)"
        px12 = "–" if layout == "untiled" else \
            f"{twelve[layout].computed_pixels() / 1e6:.2f} MP ({len(twelve[layout])} tiles)"
        lines.append(f"| {layout} | {np.mean(r['mu']):.2f} | {np.mean(r['l']):.2f} | {vs} | "
                     f"{np.mean(r['s']):.1f} | {px} | {px12} |")
    if "square tiles" in layouts and "fitted tiles" in layouts:
        delta = np.array(rows["fitted tiles"]["mu"]) - np.array(rows["square tiles"]["mu"])
        lines += ["", f"Fitted − square, PSNR-μ per scene (paired): mean {delta.mean():+.3f} dB, "
                  f"range {delta.min():+.3f} … {delta.max():+.3f}."]
    lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
