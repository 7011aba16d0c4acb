"""benchmarks/gpu_check.py at tiny size on CPU: the report is written with every row."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
SRC = Path(__file__).resolve().parents[1] / "src"


def _load_module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_tiny_cpu_run_writes_every_row(tmp_path):
    out = tmp_path / "gpu.md"
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tiny", "--device", "cpu", "--steps", "3",
                           "--repeats", "1", "--out", str(out)], capture_output=True, text=True,
                          env=env, timeout=900)  # generous: shared CI machines are slow
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = out.read_text()
    assert "--tiny --device cpu" in text  # the command
    assert f"torch {torch.__version__}" in text
    table = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    names = [(cells[1].strip(), cells[2].strip()) for cells in (row.split("|") for row in table)]
    assert names == [
        ("build pipeline + move to device", "fp32"),
        ("one step (full pipeline)", "fp16"),
        ("3-step DDIM (full pipeline)", "fp16"),
        ("one step (full pipeline)", "fp32"),
        ("3-step DDIM (full pipeline)", "fp32"),
        ("one step, tiled", "fp32"),
        ("DaReg forward (tiny)", "fp32"),
    ]
    # Every fp32 row was measured (a number in the seconds column, no error); fp16 says why not.
    for row in table:
        cells = [c.strip() for c in row.split("|")]
        if cells[2] == "fp32":
            assert float(cells[4]) > 0, row
            assert "ERROR" not in cells[6], row
        else:
            assert "needs a GPU" in cells[6], row
    assert "- fp32: " in text and "×" in text.split("- fp32: ")[1].splitlines()[0]
    assert "128×96" in text  # the tiled (large) input
    assert "VAE tiles" in text


def test_failing_measurement_writes_its_error_and_the_rest_runs(tmp_path):
    gpu_check = _load_module()
    report = gpu_check.Report(path=tmp_path / "g.md", command="x", device_name="cpu", tiny=True,
                              budget_s=60)
    budget = gpu_check.Budget(60)

    def broken(row):
        raise RuntimeError("CUDA out of memory (simulated)")

    def fine(row):
        row.seconds = 0.5

    device = torch.device("cpu")
    gpu_check.measure(report, "broken", "fp16", "1×1", budget, device, broken)
    gpu_check.measure(report, "fine", "fp32", "1×1", budget, device, fine)
    gpu_check.measure(report, "late", "fp32", "1×1", budget, device, fine, min_seconds=1e6)
    text = (tmp_path / "g.md").read_text()
    assert "| broken | fp16 | 1×1 | — | n/a | ERROR RuntimeError: CUDA out of memory (simulated) |" in text
    assert "| fine | fp32 | 1×1 | 0.500 |" in text
    assert "| late | fp32 | 1×1 | — | n/a | skipped:" in text


def test_cuda_without_gpu_is_a_one_line_error(tmp_path):
    if torch.cuda.is_available():
        return
    gpu_check = _load_module()
    assert gpu_check.main(["--device", "cuda", "--out", str(tmp_path / "g.md")]) == 2
    assert not (tmp_path / "g.md").exists()


def test_failed_build_still_writes_every_row(tmp_path, monkeypatch):
    gpu_check = _load_module()

    def broken(tiny):
        raise MemoryError("simulated")

    monkeypatch.setattr(gpu_check, "build_pipeline", broken)
    out = tmp_path / "g.md"
    assert gpu_check.main(["--tiny", "--device", "cpu", "--steps", "3", "--out", str(out)]) == 0
    rows = [r for r in out.read_text().splitlines() if r.startswith("| ") and "---" not in r][1:]
    assert len(rows) == 7
    assert "ERROR MemoryError: simulated" in rows[0]
    assert all("not run: building the pipeline failed" in r for r in rows[1:])
