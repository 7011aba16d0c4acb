"""The pretrained diffusion backbone of the refiner: UNet, two VAEs and the DDPM scheduler.

Three sources, one set of classes (spec §4):

- ``folder``: a local diffusers folder laid out like ``stable-diffusion-2-1-base`` (``unet/``,
  ``vae/``, ``scheduler/``). Never a hub download: the folder is checked first and everything is
  loaded with ``local_files_only=True``.
- ``tiny``: the same diffusers classes at toy widths, randomly initialised from a seed. CPU
  trainable; latents are 32×32 at 256² crops. Used by tests, benchmarks and smoke training.
- ``sd21_random``: the real SD-2.1-base shapes with random weights, for shape tests and speed or
  memory measurements only (no download, no meaningful output).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from gmodiff.errors import BackboneError

if TYPE_CHECKING:  # diffusers is imported where models are built: reading configs stays light
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

BACKBONE_KINDS = ("tiny", "sd21_random", "folder")

VAE_SCALING_FACTOR = 0.18215
"""SD-2.1's latent scaling."""

SD21_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "prediction_type": "epsilon",
    "clip_sample": False,
    "steps_offset": 1,
}

SD21_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "attention_head_dim": (5, 10, 20, 20),
    "cross_attention_dim": 1024,
    "use_linear_projection": True,
    "norm_num_groups": 32,
}

SD21_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (128, 256, 512, 512),
    "layers_per_block": 2,
    "latent_channels": 4,
    "norm_num_groups": 32,
    "sample_size": 512,
    "scaling_factor": VAE_SCALING_FACTOR,
}

# Same block types as SD-2.1 (cross-attention down/up blocks, a cross-attention mid block, four
# VAE levels so the latent is H/8) at widths a CPU trains in seconds.
TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 32,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ("CrossAttnDownBlock2D", "DownBlock2D"),
    "up_block_types": ("UpBlock2D", "CrossAttnUpBlock2D"),
    "block_out_channels": (32, 64),
    "layers_per_block": 1,
    "attention_head_dim": (2, 4),
    "cross_attention_dim": 64,
    "use_linear_projection": True,
    "norm_num_groups": 8,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "block_out_channels": (16, 16, 32, 32),
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 256,
    "scaling_factor": VAE_SCALING_FACTOR,
}

MAX_VAE_WIDTH = 1024
"""Widest level a tiny VAE may have (SD-2.1's widest is 512): bounds what a config allocates."""

# What a backbone folder must hold: sub-folder → (config file, accepted weight-file stems).
_REQUIRED = {
    "unet": "config.json",
    "vae": "config.json",
    "scheduler": "scheduler_config.json",
}
_WEIGHT_SUFFIXES = (".safetensors", ".bin")


@dataclass
class BackboneConfig:
    """Where the backbone comes from: ``kind`` in tiny | sd21_random | folder (``path`` set)."""

    kind: str = "tiny"
    path: str | None = None
    seed: int = 0
    vae_widths: tuple[int, ...] | None = None
    """``tiny`` only: the VAE's four level widths instead of TINY_VAE_CONFIG's (16, 16, 32, 32).
    The VAE caps what the refiner can reconstruct, so the bundled prior uses a wider one."""

    def __post_init__(self) -> None:
        if not isinstance(self.kind, str) or not (self.path is None or isinstance(self.path, str)) \
                or not isinstance(self.seed, int) or isinstance(self.seed, bool) \
                or not 0 <= self.seed < 2**63:
            raise BackboneError(
                f"backbone config invalid (kind {self.kind!r}, seed {self.seed!r})", None,
                "kind is a name, path a folder name or null, seed a whole number ≥ 0")
        if self.kind not in BACKBONE_KINDS:
            raise BackboneError(
                f"unknown backbone kind {self.kind!r}", None, f"use one of {', '.join(BACKBONE_KINDS)}"
            )
        if self.kind == "folder" and not self.path:
            raise BackboneError("backbone kind 'folder' needs a path", None, "set `backbone` to a folder")
        if self.vae_widths is not None:
            groups = TINY_VAE_CONFIG["norm_num_groups"]
            if (self.kind != "tiny" or not isinstance(self.vae_widths, (list, tuple))
                    or len(self.vae_widths) != 4
                    or any(not isinstance(w, int) or isinstance(w, bool) or w <= 0 or w % groups
                           or w > MAX_VAE_WIDTH for w in self.vae_widths)):
                raise BackboneError(
                    f"vae_widths {self.vae_widths!r} invalid", None,
                    f"give 4 widths, multiples of {groups} up to {MAX_VAE_WIDTH}, with the tiny "
                    "backbone only",
                )
            self.vae_widths = tuple(int(w) for w in self.vae_widths)

    @classmethod
    def from_path(cls, path: str | Path) -> BackboneConfig:
        """Config for a local diffusers folder."""
        return cls(kind="folder", path=str(path))

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


@dataclass
class Backbone:
    """The loaded pieces: UNet, GM VAE, condition VAE (an independent copy) and scheduler."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    vae_cond: AutoencoderKL
    scheduler: DDPMScheduler
    config: BackboneConfig


def sd21_scheduler() -> DDPMScheduler:
    """The SD-2.1 training scheduler (epsilon, scaled-linear 0.00085..0.012, 1000 steps)."""
    from diffusers import DDPMScheduler

    return DDPMScheduler(**SD21_SCHEDULER_CONFIG)


def _random_backbone(unet_config: dict, vae_config: dict, config: BackboneConfig) -> Backbone:
    from diffusers import AutoencoderKL, UNet2DConditionModel

    # Seed only the construction so the global RNG state of the caller is left untouched.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        unet = UNet2DConditionModel(**unet_config)
        vae = AutoencoderKL(**vae_config)
    return Backbone(unet, vae, copy.deepcopy(vae), sd21_scheduler(), config)


def check_backbone_folder(path: str | Path) -> Path:
    """Raise BackboneError naming the first missing sub-folder or file of a diffusers folder."""
    root = Path(path)
    fix = (
        "point `backbone` at a local copy of stable-diffusion-2-1-base laid out by diffusers "
        "(unet/, vae/, scheduler/ with their config and weight files)"
    )
    if not root.is_dir():
        raise BackboneError("backbone folder does not exist", root, fix)
    for sub, config_name in _REQUIRED.items():
        folder = root / sub
        if not folder.is_dir():
            raise BackboneError(f"backbone folder has no {sub}/ sub-folder", root, fix)
        if not (folder / config_name).is_file():
            raise BackboneError(f"missing {sub}/{config_name}", root, fix)
        if sub != "scheduler":
            weights = [
                p for p in folder.iterdir()
                if p.name.startswith("diffusion_pytorch_model") and p.name.endswith(_WEIGHT_SUFFIXES)
            ]
            if not weights:
                raise BackboneError(
                    f"missing {sub}/diffusion_pytorch_model.safetensors (or .bin) weights", root, fix
                )
    return root


def _variant(folder: Path) -> str | None:
    names = {p.name for p in folder.iterdir()}
    if any(n in names for n in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")):
        return None
    for name in names:  # e.g. diffusion_pytorch_model.fp16.safetensors
        parts = name.split(".")
        if len(parts) == 3:
            return parts[1]
    return None


def _folder_backbone(config: BackboneConfig) -> Backbone:
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel

    root = check_backbone_folder(config.path)
    try:
        unet = UNet2DConditionModel.from_pretrained(
            root, subfolder="unet", local_files_only=True, variant=_variant(root / "unet")
        )
        vae = AutoencoderKL.from_pretrained(
            root, subfolder="vae", local_files_only=True, variant=_variant(root / "vae")
        )
        # The SD folder ships a PNDM config; the DDPM class reads the same betas from it.
        scheduler = DDPMScheduler.from_pretrained(root, subfolder="scheduler", local_files_only=True)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise BackboneError(
            f"could not load the backbone ({type(exc).__name__}: {exc})",
            root,
            "check the folder is a complete diffusers export of stable-diffusion-2-1-base",
        ) from exc
    unet.eval()
    vae.eval()
    return Backbone(unet, vae, copy.deepcopy(vae), scheduler, config)


def load_backbone(config: BackboneConfig | str | Path | None = None) -> Backbone:
    """Build the backbone from a config, the string ``tiny``/``sd21_random``, or a folder path."""
    if config is None:
        config = BackboneConfig()
    elif isinstance(config, (str, Path)):
        config = (
            BackboneConfig(kind=str(config)) if str(config) in ("tiny", "sd21_random")
            else BackboneConfig.from_path(config)
        )
    if config.kind == "tiny":
        vae_config = TINY_VAE_CONFIG if config.vae_widths is None else {
            **TINY_VAE_CONFIG, "block_out_channels": config.vae_widths}
        return _random_backbone(TINY_UNET_CONFIG, vae_config, config)
    if config.kind == "sd21_random":
        return _random_backbone(SD21_UNET_CONFIG, SD21_VAE_CONFIG, config)
    return _folder_backbone(config)


def save_backbone_folder(backbone: Backbone, path: str | Path) -> Path:
    """Write a backbone as a diffusers folder (unet/, vae/, scheduler/) ``load_backbone`` reads."""
    root = Path(path)
    root.mkdir(parents=True, exist_ok=True)
    backbone.unet.save_pretrained(root / "unet")
    backbone.vae.save_pretrained(root / "vae")
    backbone.scheduler.save_pretrained(root / "scheduler")
    return root
