"""``gmodiff data ...``: preparing training data."""

from __future__ import annotations

from pathlib import Path

import typer

from gmodiff.cli import app

data_app = typer.Typer(help="Prepare training data.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("crops")
def crops_command(
    source: Path = typer.Argument(..., help="A scene folder or a folder of scenes (with HDRImg.hdr)."),
    destination: Path = typer.Argument(..., help="Where the crop folders go."),
    size: int = typer.Option(256, "--size", help="Crop side in pixels."),
    stride: int = typer.Option(128, "--stride", help="Step between crops in pixels."),
) -> None:
    """Cut scenes into size×size crops every stride pixels (each crop a scene folder)."""
    from gmodiff.data.crops import make_crops

    count = make_crops(source, destination, size, stride)
    typer.echo(f"wrote {count} crops to {destination}")
