"""``python -m gmodiff.cli.demo --out demo-out``: reconstruct a bundled bracket and score it.

The demo needs no download: it reconstructs the sample scene shipped in ``gmodiff/samples``
(simulated from a blender-data panorama the bundled model never trained on) with the default
model shipped in ``gmodiff/weights/default``, writes the HDR as ``.hdr`` and ``.exr``, tone-mapped
PNG previews, the gain map and the DA mask, and prints the metrics against the sample's ground
truth (and the classical baseline's, for comparison) plus the time taken. Without the sample it
simulates a scene (blender-data view or procedural); without a bundled model it says so and uses
the best classical baseline instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from gmodiff.errors import GmodiffError

SAMPLES_DIR = Path(__file__).parents[1] / "samples"
SAMPLE = "sunset"


def bundled_sample() -> Path | None:
    """The sample scene folder shipped inside the package, if there is one."""
    folder = SAMPLES_DIR / SAMPLE
    return folder if (folder / "exposure.txt").is_file() else None


def demo_radiance(source: str, seed: int) -> tuple[str, np.ndarray]:
    """(description, radiance) for the demo scene: a panorama view or a procedural scene."""
    from gmodiff.data.sources import (
        blender_panoramas,
        perspective_views,
        procedural_radiance,
        read_radiance_file,
    )

    panoramas = blender_panoramas()
    if source in ("auto", "panorama") and panoramas:
        path = panoramas[0]
        view = perspective_views(read_radiance_file(path), 1, fov_deg=80.0, size=(256, 384),
                                 rng=np.random.default_rng(seed), max_pitch_deg=5.0)[0]
        return f"a view of the blender-data panorama {path.name}", view
    if source == "panorama":
        print("blender-data panoramas are not installed; using a procedural scene")
    return "a procedural scene", procedural_radiance(384, 512, seed)


def demo_scene(source: str, seed: int):
    """(description, Scene with ground truth) for the demo: the bundled sample or a simulation."""
    from gmodiff.data.simulate import SimulationConfig, simulate
    from gmodiff.io.scene import load_scene

    sample = bundled_sample()
    if source in ("auto", "sample") and sample is not None:
        scene = load_scene(sample)
        return (f"the bundled sample scene '{sample.name}' (simulated from the held-out blender-data "
                "panorama sunset.exr; camera shake and a moving object)"), scene
    if source == "sample":
        print("the bundled sample scene is not installed; simulating one")
    description, radiance = demo_radiance("auto" if source == "sample" else source, seed)
    config = SimulationConfig(ev_spacing_stops=2.0, motion=True, response="random")
    simulation = simulate(radiance, config, seed=seed, name="demo_scene")
    description = (f"{description}, simulated with camera response {simulation.response.name}, "
                   "camera shake and moving objects on the non-reference frames")
    return description, simulation.scene


def _print_metrics(title: str, metrics: dict) -> None:
    print(title)
    for name, value in metrics.items():
        print(f"  {name:10s} {value:8.4f}" if "ssim" in name else f"  {name:10s} {value:8.2f} dB")


def run_demo(out: Path, seed: int = 0, source: str = "auto", method: str | None = None,
             compare: bool = True) -> dict:
    """Run the demo end to end and return the metrics; prints what it does."""
    from gmodiff.io.hdr import write_hdr
    from gmodiff.io.preview import preview_gain, write_preview
    from gmodiff.io.scene import save_scene
    from gmodiff.jobs import write_maps
    from gmodiff.metrics import evaluate_pair
    from gmodiff.pipeline.bundled import bundled_pipeline
    from gmodiff.methods import reconstruct_scene

    start = time.perf_counter()
    options: dict = {}
    weights = bundled_pipeline()
    if method is None:
        if weights is not None:
            method, options = "gmodiff", {"weights": weights}
        else:
            method = "classical"
            print("No trained GMODiff model is bundled, so this demo uses the classical "
                  "baseline (reference-guided deghosting merge) instead of the diffusion model.")
    elif method == "gmodiff" and weights is not None:
        options = {"weights": weights}

    description, scene = demo_scene(source, seed)
    print(f"Scene: {description}; {scene.width}x{scene.height}, exposures "
          f"{', '.join(f'{t:g}' for t in scene.exposure_times)} (relative).")

    out.mkdir(parents=True, exist_ok=True)
    save_scene(scene, out / "scene", overwrite=True)
    result = reconstruct_scene(scene, method, **options)
    written = [out / "hdr.hdr", out / "hdr.exr", out / "preview.png"]
    # Reference-white units, like `gmodiff reconstruct` (scene/HDRImg.hdr stays in the scene's
    # units, the ground truth's convention; `gmodiff eval` reads both headers).
    write_hdr(out / "hdr.hdr", result.hdr, exposure=scene.reference_exposure)
    write_hdr(out / "hdr.exr", result.hdr, exposure=scene.reference_exposure)
    # The same rendition as `gmodiff reconstruct --preview` (reference exposure), one gain for both
    # pictures so they compare.
    exposure = preview_gain(scene.ground_truth, "reference",
                            float(scene.exposure_times[scene.reference_index]))
    write_preview(out / "preview.png", result.hdr, exposure)
    write_preview(out / "ground_truth.png", scene.ground_truth, exposure)
    written += write_maps(result, out / "gain_map.png", out / "mask.png")
    metrics = evaluate_pair(result.hdr, scene.ground_truth)

    label = {"gmodiff": "GMODiff, the bundled default model: DaReg + one-step diffusion refinement",
             "gmodiff-dareg-only": "the bundled default model's DaReg stage (its refiner is off by "
                                   "default: see gmodiff/weights/default/MODEL_CARD.md)"}.get(
                                       result.method, result.method)
    print(f"Reconstructed with {label} in {result.timings['total']:.2f} s.")
    _print_metrics("Metrics against the ground truth:", metrics)
    if compare and result.refined is not None:
        # The stage the default output did not use: the refiner if it is off, else DaReg alone.
        refine = not result.refined
        other = reconstruct_scene(scene, "gmodiff", weights=weights, refine=refine)
        name = "With its one-step refiner (--refine)" if refine else "Its DaReg stage alone (--no-refine)"
        print(f"{name}: PSNR-μ {evaluate_pair(other.hdr, scene.ground_truth)['psnr_mu']:.2f} dB "
              f"({other.timings['total']:.2f} s).")
    if compare and result.method not in ("deghost", "classical"):
        baseline = reconstruct_scene(scene, "classical")
        _print_metrics(f"For comparison, the classical baseline ({baseline.method}, "
                       f"{baseline.timings['total']:.2f} s):",
                       evaluate_pair(baseline.hdr, scene.ground_truth))
    print(f"Wrote {', '.join(str(p) for p in written)} (ground truth: {out / 'ground_truth.png'}; "
          f"input bracket: {out / 'scene'}).")
    print(f"Demo took {time.perf_counter() - start:.1f} s.")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m gmodiff.cli.demo [--out DIR] [--seed N]``."""
    parser = argparse.ArgumentParser(prog="python -m gmodiff.cli.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="scene seed")
    parser.add_argument("--source", choices=("auto", "sample", "panorama", "procedural"),
                        default="auto", help="the bundled sample scene (auto, when installed) or "
                        "a simulated one")
    parser.add_argument("--method", default=None,
                        help="force a reconstruction method (default: the bundled model, else "
                        "classical)")
    parser.add_argument("--no-compare", action="store_true",
                        help="skip the classical baseline run printed for comparison")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, args.seed, args.source, args.method, compare=not args.no_compare)
    except GmodiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
