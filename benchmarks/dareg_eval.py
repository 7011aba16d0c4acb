"""Held-out evaluation of a trained DaReg against the classical baselines on simulated brackets.

Scenes are simulated (gmodiff.data.simulate) from perspective views of held-out HDR panoramas
(blender-data panoramas 6 and 7 by default; training used 0-5 plus procedural scenes), with a
seed no training or validation run uses. Writes a Markdown table.

    python benchmarks/dareg_eval.py --weights runs/dareg-stage2-tiny/final \
        --out benchmarks/results/dareg.md
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gmodiff.baselines import CLASSICAL_METHODS
from gmodiff.data.datasets import SimulatedDataset, panorama_source
from gmodiff.data.sources import blender_panoramas
from gmodiff.io.atomic import atomic_path
from gmodiff.metrics import psnr_l, psnr_mu, ssim_mu
from gmodiff.methods import ReconstructOptions, load_method


def held_out_scenes(panoramas: list[int], count: int, size: int, seed: int,
                    simulation=None) -> list:
    """``count`` simulated scenes from the given blender-data panorama indices (``simulation``: a
    SimulationConfig, None for the simulator's defaults)."""
    paths = blender_panoramas()
    dataset = SimulatedDataset([panorama_source(paths[i]) for i in panoramas], count, size, seed=seed,
                               simulation=simulation)
    return [dataset.scene(i) for i in range(count)]


def evaluate(weights: Path, scenes: list) -> dict[str, dict[str, float]]:
    """Mean PSNR-μ / PSNR-l / SSIM-μ and seconds per scene for every method."""
    methods = {name: fn for name, fn in CLASSICAL_METHODS.items()}
    options = ReconstructOptions(weights=weights)
    model = load_method("dareg", options)
    methods["dareg (tiny)"] = lambda scene: model.reconstruct(scene, options).hdr
    table: dict[str, dict[str, float]] = {}
    for name, method in methods.items():
        scores = {"psnr_mu": [], "psnr_l": [], "ssim_mu": [], "seconds": []}
        for scene in tqdm(scenes, desc=name, leave=False):
            start = time.perf_counter()
            hdr = method(scene)
            scores["seconds"].append(time.perf_counter() - start)
            scores["psnr_mu"].append(psnr_mu(hdr, scene.ground_truth))
            scores["psnr_l"].append(psnr_l(hdr, scene.ground_truth))
            scores["ssim_mu"].append(ssim_mu(hdr, scene.ground_truth))
        table[name] = {key: float(np.mean(values)) for key, values in scores.items()}
    return table


def main() -> None:
    """Parse flags, evaluate, write the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", type=Path, required=True)
    parser.add_argument("--panoramas", type=int, nargs="+", default=[6, 7])
    parser.add_argument("--count", type=int, default=16)
    parser.add_argument("--size", type=int, default=384)
    parser.add_argument("--seed", type=int, default=777)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dareg_eval.md"))
    args = parser.parse_args()
    scenes = held_out_scenes(args.panoramas, args.count, args.size, args.seed)
    table = evaluate(args.weights, scenes)
    names = [Path(p).stem for p in blender_panoramas()]
    held = ", ".join(names[i] for i in args.panoramas)
    lines = [
        f"Held-out simulated scenes: {args.count} views ({args.size}x{args.size}) of panoramas "
        f"{held}, seed {args.seed}; weights `{args.weights}`.",
        "",
        "| method | PSNR-μ | PSNR-l | SSIM-μ | s/scene |",
        "|---|---|---|---|---|",
    ]
    for name, row in sorted(table.items(), key=lambda kv: -kv[1]["psnr_mu"]):
        lines.append(f"| {name} | {row['psnr_mu']:.2f} | {row['psnr_l']:.2f} | {row['ssim_mu']:.4f} "
                     f"| {row['seconds']:.3f} |")
    text = "\n".join(lines) + "\n"
    with atomic_path(args.out) as tmp:
        tmp.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
