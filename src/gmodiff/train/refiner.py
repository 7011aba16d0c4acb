"""Stage-3 training of the one-step refiner (spec §4), driven by accelerate.

DaReg is frozen. Loss = L1(GM) + L1(T(H)) + perceptual(T(H_pred), T(H_gt)) with T the μ=5000 tone
curve. The perceptual term is DISTS when VGG/DISTS weights are given by path; otherwise MS-SSIM
on T(H) stands in, and the log says which one ran. AdamW (5e-5, wd 1e-2), gradient clipping 1.0,
constant learning rate. Checkpoints hold only what training changes (LoRA, conv_in, projection,
DA skips, optimizer, RNG) and resume exactly via :mod:`gmodiff.train.checkpointing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from gmodiff.errors import CheckpointError, ConfigError
from gmodiff.gainmap import decode_gain_map, tonemap
from gmodiff.models.backbone import BackboneConfig
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.models.refiner import RefinerConfig
from gmodiff.pipeline.pipeline import (GMODiffPipeline, load_refiner_state, read_provenance, resolve_weights,
                              write_provenance)
from gmodiff.inputs.encode import batch_inputs
from gmodiff.train.data import TrainDataConfig
from gmodiff.train.loop import RunConfig, Stage, load_yaml_config, run_stage
from gmodiff.train.losses import ms_ssim_loss


@dataclass
class RefinerTrainConfig(TrainDataConfig, RunConfig):
    """One stage-3 run (a YAML file under ``configs/``). Paths are relative to the cwd.

    The data fields (train_scenes, simulated_*, val_*, seed) come from ``TrainDataConfig``,
    batching and logging/checkpoint cadence from ``RunConfig``."""

    dareg_weights: str | None = None
    """Frozen DaReg (save_pretrained folder or reference .pth). None: a random tiny DaReg, for
    smoke tests only."""
    backbone: str = "tiny"
    """"tiny", "sd21_random", or a local stable-diffusion-2-1-base diffusers folder."""
    init_pipeline: str | None = None
    """Start from a saved GMODiffPipeline folder instead (its refiner weights, and its DaReg unless
    ``dareg_weights`` is also given: then a trained refiner is fine-tuned on a retrained DaReg)."""
    refiner: dict = field(default_factory=dict)
    """RefinerConfig overrides (ranks, lora_alpha, timestep, residual_gate, ...). With
    ``init_pipeline`` only ``residual_gate: true`` applies: it adds a zero gate to the loaded refiner."""
    # -- losses --
    perceptual_weight: float = 1.0
    vgg_weights: str | None = None
    """torchvision-layout VGG16 weights: enables DISTS (needs ``dists_weights`` too)."""
    dists_weights: str | None = None
    """The DISTS alpha/beta file."""
    latent_gan: bool = False
    """Optional latent GAN of the paper: not implemented here; must stay false."""
    # -- optimisation --
    crop_size: int = 256
    lr: float = 5e-5
    skip_lr_scale: float = 1.0
    """Learning-rate factor for the DA decoder's skip blocks (1: the paper's single rate). The skips
    start at 1e-5, so on a short CPU schedule they barely open at the shared rate."""
    gate_lr_scale: float = 1.0
    """Learning-rate factor for the residual gate (``refiner.residual_gate``): it starts at zero
    and has to open within a short run."""
    lr_schedule: str = "constant"
    """"constant" or "cosine": from ``lr`` down to ``lr · lr_final_scale`` at ``max_steps`` (both
    parameter groups alike). At a constant rate a CPU-sized run's validation score wanders."""
    lr_final_scale: float = 0.05
    weight_decay: float = 1e-2
    grad_clip: float = 1.0
    mixed_precision: str = "no"
    """"no", "fp16" or "bf16" (GPU only)."""
    max_steps: int = 1000
    out_dir: str = "runs/refiner"

    def __post_init__(self) -> None:
        if self.latent_gan:
            raise ConfigError("the latent GAN term is not implemented", fix="set latent_gan: false")
        if self.crop_size % 32:
            raise ConfigError(f"crop_size must be a multiple of 32, got {self.crop_size}")
        if self.skip_lr_scale <= 0 or self.gate_lr_scale <= 0:
            raise ConfigError(f"skip_lr_scale and gate_lr_scale must be > 0, got "
                              f"{self.skip_lr_scale} and {self.gate_lr_scale}")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ConfigError(f"lr_schedule {self.lr_schedule!r}", fix='use "constant" or "cosine"')
        if not 0 <= self.lr_final_scale <= 1:
            raise ConfigError(f"lr_final_scale must be in [0, 1], got {self.lr_final_scale}")
        if self.mixed_precision not in ("no", "fp16", "bf16"):
            raise ConfigError(f"mixed_precision {self.mixed_precision!r}", fix='use "no", "fp16" or "bf16"')
        if bool(self.vgg_weights) != bool(self.dists_weights):
            raise ConfigError("DISTS needs both vgg_weights and dists_weights",
                              fix="give both paths, or neither to use MS-SSIM")

    @property
    def perceptual_name(self) -> str:
        """Which perceptual term this run uses."""
        return "dists" if self.vgg_weights else "ms_ssim"

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> RefinerTrainConfig:
        """Load from YAML; non-None ``overrides`` (CLI flags) win."""
        return load_yaml_config(cls, path, **overrides)


class TrainableRefinerState(nn.Module):
    """A view whose state dict is only the refiner's trained weights (small checkpoints)."""

    def __init__(self, pipeline: GMODiffPipeline):
        super().__init__()
        self._pipeline = [pipeline]  # a list: not registered as a sub-module

    def state_dict(self, *args, **kwargs):  # noqa: D102 - nn.Module API
        return {k: v.detach().clone() for k, v in self._pipeline[0].refiner.trainable_state_dict().items()}

    def load_state_dict(self, state, strict: bool = True):  # noqa: D102 - nn.Module API
        try:
            load_refiner_state(self._pipeline[0].refiner, state, full=False)
        except CheckpointError as exc:
            raise RuntimeError(str(exc)) from exc


# -- model and loss ----------------------------------------------------------------------------


def build_pipeline(config: RefinerTrainConfig) -> GMODiffPipeline:
    """DaReg (frozen) + a fresh refiner on the configured backbone, or a saved pipeline."""
    if config.init_pipeline:
        pipeline = GMODiffPipeline.from_pretrained(config.init_pipeline)
        if config.dareg_weights:
            pipeline.dareg = compatible_dareg(pipeline, DaReg.from_pretrained(config.dareg_weights))
        if config.refiner.get("residual_gate"):
            # Fine-tuning a trained refiner behind a zero gate: it starts exactly at its DaReg.
            pipeline.refiner.enable_residual_gate()
        return pipeline
    if config.dareg_weights:
        dareg = DaReg.from_pretrained(config.dareg_weights)
    else:
        dareg = DaReg(DaRegConfig.tiny())
    kind = config.backbone if config.backbone in ("tiny", "sd21_random") else "folder"
    backbone = (BackboneConfig(kind=kind, seed=config.seed) if kind != "folder"
                else BackboneConfig.from_path(config.backbone))
    token_channels = dareg.config.channels[-1]
    base = RefinerConfig.tiny(token_channels) if kind == "tiny" else RefinerConfig(token_channels=token_channels)
    refiner_config = RefinerConfig.from_dict({**base.to_dict(), **config.refiner, "seed": config.seed})
    return GMODiffPipeline.build(dareg, backbone, refiner_config)


def compatible_dareg(pipeline: GMODiffPipeline, dareg: DaReg) -> DaReg:
    """Check that ``dareg`` can feed ``pipeline``'s refiner (same token width); return it in eval."""
    expected = pipeline.dareg.config.channels[-1]
    if dareg.config.channels[-1] != expected:
        raise ConfigError(f"dareg_weights give {dareg.config.channels[-1]}-channel tokens but the "
                          f"init_pipeline refiner expects {expected}",
                          fix="use a DaReg of the same size as the pipeline's, or drop init_pipeline")
    return dareg.eval()


class PerceptualLoss(nn.Module):
    """DISTS when weights are given, else 1 − MS-SSIM; both on tone-mapped HDR in [0, 1]."""

    def __init__(self, config: RefinerTrainConfig):
        super().__init__()
        self.name = config.perceptual_name
        self.dists = None
        if self.name == "dists":
            from gmodiff.train.dists import DISTS

            self.dists = DISTS.from_weights(config.vgg_weights, config.dists_weights)

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Perceptual distance, averaged over the batch."""
        if self.dists is not None:
            return self.dists(pred.clamp(0, 1), target.clamp(0, 1)).mean()
        return ms_ssim_loss(pred.float(), target.float())


def refiner_loss(gain_map: torch.Tensor, batch: dict, perceptual: PerceptualLoss,
                 perceptual_weight: float) -> tuple[torch.Tensor, dict]:
    """L1(GM) + L1(T(H)) + w·perceptual(T(H)); returns the total and its parts."""
    gain_map = gain_map.float()
    hdr = decode_gain_map(gain_map, batch["ldr_ref"])
    mapped, mapped_gt = tonemap(hdr), tonemap(batch["gt_hdr"])
    l1_gm = F.l1_loss(gain_map, batch["gt_gain_map"])
    l1_mu = F.l1_loss(mapped, mapped_gt)
    perceptual_value = perceptual(mapped, mapped_gt)
    total = l1_gm + l1_mu + perceptual_weight * perceptual_value
    return total, {"l1_gm": l1_gm.item(), "l1_mu": l1_mu.item(), perceptual.name: perceptual_value.item()}


def refine_batch(pipeline: GMODiffPipeline, refiner: nn.Module, batch: dict) -> torch.Tensor:
    """Refined gain map in [0, 1] for a training batch: the inference road, with gradients."""
    inputs = batch_inputs(batch["inputs"], batch["ldr_short"], pipeline.dareg.config)
    return pipeline.predict(inputs, refiner=refiner)[0]


def train_step(pipeline: GMODiffPipeline, optimizer: torch.optim.Optimizer, batch: dict,
               perceptual: PerceptualLoss, config: RefinerTrainConfig, accelerator=None,
               refiner: nn.Module | None = None):
    """One optimisation step on ``batch``; returns (loss tensor, parts).

    ``refiner`` is the (possibly DDP-wrapped) module to call; defaults to ``pipeline.refiner``.
    """
    refiner = refiner if refiner is not None else pipeline.refiner
    if accelerator is not None:
        with accelerator.autocast():
            gain_map = refine_batch(pipeline, refiner, batch)
    else:
        gain_map = refine_batch(pipeline, refiner, batch)
    loss, parts = refiner_loss(gain_map, batch, perceptual, config.perceptual_weight)
    optimizer.zero_grad(set_to_none=True)
    params = [p for p in pipeline.refiner.parameters() if p.requires_grad]
    if accelerator is not None:
        accelerator.backward(loss)
        parts["grad_norm"] = float(accelerator.clip_grad_norm_(params, config.grad_clip))
    else:
        loss.backward()
        parts["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, config.grad_clip))
    optimizer.step()
    return loss, parts


def make_optimizer(pipeline: GMODiffPipeline, config: RefinerTrainConfig) -> torch.optim.Optimizer:
    """AdamW over the refiner's trainable parameters (the DA skips at ``lr · skip_lr_scale``, the
    residual gate at ``lr · gate_lr_scale``)."""
    skips, gate, others = [], [], []
    for name, param in pipeline.refiner.named_parameters():
        if param.requires_grad:
            if name.startswith("residual_gate."):
                gate.append(param)
            else:
                (skips if ".skip_conv_" in name else others).append(param)
    groups = [{"params": others}, {"params": skips, "lr": config.lr * config.skip_lr_scale},
              {"params": gate, "lr": config.lr * config.gate_lr_scale}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr,
                             weight_decay=config.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, config: RefinerTrainConfig):
    """Per-step learning-rate factor: 1 (constant) or a half cosine to ``lr_final_scale``."""
    def factor(step: int) -> float:
        if config.lr_schedule == "constant":
            return 1.0
        progress = min(step / max(config.max_steps, 1), 1.0)
        return config.lr_final_scale + (1 - config.lr_final_scale) * 0.5 * (1 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


@torch.no_grad()
def validate(pipeline: GMODiffPipeline, dataset: Dataset) -> dict:
    """Mean PSNR-μ / PSNR-l of refined vs DaReg-only HDR over full validation scenes."""
    from gmodiff.metrics import psnr_l, psnr_mu

    refiner = pipeline.refiner
    was_training = refiner.training
    refiner.eval()
    totals: dict[str, float] = {}
    for index in range(len(dataset)):
        item = dataset[index]
        inputs = batch_inputs(item["inputs"][None], item["ldr_short"][None], pipeline.dareg.config)
        gain_map, coarse = pipeline.predict(inputs)
        ref = item["ldr_ref"][None].to(gain_map.device)
        gt = item["gt_hdr"].permute(1, 2, 0).numpy()
        for name, gm in (("", gain_map), ("dareg_", coarse.gain_map)):
            hdr = decode_gain_map(gm.float(), ref)[0].permute(1, 2, 0).cpu().numpy()
            for metric, fn in (("psnr_mu", psnr_mu), ("psnr_l", psnr_l)):
                totals[name + metric] = totals.get(name + metric, 0.0) + float(fn(hdr, gt))
    refiner.train(was_training)
    return {k: v / max(len(dataset), 1) for k, v in totals.items()}


class RefinerStage(Stage):
    """Stage 3 for :func:`run_stage`: the refiner trained on a frozen DaReg."""

    description = "refiner (stage 3)"

    def __init__(self, config: RefinerTrainConfig):
        self.config = config
        self.mixed_precision = config.mixed_precision

    def build(self, device: torch.device) -> None:
        """Pipeline (DaReg frozen on ``device``), perceptual loss, AdamW and the LR schedule."""
        self.pipeline = build_pipeline(self.config)
        # The refiner sees its inputs through the DaReg, so the data follow the DaReg's layout
        # (canonical frames, merge slot) whatever the run's YAML says.
        dareg_config = self.pipeline.dareg.config
        self.config.canonical_inputs = bool(getattr(dareg_config, "canonical_inputs", False))
        self.config.merge_input = bool(getattr(dareg_config, "merge_input", False))
        self.pipeline.dareg.requires_grad_(False).eval().to(device)
        self.pipeline.device = device
        self.perceptual = PerceptualLoss(self.config).to(device)
        self.optimizer = make_optimizer(self.pipeline, self.config)
        # Not passed to accelerator.prepare: its wrapper steps the scheduler once per process.
        self.scheduler = make_scheduler(self.optimizer, self.config)
        self.module = self.pipeline.refiner
        self.state_view = TrainableRefinerState(self.pipeline)

    def train_step(self, batch: dict, step: int, accelerator) -> tuple[torch.Tensor, dict]:
        """One optimisation step through the (possibly DDP-wrapped) refiner."""
        return train_step(self.pipeline, self.optimizer, batch, self.perceptual, self.config,
                          accelerator, self.train_module)

    def validate(self, dataset: Dataset, step: int, device: torch.device) -> dict:
        """Refined vs DaReg-only PSNRs over full scenes."""
        return validate(self.pipeline, dataset)

    def checkpoint_module(self) -> nn.Module:
        """Only the refiner's trained weights (small checkpoints)."""
        return self.state_view

    def checkpoint_extra(self, step: int) -> dict:
        """Which perceptual term the run uses."""
        return {"perceptual": self.config.perceptual_name}

    def run_info(self) -> dict:
        """The perceptual term and the trainable parameter counts."""
        return {"perceptual": self.config.perceptual_name,
                "trainable_parameters": self.pipeline.refiner.parameter_counts()}

    def announce(self) -> str | None:
        """Say that MS-SSIM stands in for DISTS when no weights are given."""
        if self.config.perceptual_name == "ms_ssim":
            return "perceptual term: MS-SSIM on T(H) (no VGG/DISTS weights given; DISTS not used)"
        return None

    def save_final(self, path: Path) -> None:
        """``GMODiffPipeline.save_pretrained``, keeping the ``init_pipeline``'s provenance (where
        its backbone was trained) so a re-bundled fine-tune still says it."""
        self.pipeline.refiner.eval()
        self.pipeline.save_pretrained(path)
        if self.config.init_pipeline:
            earlier = read_provenance(resolve_weights(self.config.init_pipeline))
            if earlier:
                write_provenance(path, earlier)


def train_refiner(config: RefinerTrainConfig, resume: bool = False,
                  train_dataset: Dataset | None = None, val_dataset: Dataset | None = None,
                  progress: bool = True) -> dict:
    """Run (or resume) stage 3; return a summary.

    Writes ``<out_dir>/log.jsonl``, ``<out_dir>/checkpoints/checkpoint-*.pt`` (trained weights
    only) and, at the end, ``<out_dir>/final`` (``GMODiffPipeline.save_pretrained``).
    """
    summary = run_stage(RefinerStage(config), resume, train_dataset, val_dataset, progress)
    return {**summary, "perceptual": config.perceptual_name}
