"""Peak memory and wall time of ``gmodiff reconstruct`` on camera-sized brackets.

For each size (megapixels, 4:3) a synthetic three-JPEG bracket (-2/0/+2 EV, a textured scene with
a few sharp edges, small handheld shifts) is written once, then each method runs as its own child
process, exactly as a photographer would run it (ECC alignment, Ultra HDR JPEG out). Peak resident
memory is the child's ``ru_maxrss`` (from ``os.wait4``), time is the child's wall time. Writes
``benchmarks/results/memory.md`` (and ``memory.json`` with the raw rows, merged across runs).

    nice -n 15 python benchmarks/memory.py --sizes 1,3,12 --methods default,no-refine,classical
    nice -n 15 python benchmarks/memory.py --sizes 24 --methods default --threads 2

Each row records the commit that last changed the bundled weights (``model``), since rows are merged
across runs and a bundle change moves the figures. Notes written under the table (from the first
``## `` heading on) are kept when the table is rewritten.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "memory.md"
RAW = RESULTS.with_suffix(".json")
METHODS = {
    "default": [],  # whatever the bundle does by default (v5: DaReg + refiner; since #28 DaReg alone)
    "no-refine": ["--no-refine"],  # the DaReg stage alone
    "refine": ["--refine"],
    "classical": ["--method", "classical"],
}
WEIGHTS = Path(__file__).resolve().parents[1] / "src" / "gmodiff" / "weights" / "default"
LIMIT_GB = 6.0


def write_bracket(folder: Path, megapixels: float, seed: int = 0) -> list[Path]:
    """Three 8-bit JPEGs at -2/0/+2 EV of one synthetic radiance map; returns their paths."""
    import cv2

    width = int(round((megapixels * 1e6 * 4 / 3) ** 0.5 / 8)) * 8
    height = width * 3 // 4
    rng = np.random.default_rng(seed)
    low = rng.uniform(0.01, 1.0, size=(height // 64 + 2, width // 64 + 2, 3)).astype(np.float32)
    radiance = cv2.resize(low, (width, height), interpolation=cv2.INTER_CUBIC)
    radiance = np.clip(radiance, 0.005, None) ** 2 * 4  # a wide range: shadows to clipped sky
    yy, xx = np.mgrid[0:height, 0:width]
    radiance[((xx // 97 + yy // 89) % 7 == 0)] *= 6.0  # sharp-edged bright patches
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, stops in enumerate((-2.0, 0.0, 2.0)):
        shift = np.float32([[1, 0, rng.uniform(-3, 3)], [0, 1, rng.uniform(-3, 3)]])
        moved = cv2.warpAffine(radiance, shift, (width, height), borderMode=cv2.BORDER_REFLECT)
        ldr = np.clip(moved * 2.0 ** stops * 0.25, 0, 1) ** (1 / 2.2)
        path = folder / f"frame_{index}.jpg"
        cv2.imwrite(str(path), np.rint(ldr[:, :, ::-1] * 255).astype(np.uint8),
                    [cv2.IMWRITE_JPEG_QUALITY, 92])
        paths.append(path)
    return paths


def run_child(args: list[str], env: dict) -> tuple[int, float, float, str]:
    """Run a command; (exit code, wall seconds, peak RSS in GB, last output line)."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [line for line in output.strip().splitlines() if line.strip()]
    return proc.returncode, wall, usage.ru_maxrss / 1024 ** 2, lines[-1] if lines else ""


def weights_commit() -> str:
    """Short hash of the last commit that changed the bundled weights, not their model card
    ("unknown" outside git)."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%h", "--", ".", ":(exclude)MODEL_CARD.md"],
                             capture_output=True,
                             text=True, check=True, cwd=WEIGHTS)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3,6,12,24", help="megapixels, comma-separated")
    parser.add_argument("--methods", default="default,refine,classical")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--extra", default="", help="more reconstruct flags, e.g. '--max-memory 4G'")
    parser.add_argument("--plan-only", action="store_true", help="print the memory plan per size")
    args = parser.parse_args()
    if args.plan_only:
        print("\n".join(plan_table([float(s) for s in args.sizes.split(",")])))
        return
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "HF_HUB_OFFLINE": "1"}
    rows = json.loads(RAW.read_text()) if RAW.exists() else []
    model = weights_commit()
    with tempfile.TemporaryDirectory(prefix="gmodiff-memory-") as tmp:
        for size in [float(s) for s in args.sizes.split(",")]:
            frames = write_bracket(Path(tmp) / f"{size:g}mp", size)
            for method in args.methods.split(","):
                out = Path(tmp) / f"{size:g}mp-{method}.jpg"
                command = [sys.executable, "-m", "gmodiff", "reconstruct", *map(str, frames),
                           "--ev", "-2,0,2", "-o", str(out), "--quiet", *METHODS[method], *args.extra.split()]
                code, wall, peak, last = run_child(command, env)
                row = {"megapixels": size, "method": method, "model": model, "exit": code,
                       "seconds": round(wall, 1), "peak_gb": round(peak, 2),
                       "extra": args.extra, "threads": args.threads, "summary": last[-300:],
                       "date": time.strftime("%Y-%m-%d")}
                print(json.dumps(row), flush=True)
                rows = [r for r in rows if (r["megapixels"], r["method"], r.get("extra", "")) !=
                        (size, method, args.extra)] + [row]
                RAW.write_text(json.dumps(rows, indent=1) + "\n")
                write_markdown(rows)


def plan_table(sizes: list[float], budget: int | None = None) -> list[str]:
    """Markdown rows: the memory plan's tiles and estimated peak per size (no compute)."""
    from gmodiff.memory import GIB, default_budget, plan_memory

    budget = budget or default_budget()
    lines = [f"| MP | method | DaReg tile | refiner VAE tile | UNet tile | estimated peak (GB) |",
             "|---:|---|---|---|---|---:|"]
    for size in sizes:
        width = int(round((size * 1e6 * 4 / 3) ** 0.5 / 8)) * 8
        height = width * 3 // 4
        for refine in (False, True):
            plan = plan_memory(height, width, budget, refine=refine)
            lines.append(f"| {size:g} | {'refine' if refine else 'default'} | "
                         f"{plan.dareg_tile or 'whole'} | "
                         f"{plan.vae_tile * 8 if plan.vae_tile else 'whole'} | "
                         f"{plan.latent_tile * 8} | {plan.estimate / GIB:.2f} |")
    return lines


def write_markdown(rows: list[dict]) -> None:
    """The results table, sizes ascending."""
    lines = [
        "# Peak memory and time vs image size (`benchmarks/memory.py`)",
        "",
        f"Synthetic 3-JPEG brackets (4:3, -2/0/+2 EV, small shifts), `gmodiff reconstruct a.jpg "
        f"b.jpg c.jpg --ev -2,0,2 -o out.jpg` with default alignment, each run in its own child process on "
        f"{platform.machine()} CPU ({os.cpu_count()} cores shared with other jobs, "
        "`OMP_NUM_THREADS` as listed, under `nice`). Peak RSS is the child's `ru_maxrss`; time is "
        "its wall time, start-up included. Memory plan: the default budget (60% of free memory) "
        "unless `flags` says otherwise. Target: 12 MP within "
        f"{LIMIT_GB:g} GB for `default` and `refine`.",
        "",
        "Methods: `default` is the bundle's default output (DaReg alone, and DaReg + refiner in v5 "
        "before issue 28's real-camera benchmark), `no-refine` the DaReg stage alone, `refine` forces the refiner, `classical` the "
        "deghost merge. `model`: the commit that last changed the bundled weights.",
        "",
        "| MP | method | model | flags | exit | peak RSS (GB) | time (s) | threads | date | tool's own line |",
        "|---:|---|---|---|---:|---:|---:|---:|---|---|",
    ]
    for r in sorted(rows, key=lambda r: (r["megapixels"], r["method"], r.get("extra", ""))):
        lines.append(f"| {r['megapixels']:g} | {r['method']} | {r.get('model', '?')} | {r.get('extra') or '-'} | "
                     f"{r['exit']} | {r['peak_gb']:.2f} | {r['seconds']:.0f} | {r['threads']} | "
                     f"{r.get('date', '?')} | {r['summary'].replace('|', '/')} |")
    old = RESULTS.read_text() if RESULTS.exists() else ""
    notes = old[old.index("\n## ") + 1:] if "\n## " in old else ""
    RESULTS.write_text("\n".join(lines) + "\n" + ("\n" + notes if notes else ""))


if __name__ == "__main__":
    main()
