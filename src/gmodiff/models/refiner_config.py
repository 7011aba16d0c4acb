"""The refiner's configuration and tile options: plain dataclasses, no torch or diffusers.

Split from :mod:`gmodiff.models.refiner` so a pipeline folder can be read, and a DaReg-only run
planned and run, without importing diffusers (about 4 s of start-up on two cores, issue 25).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from gmodiff.errors import ConfigError

UNET_ADAPTERS = ("default_encoder", "default_decoder", "default_others")
"""UNet adapter names: down blocks + conv_in, up blocks + conv_out, everything else (mid)."""
VAE_ADAPTERS = ("default_encoder", "default_decoder")
VAE_COND_ADAPTERS = ("default_encoder",)

MAX_LORA_RANK = 256
"""Largest accepted LoRA rank (the paper uses 16): bounds what a config can make us allocate."""
MAX_TOKEN_CHANNELS = 4096
"""Largest prior-token width (DaReg's widest level is bounded by the same number)."""
MAX_MASK_CHANNELS = 2048
"""Largest width of the mask branch's convs (the paper uses 256 and 1024)."""
MAX_LORA_ALPHA = 4096.0
NUM_TIMESTEPS = 1000
"""The DDPM schedule's length: the refinement timestep must lie in [0, 1000)."""
MAX_TARGET_NAMES = 20000
"""Most LoRA target-module names a config may list (SD-2.1 has a few hundred)."""
TARGET_GROUPS = ("unet_default_encoder", "unet_default_decoder", "unet_default_others",
                 "vae_default_encoder", "vae_default_decoder", "vae_cond_default_encoder")
"""Keys of ``RefinerConfig.target_modules``."""
MIN_LATENT_TILE = 16
"""Smallest latent tile (latent px) a user may ask for: below it the tile count, and the run
time, grow without bound (``--tile 1`` on 384×256 ran for minutes) while quality drops."""
MAX_TILE = 4096
MIN_VAE_TILE = 8
"""Smallest VAE tile (latent px) a saved pipeline may ask for."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_int(name: str, value, low: int, high: int) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise ConfigError(f"{name} {value!r} out of range", fix=f"use a whole number {low}..{high}")
    return value


def _refuse_unknown_keys(cls, data: Any, what: str, unknown_text: str) -> None:
    """A saved config must be a mapping of the dataclass's own field names (ConfigError else)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {'are' if what.endswith('s') else 'is'} not a mapping",
                          fix="re-save the pipeline")
    known = {f.name for f in fields(cls)}
    unknown = sorted(map(str, set(data) - known))
    if unknown:
        raise ConfigError(f"{unknown_text} {unknown[:5]}", fix=f"use only {sorted(known)}")
@dataclass
class RefinerConfig:
    """Sizes and LoRA settings of the refiner (the backbone's own sizes come from its config)."""

    rank_unet: int = 16
    rank_vae: int = 16
    rank_vae_cond: int = 16
    lora_alpha: float = 8.0
    """Not stored by the reference checkpoints: 8 (scale 0.5 at rank 16)."""
    timestep: int = 499
    token_channels: int = 1024
    """Width of DaReg's prior tokens c_L."""
    mask_channels: tuple[int, int] = (256, 1024)
    """Widths of the two strided convs of the mask branch of the prior projection."""
    sample_latents: bool = False
    """Sample the VAE posterior (reference training) instead of its mode (deterministic)."""
    seed: int = 0
    """Seed of the new conv_in channels and of the LoRA A matrices."""
    target_modules: dict[str, list[str]] | None = field(default=None)
    """Explicit LoRA target lists (official checkpoints); None = derive from module names."""
    residual_gate: bool = False
    """Start at DaReg: output ``G + gate ⊙ (decoded − G)`` with a zero-initialised, DA-mask-aware
    gate (:class:`ResidualGate`), so the untrained refiner returns DaReg's gain map exactly.
    False (default) is the spec's output and the reference checkpoints' layout."""

    def __post_init__(self) -> None:
        # Bounds far above the paper's sizes, checked before anything is built, so a corrupt or
        # hostile gmodiff_pipeline.json cannot make loading allocate gigabytes (as DaRegConfig).
        for name in ("rank_unet", "rank_vae", "rank_vae_cond"):
            _check_int(name, getattr(self, name), 1, MAX_LORA_RANK)
        alpha = self.lora_alpha
        if (not isinstance(alpha, (int, float)) or isinstance(alpha, bool)
                or not math.isfinite(alpha) or not 0 < alpha <= MAX_LORA_ALPHA):
            raise ConfigError(f"lora_alpha {alpha!r} out of range",
                              fix=f"use a number above 0 and at most {MAX_LORA_ALPHA:g}")
        self.lora_alpha = float(alpha)
        _check_int("timestep", self.timestep, 0, NUM_TIMESTEPS - 1)
        _check_int("token_channels", self.token_channels, 1, MAX_TOKEN_CHANNELS)
        widths = self.mask_channels
        if not isinstance(widths, (tuple, list)) or len(widths) != 2:
            raise ConfigError(f"mask_channels {widths!r} invalid", fix="give two widths")
        self.mask_channels = tuple(_check_int("mask_channels", w, 1, MAX_MASK_CHANNELS)
                                   for w in widths)
        if not isinstance(self.sample_latents, bool):
            raise ConfigError(f"sample_latents {self.sample_latents!r} invalid", fix="use true or false")
        _check_int("seed", self.seed, 0, 2**63 - 1)
        self._check_targets()

    def _check_targets(self) -> None:
        targets = self.target_modules
        if targets is None:
            return
        fix = f"map {', '.join(TARGET_GROUPS)} to lists of module names, or leave it null"
        if not isinstance(targets, dict) or set(targets) - set(TARGET_GROUPS):
            raise ConfigError("target_modules invalid", fix=fix)
        total = 0
        for names in targets.values():
            if not isinstance(names, list) or not all(
                    isinstance(n, str) and 0 < len(n) <= 512 for n in names):
                raise ConfigError("target_modules invalid", fix=fix)
            total += len(names)
        if total > MAX_TARGET_NAMES:
            raise ConfigError(f"target_modules lists {total} names", fix=f"at most {MAX_TARGET_NAMES}")

    @classmethod
    def tiny(cls, token_channels: int = 64) -> RefinerConfig:
        """Toy widths for the tiny backbone (same code path)."""
        return cls(rank_unet=4, rank_vae=4, rank_vae_cond=4, token_channels=token_channels,
                   mask_channels=(16, 32))

    @classmethod
    def paper(cls) -> RefinerConfig:
        """The SD-2.1 / paper sizes."""
        return cls()

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        data = asdict(self)
        data["mask_channels"] = list(self.mask_channels)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RefinerConfig:
        """Inverse of :meth:`to_dict`; unknown keys and out-of-range values are a ConfigError."""
        _refuse_unknown_keys(cls, data, "refiner config", "unknown refiner config keys")
        data = dict(data)
        if isinstance(data.get("mask_channels"), list):
            data["mask_channels"] = tuple(data["mask_channels"])
        return cls(**data)


@dataclass
class TileOptions:
    """Latent tiling of the UNet (latent px) and optional VAE tiling (latent px too)."""

    latent_tile: int = 96
    latent_overlap: int = 32
    vae_tile: int | None = None
    vae_overlap: int = 8
    token_margin: int | None = None
    """A UNet tile cross-attends to the prior tokens within this many token cells (32 px) of
    itself; None: to all of the image's tokens (the untiled model's view)."""

    def __post_init__(self) -> None:
        # Programmatic callers (tests) may use tiny tiles; user-facing minimums are
        # MIN_LATENT_TILE / MIN_VAE_TILE, applied by check_user_tiles.
        _check_int("latent_tile", self.latent_tile, 1, MAX_TILE)
        _check_int("latent_overlap", self.latent_overlap, 0, self.latent_tile - 1)
        if self.vae_tile is not None:
            _check_int("vae_tile", self.vae_tile, 1, MAX_TILE)
            _check_int("vae_overlap", self.vae_overlap, 0, self.vae_tile - 1)
        else:
            _check_int("vae_overlap", self.vae_overlap, 0, MAX_TILE)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TileOptions:
        """Tile options from saved JSON, refusing unknown keys and tiles below the minimums."""
        _refuse_unknown_keys(cls, data, "tile options", "unknown tile options")
        options = cls(**data)
        options.check_user_tiles()
        return options

    def check_user_tiles(self) -> TileOptions:
        """Refuse tiles smaller than ``MIN_LATENT_TILE`` / ``MIN_VAE_TILE``."""
        if self.latent_tile < MIN_LATENT_TILE:
            raise ConfigError(f"latent_tile {self.latent_tile} is below the minimum",
                              fix=f"use {MIN_LATENT_TILE} or more latent px")
        if self.vae_tile is not None and self.vae_tile < MIN_VAE_TILE:
            raise ConfigError(f"vae_tile {self.vae_tile} is below the minimum",
                              fix=f"use {MIN_VAE_TILE} or more latent px, or null")
        return self
