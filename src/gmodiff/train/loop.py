"""Pieces every training stage shares: resumable batch order, JSONL logs, config files.

The batch order is a function of (seed, epoch) only, and each rank takes its own slice of it, so
a run resumed at step s draws exactly the batches an uninterrupted run would from step s on, on
one process or many.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
import json
import random
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import Sampler

from gmodiff.errors import ConfigError
from gmodiff.io.atomic import atomic_path


@dataclass
class RunConfig:
    """Batching, time limit, logging and checkpoint cadence: the same fields in every stage."""

    batch_size: int = 4
    num_workers: int = 0
    max_minutes: float | None = None
    """Also stop (checkpoint + final weights) once this much wall time has passed."""
    log_every: int = 10
    val_every: int = 500
    checkpoint_every: int = 500
    keep_last: int = 3

    def time_is_up(self, started: float, accelerator=None) -> bool:
        """Whether ``max_minutes`` have passed since ``started`` (``time.perf_counter()``).

        With several processes every rank must stop on the same step, so it is true on all
        ranks as soon as it is true on one.
        """
        up = self.max_minutes is not None and time.perf_counter() - started > 60 * self.max_minutes
        if accelerator is not None and accelerator.num_processes > 1:
            flag = torch.tensor([float(up)], device=accelerator.device)
            up = bool(accelerator.reduce(flag, reduction="sum").item() > 0)
        return up


class ResumableBatchSampler(Sampler[list[int]]):
    """Shuffled batches for one rank: permutation of the dataset seeded by (seed, epoch), split
    round-robin over ``world_size`` ranks, incomplete last batches dropped."""

    def __init__(self, length: int, batch_size: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if length < batch_size * world_size:
            raise ConfigError(f"the training set has {length} items, fewer than one batch "
                              f"({batch_size} × {world_size} processes)", fix="add data or lower batch_size")
        self.length = length
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0
        self.start_batch = 0

    def __len__(self) -> int:
        return self.length // (self.batch_size * self.world_size)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Select the epoch's permutation and skip its first ``start_batch`` batches (resume)."""
        self.epoch = epoch
        self.start_batch = start_batch

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=generator).tolist()
        per_step = self.batch_size * self.world_size
        for batch in range(self.start_batch, len(self)):
            chunk = order[batch * per_step:(batch + 1) * per_step]
            yield chunk[self.rank::self.world_size]


class JsonlLog:
    """A JSONL training log rewritten atomically on every append (logs are small).

    On resume, entries after the resumed step are dropped so the log matches an uninterrupted run.
    """

    def __init__(self, path: str | Path, resume_step: int | None = None):
        self.path = Path(path)
        self.entries: list[dict] = []
        if resume_step is not None and self.path.is_file():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    entry = json.loads(line)
                    if entry.get("step", 0) <= resume_step:
                        self.entries.append(entry)

    def append(self, entry: dict) -> None:
        """Add one entry and rewrite the file."""
        self.entries.append(entry)
        text = "".join(json.dumps(e, sort_keys=True) + "\n" for e in self.entries)
        with atomic_path(self.path) as tmp:
            tmp.write_text(text)


def load_yaml_config(cls, path: str | Path, **overrides):
    """Build dataclass ``cls`` from a YAML file; unknown keys raise a ConfigError naming them."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("config file not found", path, "pass --config with a YAML file from configs/")
    try:
        values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason} at byte {exc.start})", path,
                          "save the config as UTF-8 YAML") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML ({str(exc).splitlines()[0]})", path) from exc
    if not isinstance(values, dict):
        raise ConfigError("config must be a mapping of field: value", path)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown config keys {unknown}", path, f"valid keys: {', '.join(sorted(known))}")
    values.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"invalid config ({exc})", path) from exc


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch: model initialisation and data order follow ``seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
