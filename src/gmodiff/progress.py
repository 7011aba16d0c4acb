"""Progress of one long reconstruction: stages and tiles, on stderr.

On a terminal a tqdm bar per tiled pass (with its ETA); otherwise (a log file, a pipe) one plain
line per stage and named phase (the refiner's encoding, UNet and decoding passes) and about every
10% of its tiles with the time left in that pass, so logs stay short. A pass of one or two tiles
is not counted (an image that barely needs tiling reads as untiled). ``quiet`` prints nothing. Library code calls
the reporter it is given and never prints itself; :data:`SILENT` is the default.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    """Reports stages (``stage``) and tile counts (``tile``) of one run."""

    def __init__(self, quiet: bool = False, stream: TextIO | None = None, tty: bool | None = None):
        self.quiet = quiet
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self._bar = None
        self._stage = ""
        self._phase = ""
        self._last_step = -1
        self._start = time.perf_counter()
        self._pass_start = self._start

    def _write(self, text: str) -> None:
        if not self.quiet:
            print(text, file=self.stream, flush=True)

    def stage(self, name: str) -> None:
        """A new stage starts (closes the previous stage's bar)."""
        self.close()
        self._stage, self._phase = name, ""
        self._last_step = -1
        self._pass_start = time.perf_counter()
        if not self.tty:
            self._write(f"[{time.perf_counter() - self._start:6.1f} s] {name}")
        elif not self.quiet:
            self._write(name)

    def phase(self, name: str) -> None:
        """A named pass within the current stage starts (e.g. the refiner's ``UNet``)."""
        self.close()
        self._phase = name
        self._last_step = -1
        self._pass_start = time.perf_counter()
        if not self.tty:
            self._write(f"[{time.perf_counter() - self._start:6.1f} s]   {self._label}")

    @property
    def _label(self) -> str:
        return f"{self._stage}: {self._phase}" if self._phase else self._stage

    def tile(self, done: int, total: int) -> None:
        """``done`` of ``total`` tiles of the current stage (or phase) are finished."""
        if self.quiet or total <= 2:
            return
        if self.tty:
            if self._bar is not None and (total != self._bar.total or done < self._bar.n):
                self.close()  # a new pass over tiles (e.g. the refiner's VAE, then its UNet)
            if self._bar is None:
                from tqdm import tqdm

                self._bar = tqdm(total=total, desc=f"  {self._label}", unit="tile",
                                 file=self.stream, leave=False)
            self._bar.update(done - self._bar.n)
            return
        now = time.perf_counter()
        if done == 1:
            self._last_step = -1
            if not self._phase:  # a new unnamed pass: time it from here
                self._pass_start = now
        step = done * 10 // total
        if step != self._last_step or done == total:
            self._last_step = step
            left = (now - self._pass_start) / done * (total - done)
            eta = f", about {left:.0f} s left" if done < total else ""
            self._write(f"[{now - self._start:6.1f} s]   {self._label}: tile {done}/{total}{eta}")

    def close(self) -> None:
        """Close any open bar."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class _Silent(Progress):
    def __init__(self) -> None:
        super().__init__(quiet=True, tty=False)


SILENT: Progress = _Silent()
"""The reporter used when none is given."""


def process_seconds() -> float | None:
    """Wall seconds since this process started (imports included), or None off Linux."""
    import os

    try:
        fields = open("/proc/self/stat").read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start time after boot
        uptime = float(open("/proc/uptime").read().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(uptime - started, 0.0)


_command_start: float | None = None
_first_command = True


def mark_command_start() -> None:
    """Note that a command starts now; the first one in a process counts from process start."""
    global _command_start, _first_command
    now = time.perf_counter()
    age = process_seconds() if _first_command else None
    _command_start = now - (age or 0.0)
    _first_command = False


def command_seconds() -> float | None:
    """Wall seconds since :func:`mark_command_start` (None if it was not called)."""
    return None if _command_start is None else time.perf_counter() - _command_start


def describe_timings(wall: float, timings: dict[str, float]) -> str:
    """``41.2 s: start-up 6.1, read 1.3, load 0.4, dareg 28.0, write 4.1``.

    Every stage that ran is named, however fast (a fast machine must not change which stages
    the line lists); a stage booked at exactly 0 did not run (the refiner of ``--no-refine``).
    """
    parts = [f"{name} {_stage_seconds(seconds)}" for name, seconds in timings.items()
             if name != "total" and seconds > 0]
    return f"{wall:.2f} s" + (f": {', '.join(parts)}" if parts else "")


def _stage_seconds(seconds: float) -> str:
    """One decimal for stages of a tenth of a second and more; two below, so none reads 0.0."""
    return f"{seconds:.1f}" if seconds >= 0.05 else f"{max(seconds, 0.01):.2f}"
