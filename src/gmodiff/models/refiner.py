"""Stage 3 of GMODiff: one-step diffusion refinement of DaReg's gain map (spec §4).

``GMRefiner`` composes diffusers modules:

- GM VAE (``vae``): encodes the signed gain map; LoRA on encoder and decoder; its decoder is a
  :class:`DADecoder` that adds gated 1×1 skips from the encoder's down-block inputs.
- condition VAE (``vae_cond``): an independent copy whose LoRA-tuned encoder encodes the short
  exposure.
- UNet: ``conv_in`` widened 4 → 8 for ``concat(z_G, z_C)`` and three LoRA adapters.
- ``proj``: :class:`PriorProjection` turning (DA mask, c_L) into cross-attention tokens.

One step: ``x_t = z_G`` at ``t = 499`` (no noise), the UNet predicts ε and the refined latent is
the scheduler's x0 estimate. Module and adapter names follow the reference code so its released
``gmodiff.pkl`` loads key for key (``gmodiff.models.official``).

Option (not in the spec, off by default): ``RefinerConfig.residual_gate`` adds a
:class:`ResidualGate` after the DA decoder, ``out = G + gate(mask, D − G, G) ⊙ (D − G)`` with G
DaReg's gain map and D the decoded one; the gate's last layer is zero, so an untrained refiner
returns DaReg's gain map exactly and training can only move away from it where that helps.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable

import torch
from diffusers import AutoencoderKL
from diffusers.models.autoencoders.vae import Decoder
from peft import LoraConfig
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from gmodiff.models.backbone import Backbone
from gmodiff.models.refiner_config import (  # noqa: F401 - also importable from here
    MIN_LATENT_TILE, UNET_ADAPTERS, VAE_ADAPTERS, RefinerConfig, TileOptions)

# Leaf names LoRA is put on (weights only; norms and biases never).
_UNET_LORA_LEAVES = (
    "to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2",
    "conv1", "conv2", "conv_shortcut", "conv", "conv_in", "conv_out",
)
_VAE_LORA_LEAVES = (
    "conv_in", "conv1", "conv2", "conv_shortcut", "conv", "conv_out",
    "to_q", "to_k", "to_v", "to_out.0",
)


class PriorProjection(nn.Module):
    """DA mask + prior tokens c_L → cross-attention context (B, HW/1024, context_dim)."""

    def __init__(self, token_channels: int, context_dim: int, mask_channels=(256, 1024)):
        super().__init__()
        mid, out = mask_channels
        self.mask_encoder = nn.Sequential(
            nn.PixelUnshuffle(8),
            nn.Conv2d(64, mid, 3, stride=2, padding=1),
            nn.BatchNorm2d(mid),
            nn.ReLU(),
            nn.Conv2d(mid, out, 3, stride=2, padding=1),
            nn.BatchNorm2d(out),
            nn.ReLU(),
        )
        self.mlp = nn.Sequential(
            nn.Linear(out + token_channels, context_dim),
            nn.ReLU(),
            nn.Linear(context_dim, context_dim),
            nn.ReLU(),
        )

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """tokens (B, N, C_L), mask (B, 1, H, W) with N = (H/32)(W/32)."""
        mask_tokens = self.mask_encoder(mask.to(self.mlp[0].weight.dtype)).flatten(2).transpose(1, 2)
        if mask_tokens.shape[1] != tokens.shape[1]:
            raise ValueError(
                f"mask gives {mask_tokens.shape[1]} tokens but c_L has {tokens.shape[1]}; "
                "the image must be padded to a multiple of 32"
            )
        return self.mlp(torch.cat([mask_tokens, tokens.to(mask_tokens.dtype)], dim=-1))


class ResidualGate(nn.Module):
    """Per-pixel blend from DaReg's gain map G towards the decoded one D, learnt from zero.

    ``gate = conv1×1(ReLU(conv3×3([mask, D − G, G])))``; the 1×1 conv starts at zero (weights and
    bias), so ``G + gate ⊙ (D − G)`` is G exactly at initialisation. Its gradient is not zero
    (it is ``(D − G)`` times the features), so the first step opens the gate and the rest of the
    refiner starts learning from the next one, as a zero-initialised ControlNet branch does.
    """

    def __init__(self, hidden: int = 16):
        super().__init__()
        self.conv_in = nn.Conv2d(1 + 3 + 3, hidden, 3, padding=1)
        self.conv_out = nn.Conv2d(hidden, 3, 1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    band_rows: int = 256
    """Rows per band when run without gradients: at 12 MP the whole-image hidden layer alone
    would take 1.5 GB; bands of 256 rows bring it under 70 MB."""

    def forward(self, coarse: torch.Tensor, decoded: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """coarse G, decoded D (B,3,H,W) signed; mask (B,1,H,W) → blended signed GM (unclamped)."""
        delta = decoded.to(coarse.dtype) - coarse
        height = coarse.shape[-2]
        if torch.is_grad_enabled() or height <= self.band_rows:
            return coarse + self._gate(coarse, delta, mask, 0, height) * delta
        out = torch.empty_like(coarse)
        for y0 in range(0, height, self.band_rows):
            y1 = min(y0 + self.band_rows, height)
            out[:, :, y0:y1] = coarse[:, :, y0:y1] + self._gate(coarse, delta, mask, y0, y1) * delta[:, :, y0:y1]
        return out

    def _gate(self, coarse: torch.Tensor, delta: torch.Tensor, mask: torch.Tensor,
              y0: int, y1: int) -> torch.Tensor:
        """The gate for rows y0:y1, from those rows and one more on each side (the 3×3 conv's
        reach), so bands give the whole-image result; in the caller's precision, so that a zero
        gate returns G bit for bit."""
        dtype = self.conv_out.weight.dtype
        top, bottom = max(y0 - 1, 0), min(y1 + 1, coarse.shape[-2])
        rows = slice(top, bottom)
        features = torch.cat([mask[:, :, rows].to(dtype), delta[:, :, rows].to(dtype),
                              coarse[:, :, rows].to(dtype)], dim=1)
        gate = self.conv_out(torch.relu(self.conv_in(features)))
        return gate[:, :, y0 - top:y0 - top + (y1 - y0)].to(coarse.dtype)


class GatedSkip(nn.Module):
    """``conv1×1(encoder act) ⊙ sigmoid(MLP(mean over tokens of the prior))``."""

    def __init__(self, in_channels: int, out_channels: int, context_dim: int, init: float = 1e-5):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.mlp = nn.Sequential(
            nn.Linear(context_dim, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels)
        )
        # Near-zero skips: training starts from the plain pretrained decoder.
        nn.init.constant_(self.conv1.weight, init)

    def forward(self, activation: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """activation (B, C, h, w), prior (B, N, D) → (B, out, h, w)."""
        gate = torch.sigmoid(self.mlp(prior.mean(dim=1)))
        return self.conv1(activation) * gate[:, :, None, None]


class DADecoder(Decoder):
    """The VAE decoder plus gated skips added before each up-block (``skip_conv_1..n``)."""

    def __init__(self, *, skip_in_channels: list[int], skip_out_channels: list[int],
                 context_dim: int, **decoder_kwargs):
        super().__init__(**decoder_kwargs)
        for k, (cin, cout) in enumerate(zip(skip_in_channels, skip_out_channels, strict=True), 1):
            self.add_module(f"skip_conv_{k}", GatedSkip(cin, cout, context_dim))
        self.num_skips = len(skip_in_channels)

    @classmethod
    def from_vae(cls, vae: AutoencoderKL, context_dim: int) -> DADecoder:
        """A DA decoder with the weights of ``vae.decoder`` and skips sized from ``vae.config``."""
        cfg = vae.config
        channels = list(cfg.block_out_channels)
        # Encoder down-block k gets channels[k-1] (conv_in's width for k=0); decoder up-block k
        # gets the reversed widths shifted by one. Skip k pairs up-block k with down-block n-1-k.
        down_inputs = [channels[0]] + channels[:-1]
        reversed_channels = channels[::-1]
        up_inputs = [reversed_channels[0]] + reversed_channels[:-1]
        decoder = cls(
            skip_in_channels=down_inputs[::-1],
            skip_out_channels=up_inputs,
            context_dim=context_dim,
            in_channels=cfg.latent_channels,
            out_channels=cfg.out_channels,
            up_block_types=tuple(cfg.up_block_types),
            block_out_channels=tuple(cfg.block_out_channels),
            layers_per_block=cfg.layers_per_block,
            norm_num_groups=cfg.norm_num_groups,
            act_fn=cfg.act_fn,
            mid_block_add_attention=cfg.get("mid_block_add_attention", True),
        )
        missing, unexpected = decoder.load_state_dict(vae.decoder.state_dict(), strict=False)
        if unexpected or any(not k.startswith("skip_conv_") for k in missing):
            raise RuntimeError(f"decoder layout mismatch: missing {missing}, unexpected {unexpected}")
        param = next(vae.decoder.parameters())
        return decoder.to(device=param.device, dtype=param.dtype)

    def skip_blocks(self) -> list[GatedSkip]:
        """The gated skips, in up-block order."""
        return [getattr(self, f"skip_conv_{k}") for k in range(1, self.num_skips + 1)]

    def forward(self, sample: torch.Tensor, latent_embeds: torch.Tensor | None = None,
                skips: list[torch.Tensor] | None = None,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """Decode; with ``skips`` (encoder down-block inputs, shallow → deep) and ``prior``."""
        sample = self.conv_in(sample)
        upscale_dtype = next(iter(self.up_blocks.parameters())).dtype
        sample = self.mid_block(sample, latent_embeds).to(upscale_dtype)
        for k, up_block in enumerate(self.up_blocks):
            if skips is not None:
                sample = sample + self.skip_blocks()[k](skips[::-1][k], prior)
            sample = up_block(sample, latent_embeds)
        sample = self.conv_norm_out(sample) if latent_embeds is None else self.conv_norm_out(
            sample, latent_embeds)
        return self.conv_out(self.conv_act(sample))


def _lora_targets(model: nn.Module, leaves: tuple[str, ...], keep: Callable[[str], bool]) -> list[str]:
    """Full names of Conv2d/Linear modules whose name ends in one of ``leaves``."""
    names = []
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or not keep(name):
            continue
        if any(name == leaf or name.endswith("." + leaf) for leaf in leaves):
            names.append(name)
    return names


def unet_lora_targets(unet: nn.Module) -> dict[str, list[str]]:
    """The three UNet LoRA groups: down blocks + conv_in, up blocks + conv_out, the rest."""
    all_names = _lora_targets(unet, _UNET_LORA_LEAVES, lambda n: "time_emb" not in n)
    groups: dict[str, list[str]] = {a: [] for a in UNET_ADAPTERS}
    for name in all_names:
        if name.startswith("down_blocks") or name == "conv_in":
            groups["default_encoder"].append(name)
        elif name.startswith("up_blocks") or name == "conv_out":
            groups["default_decoder"].append(name)
        else:
            groups["default_others"].append(name)
    return groups


def vae_encoder_lora_targets(vae: nn.Module) -> list[str]:
    """GM/condition VAE encoder LoRA targets (encoder convs and attention, plus quant_conv)."""
    names = _lora_targets(vae, _VAE_LORA_LEAVES, lambda n: n.startswith("encoder."))
    if isinstance(getattr(vae, "quant_conv", None), nn.Conv2d):
        names.append("quant_conv")
    return names


def vae_decoder_lora_targets(vae: nn.Module) -> list[str]:
    """GM VAE decoder LoRA targets: all decoder convs and attention, and the DA skip blocks."""
    names = _lora_targets(vae, _VAE_LORA_LEAVES, lambda n: n.startswith("decoder.") and "skip_conv_" not in n)
    skips = _lora_targets(vae, ("conv1", "mlp.0", "mlp.2"), lambda n: "skip_conv_" in n)
    return names + skips


def widen_conv_in(unet: nn.Module, extra_channels: int, generator: torch.Generator) -> None:
    """Widen ``unet.conv_in`` by ``extra_channels`` inputs: old weights copied, new ones N(0,1)·std."""
    old = unet.conv_in
    new = nn.Conv2d(old.in_channels + extra_channels, old.out_channels, old.kernel_size,
                    stride=old.stride, padding=old.padding, bias=old.bias is not None)
    with torch.no_grad():
        new.weight[:, : old.in_channels] = old.weight
        noise = torch.randn(new.weight[:, old.in_channels:].shape, generator=generator)
        new.weight[:, old.in_channels:] = noise.to(old.weight) * old.weight.std()
        if old.bias is not None:
            new.bias.copy_(old.bias)
    unet.conv_in = new.to(device=old.weight.device, dtype=old.weight.dtype)
    unet.register_to_config(in_channels=new.in_channels)


def _add_lora(model, targets: dict[str, list[str]], ranks: dict[str, int], alpha: float) -> None:
    for adapter, modules in targets.items():
        if not modules:
            continue
        with warnings.catch_warnings():
            # Several adapters on one model is the design, not an accident.
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            model.add_adapter(
                LoraConfig(r=ranks[adapter], lora_alpha=alpha, init_lora_weights="gaussian",
                           target_modules=list(modules)),
                adapter_name=adapter,
            )
    model.set_adapter([a for a, m in targets.items() if m])


def encode_with_skips(vae: AutoencoderKL, image: torch.Tensor):
    """Run the VAE encoder, keeping each down-block's input; returns (posterior params, skips)."""
    encoder = vae.encoder
    sample = encoder.conv_in(image)
    skips = []
    for down_block in encoder.down_blocks:
        skips.append(sample)
        sample = down_block(sample)
    sample = encoder.mid_block(sample)
    sample = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(sample)))
    if vae.quant_conv is not None:
        sample = vae.quant_conv(sample)
    return sample, skips


def local_tokens(context: torch.Tensor, latent_size: tuple[int, int], box: tuple[int, int, int, int],
                 margin: int) -> torch.Tensor:
    """The prior tokens (B, N, D) of the cells within ``margin`` cells of a latent ``box``.

    Tokens lie row-major on the padded image's 32-px grid, i.e. one per 4×4 latent px."""
    rows, cols = latent_size[0] // 4, latent_size[1] // 4
    if context.shape[1] != rows * cols:
        return context  # not on this latent's grid (a caller's own context): use all of it
    y0, y1, x0, x1 = box
    top, bottom = max(0, y0 // 4 - margin), min(rows, -(-y1 // 4) + margin)
    left, right = max(0, x0 // 4 - margin), min(cols, -(-x1 // 4) + margin)
    if (top, bottom, left, right) == (0, rows, 0, cols):
        return context
    grid = context.reshape(context.shape[0], rows, cols, context.shape[2])
    return grid[:, top:bottom, left:right].reshape(context.shape[0], -1, context.shape[2])


def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    if length <= tile:
        return [0]
    stride = max(tile - overlap, 1)
    starts = list(range(0, length - tile, stride))
    return starts + [length - tile]


def gaussian_weights(height: int, width: int, sigma: float = 0.1) -> torch.Tensor:
    """Separable Gaussian blending weights for an h×w tile (σ = ``sigma``·size)."""
    def axis(n: int) -> torch.Tensor:
        x = torch.arange(n, dtype=torch.float64)
        mid = (n - 1) / 2
        return torch.exp(-0.5 * ((x - mid) / (sigma * n)) ** 2)
    return (axis(height)[:, None] * axis(width)[None, :]).float()


def blend_tiles(height: int, width: int, tile: int, overlap: int, scale: float,
                fn: Callable[[int, int, int, int], torch.Tensor],
                on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
    """Run ``fn(y0, y1, x0, x1)`` on overlapping tiles of an h×w grid and Gaussian-blend the outputs.

    ``fn`` returns a (B, C, (y1-y0)·scale, (x1-x0)·scale) tensor for its tile; ``on_tile(done,
    total)`` is called after each tile (progress).
    """
    out = weight_sum = None
    ys, xs = _tile_starts(height, tile, overlap), _tile_starts(width, tile, overlap)
    done = 0
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile, height), min(x0 + tile, width)
            piece = fn(y0, y1, x0, x1)
            if out is None:
                b, c = piece.shape[:2]
                full = (b, c, round(height * scale), round(width * scale))
                out = torch.zeros(full, device=piece.device, dtype=torch.float32)
                weight_sum = torch.zeros(full[2:], device=piece.device, dtype=torch.float32)
            oy0, oy1 = round(y0 * scale), round(y1 * scale)
            ox0, ox1 = round(x0 * scale), round(x1 * scale)
            w = gaussian_weights(oy1 - oy0, ox1 - ox0).to(piece.device)
            out[:, :, oy0:oy1, ox0:ox1] += piece.float() * w
            weight_sum[oy0:oy1, ox0:ox1] += w
            done += 1
            if on_tile is not None:
                on_tile(done, len(ys) * len(xs))
    return (out / weight_sum).to(piece.dtype)


class GMRefiner(nn.Module):
    """GM VAE + condition VAE + 8-channel UNet with LoRA + prior projection + DA decoder."""

    on_tile: Callable[[int, int], None] | None = None
    """Called as ``on_tile(done, total)`` after each UNet/VAE tile (progress reports)."""
    on_phase: Callable[[str], None] | None = None
    """Called with a name (``encoding the gain map``, ``UNet``, ...) before each tiled pass."""

    def _phase(self, name: str) -> None:
        if self.on_phase is not None:
            self.on_phase(name)

    def __init__(self, backbone: Backbone, config: RefinerConfig | None = None):
        super().__init__()
        self.config = config or RefinerConfig()
        self.backbone_config = backbone.config
        cfg = self.config
        self.scheduler = backbone.scheduler
        context_dim = backbone.unet.config.cross_attention_dim
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            generator = torch.Generator().manual_seed(cfg.seed)

            unet = backbone.unet
            widen_conv_in(unet, unet.config.in_channels, generator)
            vae = backbone.vae
            vae.decoder = DADecoder.from_vae(vae, context_dim)
            vae_cond = backbone.vae_cond
            self.proj = PriorProjection(cfg.token_channels, context_dim, cfg.mask_channels)

            targets = cfg.target_modules or {}
            unet_targets = {a: targets.get(f"unet_{a}") for a in UNET_ADAPTERS}
            if not all(v is not None for v in unet_targets.values()):
                unet_targets = unet_lora_targets(unet)
            vae_targets = {
                "default_encoder": targets.get("vae_default_encoder") or vae_encoder_lora_targets(vae),
                "default_decoder": targets.get("vae_default_decoder") or vae_decoder_lora_targets(vae),
            }
            vae_cond_targets = {
                "default_encoder": targets.get("vae_cond_default_encoder")
                or vae_encoder_lora_targets(vae_cond),
            }
            _add_lora(unet, unet_targets, dict.fromkeys(UNET_ADAPTERS, cfg.rank_unet), cfg.lora_alpha)
            _add_lora(vae, vae_targets, dict.fromkeys(VAE_ADAPTERS, cfg.rank_vae), cfg.lora_alpha)
            _add_lora(vae_cond, vae_cond_targets, {"default_encoder": cfg.rank_vae_cond}, cfg.lora_alpha)
        self.residual_gate: ResidualGate | None = None
        self.target_modules = {
            **{f"unet_{a}": list(m) for a, m in unet_targets.items()},
            **{f"vae_{a}": list(m) for a, m in vae_targets.items()},
            **{f"vae_cond_{a}": list(m) for a, m in vae_cond_targets.items()},
        }
        self.unet = unet
        self.vae = vae
        self.vae_cond = vae_cond
        if cfg.residual_gate:
            # Built last, so every other initial weight is the same with or without it.
            self.enable_residual_gate()
        self.set_trainable()
        self.lora_fused = False

    def enable_residual_gate(self) -> None:
        """Add a zero-initialised :class:`ResidualGate` (no-op if present): from now on the
        refiner returns DaReg's gain map until training opens the gate. Also for a trained refiner,
        whose decoded output the gate then learns where to trust."""
        if self.residual_gate is not None:
            return
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed + 1)
            gate = ResidualGate()
        param = next(self.unet.parameters())
        self.residual_gate = gate.to(device=param.device, dtype=param.dtype)
        self.config.residual_gate = True
        self.set_trainable()

    # ----- parameter groups ---------------------------------------------------------------
    def set_trainable(self) -> None:
        """Freeze the backbone; train LoRA, the UNet's conv_in, the projection and the DA skips."""
        self.requires_grad_(False)
        for name, param in self.named_parameters():
            if "lora_" in name:
                param.requires_grad_(True)
        conv_in = self.unet.conv_in
        (conv_in.base_layer if isinstance(conv_in, BaseTunerLayer) else conv_in).requires_grad_(True)
        self.proj.requires_grad_(True)
        if self.residual_gate is not None:
            self.residual_gate.requires_grad_(True)
        for block in self.vae.decoder.skip_blocks():
            for name, param in block.named_parameters():
                if "lora_" not in name:
                    param.requires_grad_(True)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything training changes: trainable parameters and the projection's norm buffers."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        state = self.state_dict()
        keep = {k: v for k, v in state.items() if k in trainable or k.startswith("proj.")}
        return keep

    # ----- stages ----------------------------------------------------------------------------
    def _latent(self, vae: AutoencoderKL, moments: torch.Tensor,
                generator: torch.Generator | None) -> torch.Tensor:
        from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution

        posterior = DiagonalGaussianDistribution(moments)
        z = posterior.sample(generator) if self.config.sample_latents else posterior.mode()
        return z * vae.config.scaling_factor

    def encode_gain_map(self, gm_signed: torch.Tensor, generator=None):
        """GM (B,3,H,W) in [−1,1] → (scaled latent z_G, encoder skips)."""
        moments, skips = encode_with_skips(self.vae, gm_signed)
        return self._latent(self.vae, moments, generator), skips

    def encode_condition(self, short_ldr: torch.Tensor, generator=None) -> torch.Tensor:
        """Short-exposure LDR (B,3,H,W) in [−1,1] → scaled latent z_C."""
        moments, _ = encode_with_skips(self.vae_cond, short_ldr)
        return self._latent(self.vae_cond, moments, generator)

    def context(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Cross-attention tokens from c_L and the DA mask."""
        return self.proj(tokens, mask)

    def predict_noise(self, z_g: torch.Tensor, z_c: torch.Tensor, context: torch.Tensor,
                      timestep: int, tile: TileOptions | None = None) -> torch.Tensor:
        """UNet ε prediction on concat(z_G, z_C), optionally over Gaussian-blended latent tiles."""
        x = torch.cat([z_g, z_c], dim=1)
        t = torch.full((x.shape[0],), timestep, device=x.device, dtype=torch.long)

        h, w = x.shape[-2:]
        margin = tile.token_margin if tile is not None else None

        def run(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
            tokens = context if margin is None else local_tokens(context, (h, w), (y0, y1, x0, x1),
                                                                 margin)
            sample = self.unet(x[:, :, y0:y1, x0:x1], t, encoder_hidden_states=tokens).sample
            return sample.to(x.dtype)  # bf16 under CPU autocast

        if tile is None or (h <= tile.latent_tile and w <= tile.latent_tile):
            return run(0, h, 0, w)
        self._phase("UNet")
        return blend_tiles(h, w, tile.latent_tile, tile.latent_overlap, 1.0, run, self.on_tile)

    def x0_estimate(self, noise: torch.Tensor, timestep: int, sample: torch.Tensor) -> torch.Tensor:
        """The scheduler's x0 estimate ``(x_t − √(1−ᾱ)·ε)/√ᾱ`` (``pred_original_sample``)."""
        # The DDPM step also draws variance noise we discard; a private generator keeps the
        # caller's RNG streams untouched.
        generator = torch.Generator().manual_seed(0)
        return self.scheduler.step(noise, timestep, sample, generator=generator).pred_original_sample

    def denoise(self, z_g: torch.Tensor, z_c: torch.Tensor, context: torch.Tensor,
                steps: int = 1, tile: TileOptions | None = None) -> torch.Tensor:
        """Refined latent: one x0 step from ``x_t = z_G`` at t, or a deterministic DDIM chain."""
        t0 = self.config.timestep
        if steps <= 1:
            eps = self.predict_noise(z_g, z_c, context, t0, tile)
            return self.x0_estimate(eps, t0, z_g)
        # Multi-step variant (speed comparison): DDIM with η=0 from the same start.
        alphas = self.scheduler.alphas_cumprod
        times = [round(t0 * (steps - i) / steps) for i in range(steps)]
        x = z_g
        for i, t in enumerate(times):
            eps = self.predict_noise(x, z_c, context, t, tile)
            a_t = float(alphas[t])
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)
            if i + 1 < len(times):
                a_next = float(alphas[times[i + 1]])
                x = math.sqrt(a_next) * x0 + math.sqrt(1 - a_next) * eps
        return x0

    def decode(self, latent: torch.Tensor, skips: list[torch.Tensor] | None,
               context: torch.Tensor) -> torch.Tensor:
        """DA decoder: scaled latent + encoder skips + prior → signed GM (not yet clamped)."""
        z = latent / self.vae.config.scaling_factor
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        return self.vae.decoder(z, skips=skips, prior=context)

    def _decode_tiled(self, latent: torch.Tensor, gm_signed: torch.Tensor, context: torch.Tensor,
                      tile: TileOptions) -> torch.Tensor:
        # Each latent tile's skips come from re-encoding the matching image crop, so the full-size
        # encoder activations are never held at once.
        def run(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
            _, skips = encode_with_skips(self.vae, gm_signed[:, :, y0 * 8:y1 * 8, x0 * 8:x1 * 8])
            return self.decode(latent[:, :, y0:y1, x0:x1], skips, context)
        h, w = latent.shape[-2:]
        return blend_tiles(h, w, tile.vae_tile, tile.vae_overlap, 8.0, run, self.on_tile)

    def _encode_tiled(self, vae: AutoencoderKL, image: torch.Tensor, tile: TileOptions,
                      generator=None) -> torch.Tensor:
        def run(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
            moments, _ = encode_with_skips(vae, image[:, :, y0:y1, x0:x1])
            return self._latent(vae, moments, generator)
        h, w = image.shape[-2:]
        return blend_tiles(h, w, tile.vae_tile * 8, tile.vae_overlap * 8, 1 / 8, run,
                           self.on_tile)

    def forward(self, gm_signed: torch.Tensor, short_ldr: torch.Tensor, mask: torch.Tensor,
                tokens: torch.Tensor, steps: int = 1, tile: TileOptions | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Refined signed GM (B,3,H,W) in [−1,1]; H, W multiples of 32."""
        dtype = next(self.unet.parameters()).dtype
        coarse = gm_signed
        gm_signed, short_ldr = gm_signed.to(dtype), short_ldr.to(dtype)
        context = self.context(tokens.to(dtype), mask.to(dtype))
        vae_tiled = tile is not None and tile.vae_tile is not None and (
            max(gm_signed.shape[-2:]) > tile.vae_tile * 8)
        if vae_tiled:
            self._phase("encoding the gain map")
            z_g = self._encode_tiled(self.vae, gm_signed, tile, generator)
            self._phase("encoding the condition")
            z_c = self._encode_tiled(self.vae_cond, short_ldr, tile, generator)
            skips = None
        else:
            z_g, skips = self.encode_gain_map(gm_signed, generator)
            z_c = self.encode_condition(short_ldr, generator)
        # Latents and outputs in the model's dtype also under CPU bf16 autocast, where only the
        # convolutions and matmuls run in bf16: the x0 step and tile blending stay exact.
        z_g, z_c = z_g.to(dtype), z_c.to(dtype)
        refined = self.denoise(z_g, z_c, context, steps=steps, tile=tile)
        if vae_tiled:
            self._phase("decoding")
            out = self._decode_tiled(refined, gm_signed, context, tile)
        else:
            out = self.decode(refined, skips, context)
        out = out.to(dtype)
        if self.residual_gate is not None:
            out = self.residual_gate(coarse, out, mask)
        return out.clamp(-1.0, 1.0)

    # ----- LoRA fusion -------------------------------------------------------------------------
    def fuse_lora(self) -> None:
        """Merge every LoRA into its base weights (faster inference; training must not follow)."""
        for module in self.modules():
            if isinstance(module, BaseTunerLayer) and not module.merged:
                module.merge()
        self.lora_fused = True

    def unfuse_lora(self) -> None:
        """Undo :meth:`fuse_lora`."""
        for module in self.modules():
            if isinstance(module, BaseTunerLayer) and module.merged:
                module.unmerge()
        self.lora_fused = False

    def parameter_counts(self) -> dict[str, int]:
        """Parameter counts per group (for reports)."""
        counts = {"total": 0, "trainable": 0, "lora": 0, "conv_in": 0, "proj": 0, "da_skips": 0,
                  "residual_gate": 0}
        for name, p in self.named_parameters():
            n = p.numel()
            counts["total"] += n
            if p.requires_grad:
                counts["trainable"] += n
            if "lora_" in name:
                counts["lora"] += n
            elif name.startswith("unet.conv_in"):
                counts["conv_in"] += n
            elif name.startswith("proj."):
                counts["proj"] += n
            elif "skip_conv_" in name:
                counts["da_skips"] += n
            elif name.startswith("residual_gate."):
                counts["residual_gate"] += n
        return counts
