"""DaReg forward time and peak memory on CPU, tiny and paper presets, at 256² and 1000×1500.

Each (preset, size) runs in a fresh subprocess so the peak resident set size (``ru_maxrss``)
belongs to that run alone; "peak extra" is the peak minus the RSS after building the model.

    python benchmarks/dareg_speed.py            # writes benchmarks/results/dareg_speed.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

CASES = [("tiny", 256, 256), ("tiny", 1000, 1500), ("paper", 256, 256), ("paper", 1000, 1500)]


def _rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def measure(preset: str, height: int, width: int, repeats: int) -> dict:
    """Time ``repeats`` no-grad forwards (after one warm-up) in this process."""
    import torch

    from gmodiff.models.dareg import DaReg, DaRegConfig

    torch.manual_seed(0)
    model = DaReg(getattr(DaRegConfig, preset)()).eval()
    inputs = torch.rand(1, 3, 6, height, width)
    base = _rss_mib()
    times = []
    with torch.no_grad():
        for _ in range(repeats + 1):
            start = time.perf_counter()
            model(inputs)
            times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB → MiB on Linux
    timed = times[1:] if repeats else times
    return {"preset": preset, "height": height, "width": width, "params": model.num_parameters(),
            "seconds": sorted(timed)[len(timed) // 2], "warmup_seconds": times[0],
            "model_rss_mib": base, "peak_rss_mib": peak, "threads": torch.get_num_threads()}


def main() -> None:
    """Run every case in a subprocess and write the Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--one", nargs=3, metavar=("PRESET", "H", "W"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/dareg_speed.md"))
    args = parser.parse_args()
    if args.one:
        preset, height, width = args.one[0], int(args.one[1]), int(args.one[2])
        repeats = args.repeats if height * width <= 512 * 512 else 1
        print(json.dumps(measure(preset, height, width, repeats)))
        return
    rows = []
    for preset, height, width in CASES:
        result = subprocess.run([sys.executable, __file__, "--one", preset, str(height), str(width),
                                 "--repeats", str(args.repeats)], capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        print(row, flush=True)
        rows.append(row)
    lines = [
        f"DaReg forward on CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch threads {rows[0]['threads']}), batch 1, no grad, float32. Median of "
        f"{args.repeats} runs after a warm-up at 256², one timed run after a warm-up at 1000×1500 "
        "(padded to 1024×1504). The machine was shared with other jobs, so times are upper bounds.",
        "",
        "| preset | params | size | forward s | peak RSS MiB | peak extra over model MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['preset']} | {r['params'] / 1e6:.2f} M | {r['height']}×{r['width']} | "
                     f"{r['seconds']:.3f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['peak_rss_mib'] - r['model_rss_mib']:.0f} |")
    from gmodiff.io.atomic import atomic_path

    with atomic_path(args.out) as tmp:
        tmp.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
