"""Batch inference over processes: ``accelerate launch -m gmodiff reconstruct scenes/ -o out/``
shares the scenes out, writes each output once, and lists a failed scene once (gloo, 2 CPUs)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from dareg_helpers import synthetic_scene
from gmodiff.io.hdr import read_hdr
from gmodiff.io.scene import save_scene
from gmodiff.jobs import BatchReport, Shard


def test_shards_cover_the_batch_once():
    scenes = list(range(7))
    parts = [Shard(i, 3).take(scenes) for i in range(3)]
    assert sorted(x for part in parts for x in part) == scenes
    merged = BatchReport.merge([BatchReport(total=4, written=3, failed={4: "e"}),
                                BatchReport(total=3, written=2, failed={1: "b"})])
    assert (merged.total, merged.written, merged.failures) == (7, 5, ["b", "e"])


def test_accelerate_launch_shards_scenes_over_two_cpu_processes(tmp_path):
    root = tmp_path / "scenes"
    names = ["a", "b", "c", "d", "e"]
    for seed, name in enumerate(names):
        save_scene(synthetic_scene(seed, 24, 32), root / name)
    (root / "c" / "input_3.tif").unlink()  # a broken scene: two frames
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    with socket.socket() as probe:  # a free port, so parallel test runs do not collide on 29500
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # As in test_dareg_train: the torchrun path plus ACCELERATE_USE_CPU=1 is DDP over gloo.
    command = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
               "--num_processes", "2", "--num_machines", "1", "--main_process_port", str(port),
               "--mixed_precision", "no", "--dynamo_backend", "no",
               "-m", "gmodiff", "reconstruct", str(root), "-o", str(out), "--method", "merge",
               "--no-progress"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180)
    assert result.returncode != 0  # one scene failed
    assert sorted(p.name for p in out.iterdir()) == [f"{n}.exr" for n in names if n != "c"]
    for path in out.iterdir():
        assert read_hdr(path).shape == (24, 32, 3)
    summary = [line for line in result.stdout.splitlines() if line.startswith("wrote ")]
    assert summary == [f"wrote 4 of 5 HDR image(s) to {out}"], result.stdout
    failed = [line for line in result.stderr.splitlines() if str(Path(root / "c")) in line]
    assert len(failed) == 1 and "scene(s) failed" in result.stderr, result.stderr[-2000:]
