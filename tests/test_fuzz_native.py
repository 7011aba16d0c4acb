"""Fuzz the readers that hand bytes to native decoders (OpenEXR, libtiff via tifffile, libpng via
OpenCV, libjpeg via Pillow), in a child process so a segfault or abort is caught, not fatal.

Mutated valid files go to ``read_hdr`` / ``read_ldr`` in a child interpreter under an address-
space limit; each must decode or raise a ``GmodiffError``, within 2 s, keeping the child under
512 MB resident (a corrupt PNG chunk length once made OpenCV allocate 2 GB). The child reports one
line per file before moving on, so a crash names the file that caused it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fuzz_support import CHILD_PEAK_RSS, mutate
from gmodiff.io.hdr import write_hdr
from gmodiff.io.ldr import write_ldr

MUTANTS_PER_FORMAT = 300
ADDRESS_SPACE_LIMIT = 4 << 30  # the child may map at most 4 GiB: far above any sane decode
MAX_RSS_MB = 512  # the child's peak resident memory over all files (it idles near 100 MB)

_CHILD = r"""
import json, resource, sys, time
""" + CHILD_PEAK_RSS + r"""resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))
from gmodiff.errors import GmodiffError
from gmodiff.io.hdr import read_hdr
from gmodiff.io.ldr import read_ldr
for path in sys.argv[1:]:
    print(json.dumps({{"path": path, "start": True}}), flush=True)
    start = time.perf_counter()
    try:
        pixels = read_hdr(path) if path.endswith(".exr") else read_ldr(path).pixels
        good = pixels.ndim == 3 and pixels.shape[2] == 3
        outcome = "ok" if good else f"bad shape {{pixels.shape}}"
    except GmodiffError as err:
        outcome = "gmodiff:" + type(err).__name__ if "\n" not in str(err) else "multi-line message"
    except BaseException as err:
        outcome = f"other:{{type(err).__name__}}:{{str(err)[:200]}}"
    print(json.dumps({{"path": path, "outcome": outcome, "seconds": time.perf_counter() - start,
                      "max_rss_mb": peak_rss_mb()}}),
          flush=True)
"""


def _seed_files(folder: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    rgb = rng.random((20, 28, 3)).astype(np.float32)
    rgb[:6] = 0.5
    seeds = {"exr": folder / "seed.exr", "tif": folder / "seed.tif", "png": folder / "seed.png",
             "jpg": folder / "seed.jpg"}
    write_hdr(seeds["exr"], rgb * 4)
    write_ldr(seeds["tif"], rgb, bit_depth=16)
    write_ldr(seeds["png"], rgb, bit_depth=16)
    write_ldr(seeds["jpg"], rgb)
    return seeds


def _mutants(seed: bytes, count: int, rng: np.random.Generator) -> list[bytes]:
    out = []
    for k in range(count):
        # Half the mutants hit the header (first 256 bytes), where sizes and offsets live.
        span = min(len(seed), 256) if k % 2 == 0 else len(seed)
        edits = [(int(rng.integers(0, 4 if k % 5 == 0 else 3)), int(rng.integers(0, span)),
                  int(rng.choice([0, 1, 0x7F, 0x80, 0xFF, int(rng.integers(0, 256))])))
                 for _ in range(int(rng.integers(1, 9)))]
        out.append(mutate(seed, edits))
    return out


@pytest.mark.parametrize("fmt", ["exr", "tif", "png", "jpg"])
def test_mutated_files_never_crash_the_interpreter(tmp_path, fmt):
    seed = _seed_files(tmp_path)[fmt]
    rng = np.random.default_rng(["exr", "tif", "png", "jpg"].index(fmt))
    paths = []
    for k, data in enumerate(_mutants(seed.read_bytes(), MUTANTS_PER_FORMAT, rng)):
        path = tmp_path / f"m{k:03d}.{fmt}"
        path.write_bytes(data)
        paths.append(str(path))
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENCV_FOR_THREADS_NUM="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    child = subprocess.run([sys.executable, "-c", _CHILD.format(limit=ADDRESS_SPACE_LIMIT),
                            *paths], env=env, capture_output=True, text=True, timeout=900)
    records = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    finished = [r for r in records if "outcome" in r]
    started = [r["path"] for r in records if r.get("start")]
    crashed_on = started[-1] if len(started) > len(finished) else None
    assert child.returncode == 0, (f"child died with {child.returncode} on {crashed_on}: "
                                   f"{child.stderr[-1500:]}")
    assert len(finished) == len(paths)
    foreign = [(Path(r["path"]).name, r["outcome"]) for r in finished
               if r["outcome"] != "ok" and not r["outcome"].startswith("gmodiff:")]
    assert not foreign, f"non-gmodiff outcomes: {foreign[:5]}"
    # Peak memory is cumulative: the first file that pushes it over the limit is the culprit.
    greedy = next((Path(r["path"]).name for r in finished if r["max_rss_mb"] > MAX_RSS_MB), None)
    assert greedy is None, f"{greedy} pushed the reader past {MAX_RSS_MB} MB resident"
    # The mutants exercise both paths: some still decode, some are refused.
    outcomes = {r["outcome"] for r in finished}
    assert any(o.startswith("gmodiff:") for o in outcomes)
