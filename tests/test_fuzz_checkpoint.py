"""Fuzz checkpoint loading: mutated training checkpoints and reference ``.pth`` state dicts.

``load_checkpoint`` (``--resume``) and ``load_reference_checkpoint`` (``--weights x.pth``) must
restore the model or raise ``CheckpointError`` naming the file, within 5 s, without allocating
more than a few times the file size. They run in a child process, since the readers hand the
bytes to torch's native zip reader.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from fuzz_support import CHILD_PEAK_RSS, mutate

MUTANTS = 100
MAX_RSS_MB = 1024  # torch alone takes ~300 MB resident

_CHILD = r"""
import json, resource, sys, time
""" + CHILD_PEAK_RSS + r"""import torch
from torch import nn
from gmodiff.errors import CheckpointError, GmodiffError
from gmodiff.models.checkpoints import load_reference_checkpoint
from gmodiff.train.checkpointing import load_checkpoint
def model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 1))
for path in sys.argv[1:]:
    print(json.dumps({"path": path, "start": True}), flush=True)
    start = time.perf_counter()
    net = model()
    try:
        if path.endswith(".pt"):
            optimizer = torch.optim.Adam(net.parameters())
            load_checkpoint(path, net, optimizer, restore_rng=True)
        else:
            load_reference_checkpoint(net, path)
        outcome = "ok"
    except CheckpointError as err:
        outcome = "CheckpointError" if path in str(err) and "\n" not in str(err) else "bad message"
    except BaseException as err:
        outcome = f"other:{type(err).__name__}:{str(err)[:200]}"
    print(json.dumps({"path": path, "outcome": outcome, "seconds": time.perf_counter() - start,
                      "max_rss_mb": peak_rss_mb()}),
          flush=True)
"""


def _seeds(folder: Path) -> dict[str, bytes]:
    from torch import nn

    from gmodiff.train.checkpointing import save_checkpoint

    import random

    random.seed(0)  # the checkpoint stores every RNG state: same bytes, same mutants, every run
    np.random.seed(0)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 1))
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.rand(1, 3, 8, 8)).mean().backward()
    optimizer.step()
    checkpoint = save_checkpoint(folder / "ckpt", 1, net, optimizer)
    torch.save({"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
               folder / "ref.pth")
    return {".pt": checkpoint.read_bytes(), ".pth": (folder / "ref.pth").read_bytes()}


def test_mutated_checkpoints_load_or_raise_checkpoint_error(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for suffix, seed in _seeds(tmp_path).items():
        paths.append(tmp_path / f"intact{suffix}")
        paths[-1].write_bytes(seed)
        for k in range(MUTANTS):
            span = len(seed) if k % 2 else min(len(seed), 512)
            edits = [(int(rng.integers(0, 4 if k % 4 == 0 else 3)), int(rng.integers(0, span)),
                      int(rng.integers(0, 256))) for _ in range(int(rng.integers(1, 6)))]
            paths.append(tmp_path / f"m{k:03d}{suffix}")
            paths[-1].write_bytes(mutate(seed, edits))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"))
    child = subprocess.run([sys.executable, "-c", _CHILD, *map(str, paths)], env=env,
                           capture_output=True, text=True, timeout=900)
    records = [json.loads(line) for line in child.stdout.splitlines() if line.startswith("{")]
    finished = [r for r in records if "outcome" in r]
    started = [r["path"] for r in records if r.get("start")]
    assert child.returncode == 0, (f"child died ({child.returncode}) on "
                                   f"{started[-1] if started else None}: {child.stderr[-1500:]}")
    assert len(finished) == len(paths)
    outcome = {Path(r["path"]).name: r["outcome"] for r in finished}
    assert outcome["intact.pt"] == outcome["intact.pth"] == "ok"
    foreign = {name: o for name, o in outcome.items() if o not in ("ok", "CheckpointError")}
    assert not foreign, f"{len(foreign)} mutants escaped CheckpointError: {list(foreign.items())[:4]}"
    greedy = next((Path(r["path"]).name for r in finished if r["max_rss_mb"] > MAX_RSS_MB), None)
    assert greedy is None, f"{greedy} pushed the loader past {MAX_RSS_MB} MB"
    assert sum(o == "CheckpointError" for o in outcome.values()) > MUTANTS // 2


def test_damaged_state_inside_a_readable_checkpoint(tmp_path):
    """Bytes that unpickle fine but hold damaged RNG / optimizer state (what the fuzzer found:
    ``random.setstate`` raised OverflowError) are a CheckpointError, not a crash."""
    import pytest
    from torch import nn

    from gmodiff.errors import CheckpointError
    from gmodiff.train.checkpointing import load_checkpoint

    path = tmp_path / "ckpt" / "checkpoint-00000001.pt"
    _seeds(tmp_path)
    good = torch.load(path, weights_only=False)
    damages = {
        "rng": lambda p: p["rng"].update(python=(3, (-1,) * 625, None)),
        "optimizer": lambda p: p["optimizer"].update(param_groups="nonsense"),
        "step": lambda p: p.update(step="one"),
        "model": lambda p: p.update(model=[1, 2, 3]),
    }
    for name, damage in damages.items():
        payload = torch.load(path, weights_only=False)
        damage(payload)
        torch.save(payload, tmp_path / f"{name}.pt")
        net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 1))
        with pytest.raises(CheckpointError, match=f"{name}.pt"):
            load_checkpoint(tmp_path / f"{name}.pt", net, torch.optim.Adam(net.parameters()))
    assert good["step"] == 1


def test_mutated_dareg_folders_load_or_raise_our_errors(tmp_path):
    """``DaReg.from_pretrained`` (``--weights DIR``) on mutated config.json / model.safetensors.

    In-process (safetensors and json are memory-safe); the fuzzer found config.json bytes that
    are not UTF-8 (UnicodeDecodeError) and JSON that is not an object escaping as crashes.
    """
    import shutil

    from fuzz_support import guarded_call
    from gmodiff.models.dareg import DaReg, DaRegConfig

    torch.manual_seed(0)
    DaReg(DaRegConfig.tiny()).save_pretrained(tmp_path / "good")
    seeds = {p.name: p.read_bytes() for p in (tmp_path / "good").iterdir()}
    rng = np.random.default_rng(1)
    outcomes = []
    for k in range(50):
        name = "config.json" if k % 2 else "model.safetensors"
        folder = tmp_path / f"m{k:03d}"
        shutil.copytree(tmp_path / "good", folder)
        seed = seeds[name]
        span = len(seed) if name == "config.json" else 400  # safetensors: its JSON header
        edits = [(int(rng.integers(0, 4 if k % 5 == 0 else 3)), int(rng.integers(0, span)),
                  int(rng.choice([int(rng.integers(0, 256)), ord("9"), ord("-"), ord("[")])))
                 for _ in range(int(rng.integers(1, 5)))]
        (folder / name).write_bytes(mutate(seed, edits))
        model, err = guarded_call(DaReg.from_pretrained, folder, seconds=5.0, max_bytes=256 << 20)
        outcomes.append("ok" if err is None else type(err).__name__)
        shutil.rmtree(folder)
    assert outcomes.count("ok") < len(outcomes)


class _Payload:
    """Pickles to a call that would leave a marker file: what a booby-trapped checkpoint does."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoints_with_pickled_code_are_refused_without_running_it(tmp_path):
    """``--resume`` and stage-2 ``init_weights`` load with weights_only: a checkpoint whose pickle
    calls a function is a CheckpointError naming it, and the function never runs."""
    import pytest
    from torch import nn

    from gmodiff.errors import CheckpointError
    from gmodiff.train.checkpointing import load_checkpoint
    from gmodiff.train.dareg import _read_weights

    _seeds(tmp_path)
    good = tmp_path / "ckpt" / "checkpoint-00000001.pt"
    payload = torch.load(good, weights_only=False)
    marker = tmp_path / "pwned"
    payload["extra"] = {"note": _Payload(marker)}
    trapped = tmp_path / "trap" / "checkpoint-00000002.pt"
    trapped.parent.mkdir()
    torch.save(payload, trapped)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU(), nn.Conv2d(8, 3, 1))
    with pytest.raises(CheckpointError, match="checkpoint-00000002.pt"):
        load_checkpoint(trapped, net, torch.optim.Adam(net.parameters()))
    with pytest.raises(CheckpointError, match="checkpoint-00000002.pt"):
        _read_weights(trapped)
    assert not marker.exists()
    assert load_checkpoint(good, net, torch.optim.Adam(net.parameters())).step == 1
