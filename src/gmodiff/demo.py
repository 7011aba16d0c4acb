"""``python -m gmodiff.demo --out demo-out``: simulate a bracket, reconstruct it, score it.

The demo needs no download: it simulates a scene from a ``blender-data`` panorama view when that
package is installed (else from a procedural scene), reconstructs its HDR, writes the HDR as
``.hdr`` and ``.exr`` with tone-mapped PNG previews, and prints the metrics against the
simulated ground truth. While no trained model is bundled in ``gmodiff/weights`` it says so and
uses the best classical baseline instead.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from gmodiff.errors import GmodiffError

WEIGHTS_DIR = Path(__file__).parent / "weights"
PIPELINE_CONFIG = "gmodiff_pipeline.json"


def bundled_weights() -> Path | None:
    """The folder of a trained pipeline shipped inside the package, if there is one."""
    found = sorted(WEIGHTS_DIR.glob(f"**/{PIPELINE_CONFIG}")) if WEIGHTS_DIR.is_dir() else []
    return found[0].parent if found else None


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


def run_demo(out: Path, seed: int = 0, source: str = "auto", method: str | None = None) -> dict:
    """Run the demo end to end and return the metrics; prints what it does."""
    from gmodiff.data.simulate import SimulationConfig, simulate
    from gmodiff.io.hdr import write_hdr
    from gmodiff.io.preview import auto_exposure, write_preview
    from gmodiff.io.scene import save_scene
    from gmodiff.metrics import evaluate_pair
    from gmodiff.reconstruct import reconstruct_scene

    start = time.perf_counter()
    options: dict = {}
    weights = bundled_weights()
    if method is None:
        if weights is not None:
            method, options = "gmodiff", {"weights": weights}
        else:
            method = "classical"
            print("No trained GMODiff model is bundled yet, so this demo uses the classical "
                  "baseline (reference-guided deghosting merge) instead of the diffusion model.")

    description, radiance = demo_radiance(source, seed)
    config = SimulationConfig(ev_spacing_stops=2.0, motion=True, response="random")
    simulation = simulate(radiance, config, seed=seed, name="demo_scene")
    scene = simulation.scene
    print(f"Simulated {description}: {scene.width}x{scene.height}, exposures "
          f"{', '.join(f'{t:g}' for t in scene.exposure_times)} (relative), camera response "
          f"{simulation.response.name}, camera shake and moving objects on the non-reference "
          "frames.")

    out.mkdir(parents=True, exist_ok=True)
    save_scene(scene, out / "scene", overwrite=True)
    result = reconstruct_scene(scene, method, **options)
    write_hdr(out / "hdr.hdr", result.hdr)
    write_hdr(out / "hdr.exr", result.hdr)
    exposure = auto_exposure(scene.ground_truth)
    write_preview(out / "preview.png", result.hdr, exposure)
    write_preview(out / "ground_truth.png", scene.ground_truth, exposure)
    metrics = evaluate_pair(result.hdr, scene.ground_truth)
    elapsed = time.perf_counter() - start

    print(f"Reconstructed with '{result.method}' in {result.timings['total']:.2f} s.")
    print("Metrics against the simulated ground truth:")
    for name, value in metrics.items():
        print(f"  {name:10s} {value:8.4f}" if "ssim" in name else f"  {name:10s} {value:8.2f} dB")
    print(f"Wrote {out / 'hdr.hdr'}, {out / 'hdr.exr'}, {out / 'preview.png'} "
          f"(ground truth: {out / 'ground_truth.png'}; input bracket: {out / 'scene'}).")
    print(f"Demo took {elapsed:.1f} s.")
    return metrics


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: ``python -m gmodiff.demo [--out DIR] [--seed N]``."""
    parser = argparse.ArgumentParser(prog="python -m gmodiff.demo", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="scene seed")
    parser.add_argument("--source", choices=("auto", "panorama", "procedural"), default="auto",
                        help="radiance for the simulated scene")
    parser.add_argument("--method", default=None,
                        help="force a reconstruction method (default: the bundled model, else "
                        "classical)")
    args = parser.parse_args(argv)
    try:
        run_demo(args.out, args.seed, args.source, args.method)
    except GmodiffError as err:
        print(f"error: {err}", file=sys.stderr)
        return err.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
