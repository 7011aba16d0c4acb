"""DaReg training, "dual learning" (spec §3), driven by accelerate (CPU, one or many GPUs).

Stage 1 trains the backbone and GM head: ``L1(GM) + L1(T(H))`` with T the μ=5000 tone curve and
H decoded from the predicted GM. Stage 2 freezes both and trains only the DA-mask head with BCE
against ``1[0.299|ΔR| + 0.587|ΔG| + 0.114|ΔB| ≥ 0.02]``, Δ the linear-HDR error of the stage-1
prediction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from gmodiff.errors import CheckpointError, ConfigError
from gmodiff.gainmap import decode_gain_map, tonemap
from gmodiff.models.dareg import DaReg, DaRegConfig
from gmodiff.models.checkpoints import state_dict_differences
from gmodiff.train.checkpointing import load_payload, resolve_checkpoint_file
from gmodiff.train.data import TrainDataConfig
from gmodiff.train.loop import RunConfig, Stage, load_yaml_config, run_stage

LUMA_WEIGHTS = (0.299, 0.587, 0.114)


@dataclass
class DaRegTrainConfig(TrainDataConfig, RunConfig):
    """One DaReg training run (a YAML file under ``configs/``). Paths are relative to the cwd.

    The data fields (train_scenes, simulated_*, val_*, crop_size, seed) come from
    ``TrainDataConfig``, batching and logging/checkpoint cadence from ``RunConfig``."""

    stage: int = 1
    model: str = "tiny"
    """Size preset: "tiny" or "paper"."""
    model_overrides: dict = field(default_factory=dict)
    init_weights: str | None = None
    """Stage 2: the stage-1 weights (a save_pretrained folder, a checkpoint-*.pt, or a .pth)."""
    # -- optimisation --
    lr: float = 2e-4
    lr_step: int = 20000
    """Halve (× lr_gamma) the learning rate every this many steps."""
    lr_gamma: float = 0.5
    max_steps: int = 1000
    merge_lr_scale: float = 1.0
    """Learning-rate factor for the merge stem and gate of a ``merge_input`` DaReg: new layers
    learn where to trust the classical merge faster than the pretrained body is nudged."""
    mask_threshold: float = 0.02
    out_dir: str = "runs/dareg"

    def __post_init__(self) -> None:
        if not 0 < self.merge_lr_scale <= 1000:
            raise ConfigError(f"merge_lr_scale {self.merge_lr_scale} out of range", fix="use 1..1000")
        if self.stage not in (1, 2):
            raise ConfigError(f"stage must be 1 or 2, got {self.stage}")
        if self.model not in ("tiny", "paper"):
            raise ConfigError(f"model preset {self.model!r}", fix='use "tiny" or "paper"')
        if self.stage == 2 and not self.init_weights:
            raise ConfigError("stage 2 needs init_weights (the stage-1 result)",
                              fix="set init_weights: runs/<stage-1 run>/final")

    def model_config(self) -> DaRegConfig:
        """The network config: preset + overrides, mask head only in stage 2."""
        preset = DaRegConfig.tiny if self.model == "tiny" else DaRegConfig.paper
        overrides = dict(self.model_overrides)
        overrides["mask_head"] = self.stage == 2
        # The data config owns the input layout; the network must expect what the data gives.
        overrides["canonical_inputs"] = self.canonical_inputs
        overrides["merge_input"] = self.merge_input
        return preset(**overrides)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> DaRegTrainConfig:
        """Load from YAML; non-None ``overrides`` (e.g. from CLI flags) win."""
        return load_yaml_config(cls, path, **overrides)


# -- losses ------------------------------------------------------------------------------------


def mask_target(hdr_pred: torch.Tensor, hdr_gt: torch.Tensor, threshold: float = 0.02) -> torch.Tensor:
    """Stage-2 target: 1 where the luminance-weighted absolute linear-HDR error is ≥ threshold."""
    weights = torch.tensor(LUMA_WEIGHTS, dtype=hdr_pred.dtype, device=hdr_pred.device)
    error = (weights[None, :, None, None] * (hdr_pred - hdr_gt).abs()).sum(1, keepdim=True)
    return (error >= threshold).to(hdr_pred.dtype)


def stage1_loss(gain_map: torch.Tensor, batch: dict) -> tuple[torch.Tensor, dict]:
    """L1 on the gain map plus L1 on the μ-law tone-mapped HDR decoded from it."""
    gm_loss = F.l1_loss(gain_map, batch["gt_gain_map"])
    hdr = decode_gain_map(gain_map, batch["ldr_ref"])
    hdr_loss = F.l1_loss(tonemap(hdr), tonemap(batch["gt_hdr"]))
    return gm_loss + hdr_loss, {"l1_gm": gm_loss.item(), "l1_mu": hdr_loss.item()}


def stage2_loss(gain_map: torch.Tensor, mask: torch.Tensor, batch: dict, threshold: float):
    """BCE of the DA mask against the error of the (frozen) stage-1 prediction."""
    with torch.no_grad():
        target = mask_target(decode_gain_map(gain_map.detach(), batch["ldr_ref"]), batch["gt_hdr"], threshold)
    # BCE in float32 with clamping: autocast-safe and no log(0).
    loss = F.binary_cross_entropy(mask.float().clamp(1e-6, 1 - 1e-6), target.float())
    return loss, {"bce": loss.item(), "target_fraction": target.mean().item()}


# -- model set-up ------------------------------------------------------------------------------


def _read_weights(path: Path) -> tuple[dict, dict | None]:
    """State dict and (when known) the DaReg config stored with some weights."""
    from gmodiff.models.checkpoints import unwrap_state_dict

    if path.is_dir() and (path / "model.safetensors").is_file():
        from safetensors.torch import load_file

        config = json.loads((path / "config.json").read_text()) if (path / "config.json").is_file() else None
        return load_file(str(path / "model.safetensors")), config
    path = resolve_checkpoint_file(path, "point init_weights at a stage-1 'final' folder or checkpoint")
    try:
        payload = load_payload(path)
    except Exception as exc:  # corrupt, foreign, or holding pickled code
        raise CheckpointError(f"cannot read weights ({type(exc).__name__})", path,
                              "point init_weights at a stage-1 'final' folder or checkpoint") from exc
    if isinstance(payload, dict) and "model" in payload and "step" in payload:
        return payload["model"], payload.get("extra", {}).get("model_config")
    return unwrap_state_dict(payload), None


def load_backbone_weights(model: DaReg, path: str | Path) -> None:
    """Load stage-1 weights into a model with a mask head; only mask-head keys may be absent."""
    path = Path(path)
    state, _ = _read_weights(path)
    expected = model.state_dict()
    if not model.config.mask_head:  # stage-1 warm start from a bundle that has a mask head
        state = {k: v for k, v in state.items()
                 if not k.startswith(("encoder_adapt_convs.", "seg_conv_layers."))}
    head = {k for k in expected if k.startswith(("encoder_adapt_convs.", "seg_conv_layers."))}
    # A merge-input DaReg may start from a plain one: its merge stem and gate start at zero.
    head |= {k for k in expected if k.startswith(("intro_merge.", "merge_gate."))}
    missing, unexpected, mismatched = state_dict_differences(expected, state, optional=head)
    if missing or unexpected or mismatched:
        raise CheckpointError(
            f"stage-1 weights do not fit (missing {missing[:4]}, unexpected {unexpected[:4]}, "
            f"shape mismatch {mismatched[:4]})", path, "use the same model preset as stage 1")
    model.load_state_dict(state, strict=False)


def build_model(config: DaRegTrainConfig) -> DaReg:
    """The network for this stage, stage-1 weights loaded and backbone frozen in stage 2."""
    model_config = config.model_config()
    if config.stage == 2:
        _, stored = _read_weights(Path(config.init_weights))
        if stored:  # trust the stage-1 run's architecture over the preset
            model_config = DaRegConfig.from_dict({**stored, "mask_head": True})
            if (model_config.canonical_inputs, model_config.merge_input) != (
                    config.canonical_inputs, config.merge_input):
                raise ConfigError("canonical_inputs / merge_input differ from the stage-1 weights",
                                  fix="set them as the stage-1 run did")
    model = DaReg(model_config)
    if config.stage == 2:
        load_backbone_weights(model, config.init_weights)
        model.freeze_backbone()
    elif config.init_weights:  # stage-1 warm start (fine-tuning on new data), fresh optimizer
        load_backbone_weights(model, config.init_weights)
    return model


def parameter_groups(model: DaReg, config: DaRegTrainConfig) -> list[dict]:
    """Trainable parameters for the optimizer: the merge stem and gate at ``merge_lr_scale``×."""
    merge, rest = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (merge if name.startswith(("intro_merge.", "merge_gate.")) else rest).append(param)
    groups = [{"params": rest, "lr": config.lr}] if rest else []
    if merge:
        groups.append({"params": merge, "lr": config.lr * config.merge_lr_scale})
    return groups


# -- validation --------------------------------------------------------------------------------


@torch.no_grad()
def validate(model: DaReg, dataset: Dataset, device, stage: int, threshold: float) -> dict:
    """Mean PSNR-μ / PSNR-l over full validation scenes (plus mask BCE/accuracy in stage 2)."""
    from gmodiff.metrics import psnr_l, psnr_mu

    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for index in range(len(dataset)):
        item = dataset[index]
        batch = {k: v[None].to(device) for k, v in item.items() if isinstance(v, torch.Tensor)}
        out = model(batch["inputs"])
        hdr = decode_gain_map(out.gain_map, batch["ldr_ref"])
        pred = hdr[0].permute(1, 2, 0).float().cpu().numpy()
        gt = batch["gt_hdr"][0].permute(1, 2, 0).float().cpu().numpy()
        values = {"psnr_mu": psnr_mu(pred, gt), "psnr_l": psnr_l(pred, gt)}
        if stage == 2 and out.mask is not None:
            target = mask_target(hdr, batch["gt_hdr"], threshold)
            values["mask_bce"] = F.binary_cross_entropy(out.mask.clamp(1e-6, 1 - 1e-6), target).item()
            values["mask_accuracy"] = ((out.mask >= 0.5).float() == target).float().mean().item()
        for key, value in values.items():
            totals[key] = totals.get(key, 0.0) + float(value)
    model.train(was_training)
    return {key: value / max(len(dataset), 1) for key, value in totals.items()}


# -- the loop ----------------------------------------------------------------------------------


class DaRegStage(Stage):
    """Stage 1 (backbone + GM head) or stage 2 (DA-mask head) of DaReg for :func:`run_stage`."""

    def __init__(self, config: DaRegTrainConfig):
        self.config = config
        self.description = f"DaReg stage {config.stage}"

    def build(self, device: torch.device) -> None:
        """The network (stage-1 weights loaded in stage 2), Adam and a step decay."""
        self.module = build_model(self.config)
        self.optimizer = torch.optim.Adam(parameter_groups(self.module, self.config), lr=self.config.lr)
        # Not passed to accelerator.prepare: its wrapper steps the scheduler once per process.
        self.scheduler = torch.optim.lr_scheduler.StepLR(self.optimizer, step_size=self.config.lr_step,
                                                         gamma=self.config.lr_gamma)

    def prepare(self, accelerator) -> None:
        """DDP-wrap the network; keep the unwrapped one for validation and checkpoints."""
        super().prepare(accelerator)
        self.module = accelerator.unwrap_model(self.train_module)

    def train_step(self, batch: dict, step: int, accelerator) -> tuple[torch.Tensor, dict]:
        """Stage-1 or stage-2 loss on the batch, one Adam step."""
        out = self.train_module(batch["inputs"])
        if self.config.stage == 1:
            loss, parts = stage1_loss(out.gain_map, batch)
        else:
            loss, parts = stage2_loss(out.gain_map, out.mask, batch, self.config.mask_threshold)
        self.optimizer.zero_grad(set_to_none=True)
        accelerator.backward(loss)
        self.optimizer.step()
        return loss, parts

    def validate(self, dataset: Dataset, step: int, device: torch.device) -> dict:
        """PSNRs over full scenes (and mask BCE/accuracy in stage 2)."""
        return validate(self.module, dataset, device, self.config.stage, self.config.mask_threshold)

    def checkpoint_extra(self, step: int) -> dict:
        """The architecture, so stage 2 can rebuild the stage-1 network from a checkpoint."""
        return {"model_config": self.module.config.to_dict()}

    def save_final(self, path: Path) -> None:
        """``DaReg.save_pretrained``."""
        self.module.save_pretrained(path)


def train_dareg(
    config: DaRegTrainConfig,
    resume: bool = False,
    train_dataset: Dataset | None = None,
    val_dataset: Dataset | None = None,
    progress: bool = True,
) -> dict:
    """Run (or resume) one training stage; return a summary (steps, last loss, last validation).

    Writes ``<out_dir>/log.jsonl``, ``<out_dir>/checkpoints/checkpoint-*.pt`` and, at the end,
    ``<out_dir>/final`` (``DaReg.save_pretrained``). Datasets default to those the config names.
    """
    return run_stage(DaRegStage(config), resume, train_dataset, val_dataset, progress)
