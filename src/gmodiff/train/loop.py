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
from torch.utils.data import Dataset, Sampler

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


# -- the one training loop ---------------------------------------------------------------------


class Stage:
    """One trainable stage, driven by :func:`run_stage` (BasicSR's "model": it builds its
    networks, feeds a batch through them, computes its loss, validates and saves).

    :meth:`build` sets ``module`` (what checkpoints hold), ``optimizer`` and optionally
    ``scheduler`` and ``generators`` (extra RNGs saved in checkpoints); :meth:`prepare` gets the
    (possibly DDP-wrapped) module to train, ``train_module``.
    """

    description = "training"
    config: RunConfig
    module: torch.nn.Module
    train_module: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler = None
    generators: dict[str, torch.Generator] | None = None
    mixed_precision = "no"

    def build(self, device: torch.device) -> None:
        """Make the networks, optimizer and scheduler (after the global seed is set)."""
        raise NotImplementedError

    def train_data(self) -> Dataset:
        """The training data the config names."""
        from gmodiff.train.data import build_train_dataset

        return build_train_dataset(self.config)

    def val_data(self) -> Dataset | None:
        """The validation data the config names (None: no validation)."""
        from gmodiff.train.data import build_val_dataset

        return build_val_dataset(self.config)

    def prepare(self, accelerator) -> None:
        """Hand the module and optimizer to accelerate (DDP, devices)."""
        self.train_module, self.optimizer = accelerator.prepare(self.module, self.optimizer)

    def train_step(self, batch: dict, step: int, accelerator) -> tuple[torch.Tensor, dict]:
        """Forward, loss, backward and optimizer step for one batch; returns (loss, log parts)."""
        raise NotImplementedError

    def validate(self, dataset: Dataset, step: int, device: torch.device) -> dict:
        """Validation scores after ``step`` training steps."""
        raise NotImplementedError

    def boundary(self, step: int) -> bool:
        """Whether ``step`` ends a phase (then it is validated and checkpointed)."""
        return False

    def log_extra(self, step: int) -> dict:
        """Entries added to each training log line (e.g. the phase)."""
        return {}

    def checkpoint_module(self) -> torch.nn.Module:
        """What a checkpoint holds (the unwrapped module, or a view of its trained weights)."""
        return self.module

    def checkpoint_extra(self, step: int) -> dict:
        """Free entries stored with each checkpoint."""
        return {}

    def run_info(self) -> dict:
        """Entries added to ``train_config.json``."""
        return {}

    def announce(self) -> str | None:
        """A line the main process prints before training (what runs, what does not)."""
        return None

    def save_final(self, path: Path) -> None:
        """Write the trained result to ``path``."""
        raise NotImplementedError


def run_stage(stage: Stage, resume: bool = False, train_dataset: Dataset | None = None,
              val_dataset: Dataset | None = None, progress: bool = True) -> dict:
    """Run (or resume) ``stage`` with accelerate (one process, or DDP under ``accelerate launch``).

    Writes ``<out_dir>/log.jsonl``, ``<out_dir>/train_config.json``,
    ``<out_dir>/checkpoints/checkpoint-*.pt`` and, at the end, ``<out_dir>/final``. A run
    resumed from a checkpoint sees exactly the batches and RNG draws of an uninterrupted one.
    Returns a summary: steps, seconds, last training loss, last validation, final folder.
    """
    from accelerate import Accelerator
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from gmodiff.errors import CheckpointError
    from gmodiff.train.checkpointing import latest_checkpoint, load_checkpoint, save_checkpoint
    from gmodiff.train.data import set_epoch

    config = stage.config
    mixed = stage.mixed_precision if torch.cuda.is_available() else "no"
    accelerator = Accelerator(mixed_precision=mixed)
    main = accelerator.is_main_process
    out_dir = Path(config.out_dir)
    checkpoints = out_dir / "checkpoints"
    seed_everything(config.seed)
    stage.build(accelerator.device)
    train_dataset = train_dataset if train_dataset is not None else stage.train_data()
    if val_dataset is None and main:  # only the main process validates
        val_dataset = stage.val_data()

    start_step = 0
    if resume:
        if latest_checkpoint(checkpoints) is None:
            raise CheckpointError("nothing to resume", checkpoints, "run once without --resume first")
        start_step = load_checkpoint(checkpoints, stage.checkpoint_module(), stage.optimizer,
                                     stage.scheduler, generators=stage.generators).step

    sampler = ResumableBatchSampler(len(train_dataset), config.batch_size, config.seed,
                                    accelerator.process_index, accelerator.num_processes)
    loader = DataLoader(train_dataset, batch_sampler=sampler, num_workers=config.num_workers)
    stage.prepare(accelerator)
    log = JsonlLog(out_dir / "log.jsonl", resume_step=start_step) if main else None
    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        info = {"config": dataclasses.asdict(config), "processes": accelerator.num_processes,
                **stage.run_info()}
        with atomic_path(out_dir / "train_config.json") as tmp:
            tmp.write_text(json.dumps(info, indent=2) + "\n")
        if stage.announce():
            print(stage.announce())

    steps_per_epoch = len(sampler)
    step = start_step
    mean_loss = float("nan")
    last_val: dict = {}
    bar = tqdm(total=config.max_steps, initial=step, desc=stage.description,
               disable=not (progress and main), dynamic_ncols=True)
    started = time.perf_counter()
    stage.train_module.train()
    done = step >= config.max_steps
    while not done:
        epoch = step // steps_per_epoch
        sampler.set_epoch(epoch, start_batch=step % steps_per_epoch)
        set_epoch(train_dataset, epoch)
        for batch in loader:
            batch = {k: v.to(accelerator.device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
            extra = stage.log_extra(step)
            loss, parts = stage.train_step(batch, step, accelerator)
            if stage.scheduler is not None:
                stage.scheduler.step()
            step += 1
            done = step >= config.max_steps or config.time_is_up(started, accelerator)
            boundary = stage.boundary(step)
            mean_loss = accelerator.reduce(loss.detach(), reduction="mean").item()
            bar.update(1)
            bar.set_postfix(**extra, loss=f"{mean_loss:.4f}")
            if log is not None and (step % config.log_every == 0 or done):
                lr = {"lr": stage.scheduler.get_last_lr()[0]} if stage.scheduler is not None else {}
                log.append({"step": step, "split": "train", **extra, "loss": mean_loss, **lr, **parts})
            if (config.val_every and step % config.val_every == 0) or done or boundary:
                if main and val_dataset is not None and len(val_dataset):
                    last_val = stage.validate(val_dataset, step, accelerator.device)
                    log.append({"step": step, "split": "val", **last_val})
                    bar.write(f"step {step}: " + ", ".join(f"{k} {v:.4f}" for k, v in last_val.items()))
                accelerator.wait_for_everyone()
            if (config.checkpoint_every and step % config.checkpoint_every == 0) or done or boundary:
                if main:
                    optimizer = getattr(stage.optimizer, "optimizer", stage.optimizer)
                    save_checkpoint(checkpoints, step, stage.checkpoint_module(), optimizer,
                                    stage.scheduler, extra=stage.checkpoint_extra(step),
                                    generators=stage.generators, keep_last=config.keep_last)
                accelerator.wait_for_everyone()
            if done:
                break
    bar.close()
    if main:
        stage.save_final(out_dir / "final")
    accelerator.wait_for_everyone()
    return {"steps": step, "seconds": time.perf_counter() - started, "last_val": last_val,
            "final": str(out_dir / "final"), "loss": mean_loss if step > start_step else float("nan")}
