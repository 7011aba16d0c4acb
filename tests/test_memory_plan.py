"""The memory plan (gmodiff.memory), allocation failures as one-line errors, and progress output."""

from __future__ import annotations

import io
import re
import shutil

import pytest

from gmodiff import errors
from gmodiff.memory import (GIB, MIB, format_bytes, is_allocation_failure, parse_size,
                            plan_memory)
from gmodiff.progress import Progress, describe_timings

ALLOCATOR = ("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate "
             "memory: you tried to allocate 1540096000 bytes. Error code 12")


def test_12_megapixels_fits_6_gb_with_tiles_and_small_images_run_whole():
    plan = plan_memory(3000, 4000, budget=6 * GIB, refine=True)
    assert plan.dareg_tile is not None and plan.dareg_tile % 32 == 0
    assert plan.vae_tile is not None
    assert plan.estimate <= 6 * GIB
    small = plan_memory(384, 512, budget=6 * GIB, refine=True)
    assert small.dareg_tile is None and small.vae_tile is None
    # A tighter budget gives smaller DaReg tiles, never a bigger estimate.
    tight = plan_memory(3000, 4000, budget=3 * GIB, refine=True)
    assert tight.dareg_tile < plan.dareg_tile and tight.estimate <= 3 * GIB


def test_a_budget_below_the_minimum_is_refused_before_any_compute():
    with pytest.raises(errors.OutOfMemoryError, match="max_memory="):
        plan_memory(3000, 4000, budget=1 * GIB)


@pytest.mark.parametrize("text,expected", [("6G", 6 * GIB), ("512M", 512 * MIB), ("1.5gb", int(1.5 * GIB)),
                                           ("2GiB", 2 * GIB)])
def test_parse_size(text, expected):
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["lots", "-1G", "10K"])
def test_parse_size_refuses_nonsense(text):
    with pytest.raises(errors.ConfigError):
        parse_size(text)


def test_allocation_failures_are_recognised():
    import torch

    assert is_allocation_failure(RuntimeError(ALLOCATOR))
    assert is_allocation_failure(MemoryError())
    assert is_allocation_failure(torch.OutOfMemoryError("CUDA out of memory"))
    assert not is_allocation_failure(RuntimeError("shape mismatch"))
    assert format_bytes(3 * GIB) == "3.0 GB"


def _scene_dir(tmp_path):
    from dareg_helpers import write_scenes

    return write_scenes(tmp_path / "scenes", 1, height=64, width=96) / "scene00"


def test_forced_low_memory_run_is_one_line_exit_2_and_no_file(tmp_path, capsys):
    from gmodiff.cli import main

    out = tmp_path / "out" / "o.jpg"
    code = main(["reconstruct", str(_scene_dir(tmp_path)), "-o", str(out), "--max-memory", "100M"])
    err = capsys.readouterr().err
    assert code == 2
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "--max-memory" in lines[0] and "Traceback" not in err
    assert not out.exists() and not (tmp_path / "out").exists()


def test_torch_allocator_runtime_error_becomes_out_of_memory(tmp_path, capsys, monkeypatch):
    """The CPU allocator's RuntimeError (not a MemoryError) gets the one-line error too."""
    from gmodiff.cli import main
    from gmodiff.pipeline.pipeline import GMODiffPipeline, bundled_pipeline

    if bundled_pipeline() is None:
        pytest.skip("bundled model not installed")

    def fail(self, *args, **kwargs):
        raise RuntimeError(ALLOCATOR)

    monkeypatch.setattr(GMODiffPipeline, "predict_coarse", fail)
    monkeypatch.setattr(GMODiffPipeline, "predict", fail)
    out = tmp_path / "o.exr"
    code = main(["reconstruct", str(_scene_dir(tmp_path)), "-o", str(out), "--method", "gmodiff",
                 "--max-memory", "4G", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "out of memory" in lines[0]
    assert "--max-memory" in lines[0] or "close other programs" in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".o*"))


def test_classical_allocation_failure_is_one_line_too(tmp_path, capsys, monkeypatch):
    from gmodiff import baselines
    from gmodiff.cli import main

    def fail(scene, **kwargs):
        raise MemoryError()

    monkeypatch.setitem(baselines.CLASSICAL_METHODS, "merge", fail)
    out = tmp_path / "o.exr"
    code = main(["reconstruct", str(_scene_dir(tmp_path)), "-o", str(out), "--method", "merge"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "out of memory" in err[0]
    assert not out.exists()


def test_progress_plain_lines_off_a_terminal_and_silence_when_quiet():
    stream = io.StringIO()
    progress = Progress(stream=stream, tty=False)
    progress.stage("DaReg")
    for done in range(1, 21):
        progress.tile(done, 20)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "DaReg" in lines[0] and lines[-1].endswith("tile 20/20")
    assert 5 <= len(lines) <= 13  # about every 10 %, not every tile
    quiet = io.StringIO()
    silent = Progress(quiet=True, stream=quiet, tty=False)
    silent.stage("DaReg")
    silent.tile(1, 2)
    assert quiet.getvalue() == ""


def test_timing_summary_names_every_stage_that_ran_however_fast():
    # A fast machine used to drop stages that rounded to 0.0 (the CLI test then failed on an
    # idle machine); a stage booked at exactly 0 did not run and stays out.
    line = describe_timings(0.4, {"start-up": 0.3, "read": 0.004, "dareg": 0.03,
                                  "refiner": 0.0, "write": 1.26, "total": 0.1})
    assert line == "0.40 s: start-up 0.3, read 0.01, dareg 0.03, write 1.3"


def test_cli_reports_stages_and_the_whole_wall_time(tmp_path, capsys):
    from gmodiff.cli import main
    from gmodiff.pipeline.pipeline import bundled_pipeline

    if bundled_pipeline() is None:
        pytest.skip("bundled model not installed")
    scene = _scene_dir(tmp_path)
    out = tmp_path / "o.exr"
    assert main(["reconstruct", str(scene), "-o", str(out), "--method", "gmodiff",
                 "--max-memory", "2G"]) == 0
    captured = capsys.readouterr()
    assert "DaReg" in captured.err and "writing o.exr" in captured.err
    summary = captured.out.strip().splitlines()[-1]
    # wall time, then the split; the DaReg stage counts its input encoding (curve estimate, merge)
    assert re.search(r" s: .*dareg \d", summary), summary
    shutil.rmtree(tmp_path / "scenes")
    assert main(["reconstruct", str(_scene_dir(tmp_path)), "-o", str(out), "--method", "gmodiff",
                 "--quiet"]) == 0
    assert capsys.readouterr().err == ""
