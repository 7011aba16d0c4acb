"""One table of ``gmodiff reconstruct`` speed: size × method × path, as a user runs it.

For each size (megapixels, 4:3) the synthetic three-JPEG bracket of ``memory.py`` is written
once; every row is its own child process (``gmodiff reconstruct a.jpg b.jpg c.jpg --ev -2,0,2``,
ECC alignment, EXR out), so its wall time includes start-up and its peak memory is its own.
Paths:

- ``optimised``: the CLI's defaults (DaReg compiled by OpenVINO where the CPU has no AMX, LoRA
  fused, channels_last, OpenMP threads that sleep, large tensors on transparent huge pages, and
  bf16 autocast where the CPU has AMX), with DaReg's exported graph already in the cache;
- ``optimised, PyTorch DaReg``: the same with ``GMODIFF_CPU_RUNTIME=torch`` (DaReg in PyTorch
  instead of compiled by OpenVINO, ``gmodiff.pipeline.openvino_dareg``);
- ``optimised, first run``: the default with an empty graph cache, so DaReg's graph is exported
  (once per installed model);
- ``optimised fp32``: the same with ``GMODIFF_CPU_BF16=0``;
- ``optimised, 4-kB pages``: the same with ``THP_MEM_ALLOC_ENABLE=0`` (the page-fault lever);
- ``reference``: the plain PyTorch model as before issue 25 (``--no-fuse-lora``,
  ``OMP_WAIT_POLICY=ACTIVE`` and 4-kB pages, torch's defaults), for the ratio;
- ``steps50``: ``--steps 50`` (a DDIM chain of the refiner), for the one-step ratio against
  ``refine``.

Every size also runs deghost (the classical merge) in the same session, and each row's time is
given as a multiple of it. Writes ``benchmarks/results/speed.md`` (+ ``.json``).

    nice -n 10 python benchmarks/speed_cli.py --sizes 1,12 --rows default,refine,default-4k
    python benchmarks/speed_cli.py --sizes 0.196608 --rows refine,steps50   # 512×384
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))  # also when loaded by file path
from memory import run_child, write_bracket  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "speed.md"
RAW = RESULTS.with_suffix(".json")
FRESH = "<fresh folder>"
"""An environment value replaced by a new empty folder for the row (a cold export cache)."""
ROWS = {  # name: (method, path, flags, extra environment)
    "deghost": ("deghost", "classical", ["--method", "classical"], {}),
    "default": ("default (DaReg stage)", "optimised", [], {}),
    "default-torch": ("default (DaReg stage)", "optimised, PyTorch DaReg", [],
                      {"GMODIFF_CPU_RUNTIME": "torch"}),
    "default-cold": ("default (DaReg stage)", "optimised, first run (graph exported)", [],
                     {"GMODIFF_CACHE_DIR": FRESH}),
    "default-fp32": ("default (DaReg stage)", "optimised fp32", [], {"GMODIFF_CPU_BF16": "0"}),
    "default-4k": ("default (DaReg stage)", "optimised, 4-kB pages", [],
                   {"THP_MEM_ALLOC_ENABLE": "0"}),
    "refine": ("--refine (DaReg + refiner)", "optimised", ["--refine"], {}),
    "refine-torch": ("--refine (DaReg + refiner)", "optimised, PyTorch DaReg", ["--refine"],
                     {"GMODIFF_CPU_RUNTIME": "torch"}),
    "refine-fp32": ("--refine (DaReg + refiner)", "optimised fp32", ["--refine"],
                    {"GMODIFF_CPU_BF16": "0"}),
    "refine-4k": ("--refine (DaReg + refiner)", "optimised, 4-kB pages", ["--refine"],
                  {"THP_MEM_ALLOC_ENABLE": "0"}),
    "steps50": ("--steps 50 (DaReg + 50-step refiner)", "optimised", ["--steps", "50"], {}),
    "reference": ("default (DaReg stage)", "reference", ["--no-fuse-lora"],
                  {"OMP_WAIT_POLICY": "ACTIVE", "THP_MEM_ALLOC_ENABLE": "0"}),
    "reference-refine": ("--refine (DaReg + refiner)", "reference", ["--refine", "--no-fuse-lora"],
                         {"OMP_WAIT_POLICY": "ACTIVE", "THP_MEM_ALLOC_ENABLE": "0"}),
}
"""The bundled model's default is its DaReg stage (``--no-refine`` is the same run); ``refine``
rows add its one-step refiner."""


def cpu_description() -> str:
    """The CPU's model name and the vector/matrix extensions the speed paths depend on."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in info.splitlines()
                  if line.startswith("model name")), platform.machine())
    flags = set(next((line.split(":", 1)[1].split() for line in info.splitlines()
                      if line.startswith("flags")), []))
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")
    return f"{model} ({', '.join(f for f in wanted if f in flags) or 'no AVX2'})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,3")
    parser.add_argument("--rows", default="default,refine,reference")
    parser.add_argument("--append", action="store_true",
                        help="keep the rows of other sizes from the last run (speed.json)")
    args = parser.parse_args()
    src = Path(__file__).resolve().parents[1] / "src"
    base_env = {**os.environ, "HF_HUB_OFFLINE": "1",
                "PYTHONPATH": os.pathsep.join([str(src), os.environ.get("PYTHONPATH", "")])}
    sizes = {float(size) for size in args.sizes.split(",")}
    results = ([r for r in json.loads(RAW.read_text()) if r["mp"] not in sizes]
               if args.append and RAW.is_file() else [])
    for size in args.sizes.split(","):
        with tempfile.TemporaryDirectory() as tmp:
            paths = [str(p) for p in write_bracket(Path(tmp) / "in", float(size))]
            deghost = None
            for name in ["deghost", *[r for r in args.rows.split(",") if r != "deghost"]]:
                method, path, flags, extra = ROWS[name]
                env = {**base_env, **{key: (tempfile.mkdtemp(dir=tmp) if value == FRESH else value)
                                       for key, value in extra.items()}}
                command = [sys.executable, "-m", "gmodiff", "reconstruct", *paths, "--ev", "-2,0,2",
                           "-q", "-o", str(Path(tmp) / f"{name}.exr"), *flags]
                load = os.getloadavg()[0]
                code, wall, peak, last = run_child(command, env)
                deghost = wall if name == "deghost" else deghost
                width, height = Image.open(paths[0]).size
                row = {"mp": float(size), "size": f"{width}×{height}", "method": method,
                       "path": path, "code": code,
                       "wall_s": wall, "peak_gb": peak, "vs_deghost": wall / deghost,
                       "load": load, "line": last}
                results.append(row)
                print(json.dumps(row), flush=True)
    results.sort(key=lambda r: r["mp"])  # stable: within a size, rows keep their run order
    RAW.write_text(json.dumps(results, indent=1))
    lines = ["# `gmodiff reconstruct` speed: size × method × path", "",
             f"Machine: {cpu_description()}, {os.cpu_count()} CPU cores **shared with other agents** "
             "(the load average before each row is listed): absolute times are pessimistic and "
             "noisy, the ratios within one size are the point. Each row is one child process "
             "from start to written EXR (start-up included); peak memory is its `ru_maxrss`. "
             "Synthetic 3-JPEG brackets (`memory.write_bracket`), ECC alignment.", "",
             "| size | method | path | time (s) | peak memory (GB) | × deghost | load |",
             "|---|---|---|---|---|---|---|"]
    for r in results:
        status = "" if r["code"] == 0 else f" (exit {r['code']})"
        lines.append(f"| {r.get('size', '')} ({r['mp']:.2g} MP) | {r['method']} | {r['path']} | {r['wall_s']:.1f}{status} | "
                     f"{r['peak_gb']:.2f} | {r['vs_deghost']:.1f}× | {r['load']:.1f} |")
    lines += ["", "`optimised` is the CLI default (on a CPU without AMX DaReg compiled by "
              "OpenVINO from the graph exported to the user cache on the first run; LoRA fused into its base convolutions, "
              "channels_last, `OMP_WAIT_POLICY=PASSIVE`, torch's large tensors on transparent huge "
              "pages (`THP_MEM_ALLOC_ENABLE=1`), and bf16 autocast where the CPU has AMX); "
              "`optimised, PyTorch DaReg` the same with `GMODIFF_CPU_RUNTIME=torch`; "
              "`optimised, first run` with an empty cache (the graph is exported: once per "
              "installed model); `optimised fp32` is the same with `GMODIFF_CPU_BF16=0`; `optimised, 4-kB pages` "
              "with `THP_MEM_ALLOC_ENABLE=0` (same numbers, bit for bit); `reference` is the plain "
              "PyTorch model with torch's default spinning threads and pages (`--no-fuse-lora`, "
              "`OMP_WAIT_POLICY=ACTIVE`, `THP_MEM_ALLOC_ENABLE=0`). fp32 paths give the same HDR within 1e-4 in the gain "
              "map (`tests/test_pipeline.py`; OpenVINO's DaReg within 1e-3, "
              "`tests/test_openvino_dareg.py`), bf16 within 0.02 "
              "(`tests/test_cpu_speed_paths.py`; its quality cost on the benchmarks is in the "
              "notes below)."]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
