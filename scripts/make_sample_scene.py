"""Write the bundled demo scene ``src/gmodiff/samples/sunset/`` (run from the repository root).

A 512×384 bracket simulated by gmodiff's own simulator from a view of the blender-data panorama
``sunset.exr``, which the default model never trained on (panoramas 6 and 7 are held out).
Re-running it rewrites the same files: everything is seeded.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from gmodiff.data.simulate import SimulationConfig, simulate
from gmodiff.data.sources import blender_panoramas, perspective_views, read_radiance_file
from gmodiff.io.scene import save_scene

HELD_OUT = "sunset.exr"


def main() -> None:
    """Simulate the sample scene and save it (16-bit TIFFs, exposure.txt, HDRImg.hdr)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("src/gmodiff/samples/sunset"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    found = {p.name: p for p in blender_panoramas()}
    if HELD_OUT not in found:
        raise SystemExit("blender-data is not installed (apt-get install blender-data)")
    view = perspective_views(read_radiance_file(found[HELD_OUT]), 1, fov_deg=80.0, size=(384, 512),
                             rng=np.random.default_rng(args.seed), max_pitch_deg=8.0)[0]
    config = SimulationConfig(ev_spacing_stops=2.0, motion=True, response="random")
    simulation = simulate(view, config, seed=args.seed, name="sunset")
    save_scene(simulation.scene, args.out, overwrite=True)
    print(f"wrote {args.out} (response {simulation.response.name}, exposures "
          f"{simulation.scene.exposure_times})")


if __name__ == "__main__":
    main()
