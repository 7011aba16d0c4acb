"""Progress on long runs names its phases and says how long the pass has left; a pass of one or
two tiles (an image that barely needs tiling) is not counted."""

from __future__ import annotations

import io
import re

from gmodiff.progress import Progress


def test_named_phases_and_time_left():
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=False)
    progress.stage("refiner")
    progress.phase("UNet")
    for done in range(1, 11):
        progress.tile(done, 10)
    progress.phase("decoding")
    progress.tile(1, 4)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("refiner") and lines[1].endswith("refiner: UNet")
    assert re.search(r"refiner: UNet: tile 1/10, about \d+ s left$", lines[2])
    assert any(line.endswith("refiner: UNet: tile 10/10") for line in lines)
    assert lines[-2].endswith("refiner: decoding")
    assert "refiner: decoding: tile 1/4, about" in lines[-1]


def test_two_tiles_are_not_counted():
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=False)
    progress.stage("DaReg")
    progress.tile(1, 2)
    progress.tile(2, 2)
    assert "tile" not in stream.getvalue()


def test_the_refiner_names_its_tiled_passes():
    """The tiled refiner calls the phase hook before each pass (the pipeline wires it to the
    progress reporter)."""
    import inspect

    from gmodiff.models.refiner import GMRefiner

    source = inspect.getsource(GMRefiner)
    for name in ("encoding the gain map", "encoding the condition", "UNet", "decoding"):
        assert f'self._phase("{name}")' in source
