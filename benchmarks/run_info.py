"""The "made by" sentence at the top of a benchmark report: command, time, machine, load."""

from __future__ import annotations

import os
import platform


def made_by(command: str, seconds: float, timed: str = "times", extra: str = "") -> str:
    """``Made by <command> in N s on <arch> CPU (<python>; K cores, load average … at the end, so
    <timed> are only indicative<extra>).`` ``command`` is markdown (backticks included); the load
    is read now, so call it when the run ends."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"Made by {command} in {seconds:.0f} s on {platform.machine()} CPU "
            f"({platform.python_implementation()} {platform.python_version()}; {os.cpu_count()} cores, "
            f"load average {load} at the end, so {timed} are only indicative{extra}).")
