"""Start-up stays light: commands that need no network never import the diffusion stack.

Each check runs the CLI in a fresh interpreter and lists which heavy modules ended up in
``sys.modules`` (never a timing: what is imported is what start-up pays for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bracket_helpers import save_jpeg

SRC = Path(__file__).resolve().parents[1] / "src"
HEAVY = ("torch", "diffusers", "peft", "accelerate", "transformers",
         "scipy.optimize")  # ~0.9 s: the response fit has its own bounded least squares
_PROBE = """
import json, sys
from gmodiff.cli import main
code = main(json.loads(sys.argv[1]))
print(json.dumps({"code": code, "heavy": [m for m in json.loads(sys.argv[2]) if m in sys.modules]}))
"""


def _imported(argv: list[str], cwd: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(argv), json.dumps(HEAVY)],
                         capture_output=True, text=True, env=env, cwd=cwd, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_help_imports_neither_torch_nor_diffusers(tmp_path):
    result = _imported(["--help"], tmp_path)
    assert result["code"] == 0
    assert result["heavy"] == []


def test_classical_reconstruct_imports_no_torch(tmp_path):
    rng = np.random.default_rng(0)
    radiance = rng.uniform(0.05, 0.8, size=(6, 8, 3)).repeat(8, 0).repeat(8, 1)
    paths = []
    for index, stops in enumerate((-2, 0, 2)):
        ldr = np.clip(radiance * 2.0 ** stops, 0, 1) ** (1 / 2.2)
        paths.append(str(save_jpeg(tmp_path / f"f{index}.jpg", np.rint(ldr * 255).astype(np.uint8))))
    out = tmp_path / "out.exr"
    result = _imported(["reconstruct", *paths, "--ev", "-2,0,2", "--method", "classical",
                        "--align", "none", "-q", "-o", str(out)], tmp_path)
    assert result["code"] == 0 and out.is_file()
    assert result["heavy"] == []


_PAGES_PROBE = """
import json, os, sys
from gmodiff.cli import main
main(["--help"])
import torch
tensor = torch.ones(64 * 1024 * 1024 // 4)  # 64 MB, touched
huge_kb = 0
try:
    for line in open("/proc/self/smaps_rollup"):
        if line.startswith("AnonHugePages:"):
            huge_kb = int(line.split()[1])
except OSError:
    huge_kb = -1
print(json.dumps({"env": {k: os.environ.get(k) for k in ("THP_MEM_ALLOC_ENABLE", "OMP_WAIT_POLICY")},
                  "huge_kb": huge_kb}))
"""


def _thp_mode() -> str:
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return "absent"
    return text.split("[", 1)[1].split("]", 1)[0] if "[" in text else "absent"


def _pages_probe(extra_env: dict[str, str]) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "OMP_WAIT_POLICY")}
    env.update(PYTHONPATH=str(SRC), HF_HUB_OFFLINE="1", **extra_env)
    out = subprocess.run([sys.executable, "-c", _PAGES_PROBE], capture_output=True, text=True,
                         env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_cli_puts_torch_tensors_on_huge_pages_before_torch_starts():
    """Page-faulting every full-size output in 4 kB at a time was half of DaReg's CPU time."""
    result = _pages_probe({})
    assert result["env"] == {"THP_MEM_ALLOC_ENABLE": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    if _thp_mode() in ("always", "madvise"):
        assert result["huge_kb"] >= 2048, result  # the setting reached torch's allocator


def test_cli_leaves_the_users_page_and_thread_choices_alone():
    result = _pages_probe({"THP_MEM_ALLOC_ENABLE": "0", "OMP_WAIT_POLICY": "ACTIVE"})
    assert result["env"] == {"THP_MEM_ALLOC_ENABLE": "0", "OMP_WAIT_POLICY": "ACTIVE"}
    if _thp_mode() == "madvise":
        assert result["huge_kb"] == 0, result  # nothing asked for huge pages
