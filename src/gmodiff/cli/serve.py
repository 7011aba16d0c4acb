"""``gmodiff serve``: the local web page (needs the ``ui`` extra: ``pip install .[ui]``)."""

from __future__ import annotations

from pathlib import Path

import typer

from gmodiff.cli import app
from gmodiff.errors import ConfigError


@app.command("serve")
def serve_command(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on. The page has no "
                             "login: keep the default (this computer only) unless you trust "
                             "your network."),
    port: int = typer.Option(7860, "--port", min=1, max=65535, help="TCP port."),
    max_upload_mb: float = typer.Option(200.0, "--max-upload-mb", min=1, max=1e6,
                                        help="Largest upload (all frames together), in MB."),
    max_megapixels: float = typer.Option(40.0, "--max-megapixels", min=0.01, max=400,
                                         help="Largest frame, in megapixels."),
    max_files: int = typer.Option(9, "--max-files", min=2, max=100,
                                  help="Most frames per bracket."),
    max_queue: int = typer.Option(4, "--max-queue", min=1, max=1000, help="Most jobs waiting or "
                                  "running at once; one more upload is refused until one ends."),
    max_disk_mb: float = typer.Option(10240.0, "--max-disk-mb", min=10, max=1e9,
                                      help="Disk budget of the work folder (uploads and kept "
                                      "results), in MB; the oldest results make room first."),
    keep_minutes: float = typer.Option(60.0, "--keep-minutes", min=1, max=1e6,
                                       help="Results older than this are deleted."),
    preload: bool = typer.Option(True, "--preload/--no-preload", help="Load the default model "
                                 "at start-up, not on the first job."),
    workdir: Path | None = typer.Option(None, "--workdir", help="Where the temporary work "
                                        "folder goes: uploads and results (default: the system "
                                        "temp folder)."),
) -> None:
    """Open a local web page: drop brackets, compare methods, slide the exposure, download."""
    try:
        from gmodiff.serve.app import run_server
    except ModuleNotFoundError as exc:
        raise ConfigError(f"gmodiff serve needs the 'ui' extra ({exc.name} is not installed)",
                          fix="pip install 'gmodiff[ui]' (or make install)") from None
    from gmodiff.serve.config import ServeConfig

    run_server(ServeConfig(host=host, port=port, max_upload_mb=max_upload_mb,
                           max_megapixels=max_megapixels, max_files=max_files,
                           max_pending=max_queue, max_disk_mb=max_disk_mb,
                           result_ttl_s=keep_minutes * 60, preload=preload,
                           workdir=workdir))
