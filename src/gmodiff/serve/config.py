"""Settings of the local web server: where it listens and what it accepts."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class ServeConfig:
    """Server settings; every limit is checked before any image is decoded."""

    host: str = "127.0.0.1"
    """Loopback only unless the user asks otherwise: the page has no authentication."""
    port: int = 7860
    max_upload_mb: float = 200.0
    """Largest request body (all frames of one upload together)."""
    max_megapixels: float = 40.0
    """Largest frame, width × height / 1e6, read from the file header."""
    max_files: int = 9
    max_pending: int = 4
    """Jobs queued or running at once; one more upload is refused (HTTP 429) until one ends."""
    max_disk_mb: float = 10240.0
    """Work-folder budget (uploads and kept results together): the oldest finished results are
    deleted to make room, and an upload that still would not fit is refused (HTTP 507)."""
    result_ttl_s: float = 3600.0
    """Finished jobs older than this are deleted (their files and their entry)."""
    max_kept_jobs: int = 50
    """At most this many finished jobs are kept; the oldest go first."""
    preload: bool = True
    """Load the default model when the server starts, not on the first job."""
    workdir: Path | None = None
    """Parent of the temporary work folder (None: the system temp folder). Uploads are written
    there as they arrive, never spooled elsewhere."""

    @property
    def max_upload_bytes(self) -> int:
        """``max_upload_mb`` in bytes."""
        return int(self.max_upload_mb * 1024 * 1024)

    @property
    def max_disk_bytes(self) -> int:
        """``max_disk_mb`` in bytes."""
        return int(self.max_disk_mb * 1024 * 1024)
