"""``gmodiff simulate``: HDR radiance → simulated Kalantari scene folders (spec §6)."""

from __future__ import annotations

from pathlib import Path

import typer

from gmodiff.cli import app
from gmodiff.errors import ConfigError


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``"WxH"`` → (height, width); None stays None."""
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        width, height = (int(p) for p in parts)
    except ValueError:
        raise ConfigError(f"bad --size {text!r}", fix="write WIDTHxHEIGHT, e.g. 384x256") from None
    if width < 8 or height < 8:
        raise ConfigError(f"--size {text} is too small", fix="use at least 8x8")
    return height, width


def parse_ev(text: str) -> float | tuple[float, float]:
    """``"3"`` → 3.0; ``"2:3"`` → a (2, 3) range drawn per scene."""
    try:
        values = [float(v) for v in text.split(":")]
    except ValueError:
        values = []
    if len(values) == 1:
        return values[0]
    if len(values) == 2 and values[0] <= values[1]:
        return values[0], values[1]
    raise ConfigError(f"bad --ev {text!r}", fix="give stops between frames, e.g. 2, 3 or 2:3")


@app.command("simulate")
def simulate_command(
    src: str = typer.Argument(..., help="A .hdr/.exr file, a folder of them, or 'procedural'."),
    out_dir: Path = typer.Argument(..., help="Folder to write one scene folder per bracket into."),
    ev: str = typer.Option("2", "--ev", help="Stops between frames: 2, 3, or a range like 2:3."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed writes identical files."),
    views: int = typer.Option(0, "--views", min=0,
                              help="Treat SRC as equirectangular panoramas and cut N views each."),
    count: int = typer.Option(1, "--count", min=1, help="Number of procedural scenes."),
    size: str | None = typer.Option(None, "--size", help="Output size WxH (default: source "
                                    "size; 384x256 procedural, 256x256 views)."),
    fov: float = typer.Option(70.0, "--fov", help="Horizontal field of view of views (degrees)."),
    motion: bool = typer.Option(True, "--motion/--no-motion",
                                help="Camera shake and moving objects on non-reference frames."),
    noise: bool = typer.Option(True, "--noise/--no-noise", help="Poisson-Gaussian sensor noise."),
    response: str = typer.Option("random", "--response",
                                 help="Camera response: random, srgb, gammaX.Y, sigmoidlog, log, "
                                 "filmic or perturbed."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace existing scene folders."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Simulate exposure brackets with ground truth from HDR radiance."""
    from gmodiff.camera.response import response_by_name
    from gmodiff.data.simulate import SimulationConfig, simulate_to_folder

    response_by_name(response)  # fail on a bad name before any work
    config = SimulationConfig(ev_spacing_stops=parse_ev(ev), motion=motion, noise=noise,
                              response=response, size=parse_size(size))
    written = simulate_to_folder(src, out_dir, config, seed=seed, views=views, count=count,
                                 fov_deg=fov, overwrite=overwrite, progress=progress)
    typer.echo(f"wrote {len(written)} scene(s) to {out_dir}")
