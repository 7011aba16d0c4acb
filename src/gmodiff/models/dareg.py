"""DaReg, the degradation-aware regressor of spec §3.

Three LDR frames (short, medium = reference, long) go in as 6-channel inputs; out come a gain map
in [0, 1] that lifts the reference LDR to HDR, a degradation-aware (DA) mask that flags pixels the
regression probably got wrong, and the middle-block features as prior tokens c_L for the diffusion
refiner.

Module attribute names (``intro_0``, ``fusion.att11``, ``encoders``, ``downs``, ``middle_blks``,
``ups``, ``decoders``, ``ending``, ``outconv``, ``encoder_adapt_convs``, ``seg_conv_layers``)
follow the reference ``dareg_mask.pth`` layout so released weights load strictly (spec §7).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gmodiff.errors import CheckpointError, ConfigError
from gmodiff.io.atomic import atomic_path
from gmodiff.models.nafnet import NAFBlock
from gmodiff.inputs.encode import REFERENCE_INDEX
from gmodiff.inputs.padding import PAD_MODES, crop, pad

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MAX_WIDTH = 4096
MAX_BLOCKS = 64


@dataclass
class DaRegConfig:
    """Sizes of a DaReg network. ``paper()`` is the published model, ``tiny()`` a CPU-sized one."""

    channels: tuple[int, ...] = (64, 128, 256, 512, 1024)
    encoder_blocks: tuple[int, ...] = (2, 4, 4, 8)
    middle_blocks: int = 1
    decoder_blocks: tuple[int, ...] = (2, 2, 2, 2)
    down_scales: tuple[int, ...] = (2, 2, 2, 4)
    in_channels: int = 6
    mask_head: bool = True
    mask_channels: int = 16
    pad_mode: str = "replicate"
    """How inputs are padded to a multiple of the total scale ("replicate", or "constant" = zeros
    as the reference code does)."""
    channel_order: str = "rgb"
    """Colour order the weights were trained on: "rgb" (ours) or "bgr" (the reference DaReg)."""
    canonical_inputs: bool = False
    """Frames are re-encoded with gamma 2.2 from a camera response estimated from the bracket
    before the network sees them (``gmodiff.inputs.canonical``), so the network never has to
    guess the camera curve. Off for the paper layout and the reference weights."""
    merge_input: bool = False
    """A fourth input slot carries a classical merge of the bracket (``concat(H, GM)``); its
    features are added to the fused features and a learnt per-pixel gate blends the merge's gain
    map with the network's. The merge stem starts at zero (a pretrained DaReg's own gain map is
    unchanged) and the gate at an even blend."""

    def __post_init__(self) -> None:
        self.channels = tuple(int(c) for c in self.channels)
        self.encoder_blocks = tuple(int(n) for n in self.encoder_blocks)
        self.decoder_blocks = tuple(int(n) for n in self.decoder_blocks)
        self.down_scales = tuple(int(s) for s in self.down_scales)
        levels = len(self.down_scales)
        if not (len(self.encoder_blocks) == len(self.decoder_blocks) == levels):
            raise ConfigError(
                "encoder_blocks, decoder_blocks and down_scales need the same length",
                fix="give one entry per U-Net level",
            )
        if len(self.channels) != levels + 1:
            raise ConfigError(
                f"channels needs {levels + 1} entries (one per level plus the middle)",
                fix="add or remove a width",
            )
        # Bounds far above the paper size (widths ≤ 1024, ≤ 8 blocks) so a corrupt or hostile
        # config.json cannot make loading allocate gigabytes before the weights are checked.
        widths = (*self.channels, self.mask_channels, self.in_channels)
        blocks = (*self.encoder_blocks, *self.decoder_blocks, self.middle_blocks)
        if (levels > 8 or min(*widths, *blocks, *self.down_scales) < 1 or max(widths) > MAX_WIDTH
                or max(blocks) > MAX_BLOCKS or max(self.down_scales) > 8):
            raise ConfigError(
                "DaReg sizes out of range",
                fix=f"widths 1..{MAX_WIDTH}, 1..{MAX_BLOCKS} blocks per level, scales 1..8, ≤ 8 levels",
            )
        if self.channel_order not in ("rgb", "bgr"):
            raise ConfigError(f"channel_order {self.channel_order!r}", fix='use "rgb" or "bgr"')
        if self.pad_mode not in PAD_MODES:
            raise ConfigError(f"pad_mode {self.pad_mode!r}", fix='use "replicate" or "constant"')

    @property
    def multiple(self) -> int:
        """Inputs are padded to a multiple of this (the product of the down-sampling scales)."""
        total = 1
        for scale in self.down_scales:
            total *= scale
        return total

    @classmethod
    def paper(cls, **overrides) -> DaRegConfig:
        """The published size: widths 64..1024, blocks [2, 4, 4, 8], ~48 M parameters."""
        return cls(**overrides)

    @classmethod
    def tiny(cls, **overrides) -> DaRegConfig:
        """A CPU-sized DaReg with the same structure: widths 16..128, one block per level."""
        values = dict(
            channels=(16, 32, 64, 128, 128),
            encoder_blocks=(1, 1, 1, 2),
            middle_blocks=1,
            decoder_blocks=(1, 1, 1, 1),
        )
        values.update(overrides)
        return cls(**values)

    def to_dict(self) -> dict:
        """JSON-friendly dict of the fields."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict) -> DaRegConfig:
        """Build from a dict, rejecting unknown keys with a ConfigError."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown DaReg config keys {unknown}", fix=f"use only {sorted(known)}")
        return cls(**values)


@dataclass
class DaRegOutput:
    """What DaReg returns for a batch."""

    gain_map: torch.Tensor
    """(B, 3, H, W) in [0, 1]."""
    mask: torch.Tensor | None
    """(B, 1, H, W) probability that the gain map is wrong there; None without a mask head."""
    tokens: torch.Tensor
    """c_L: middle-block features (B, N, C_mid), N = H·W / multiple² of the padded size."""
    encoder_features: list[torch.Tensor] = field(default_factory=list, repr=False)

    def float(self) -> DaRegOutput:
        """The maps and tokens in float32 (under bf16 autocast the network returns bf16)."""
        return DaRegOutput(self.gain_map.float(),
                           self.mask.float() if self.mask is not None else None,
                           self.tokens.float(), self.encoder_features)


class ExposureAttentionFusion(nn.Module):
    """Fuse three frames' features, gating each non-reference frame by an attention map.

    ``a_i = sigmoid(conv(LeakyReLU(conv(concat(f_i, f_ref)))))`` for i in {short, long}; the
    fused feature is ``conv(concat(f_short·a_short, f_ref, f_long·a_long))``.
    """

    def __init__(self, channels: int):
        super().__init__()
        # att1x gates the short frame, att3x the long one (names as in the reference weights).
        self.att11 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)
        self.att12 = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.att31 = nn.Conv2d(2 * channels, 2 * channels, 3, padding=1)
        self.att32 = nn.Conv2d(2 * channels, channels, 3, padding=1)
        self.relu = nn.LeakyReLU()
        self.conv2 = nn.Conv2d(3 * channels, channels, 3, padding=1)

    def forward(self, short: torch.Tensor, ref: torch.Tensor, long: torch.Tensor) -> torch.Tensor:
        """Attention-weighted fusion of the three frame features into one (B, C, H, W)."""
        gate_short = torch.sigmoid(self.att12(self.relu(self.att11(torch.cat([short, ref], 1)))))
        gate_long = torch.sigmoid(self.att32(self.relu(self.att31(torch.cat([long, ref], 1)))))
        return self.conv2(torch.cat([short * gate_short, ref, long * gate_long], dim=1))


def _blocks(channels: int, count: int) -> nn.Sequential:
    return nn.Sequential(*[NAFBlock(channels) for _ in range(count)])


class DaReg(nn.Module):
    """The degradation-aware regressor: LDR bracket → (gain map, DA mask, prior tokens)."""

    def __init__(self, config: DaRegConfig | None = None):
        super().__init__()
        self.config = config = config or DaRegConfig.paper()
        widths = config.channels
        base = widths[0]
        # One stem per frame: frames differ in exposure, so they get their own filters.
        self.intro_0 = nn.Conv2d(config.in_channels, base, 3, padding=1)
        self.intro_1 = nn.Conv2d(config.in_channels, base, 3, padding=1)
        self.intro_2 = nn.Conv2d(config.in_channels, base, 3, padding=1)
        self.fusion = ExposureAttentionFusion(base)

        self.encoders = nn.ModuleList()
        self.downs = nn.ModuleList()
        for level, (count, scale) in enumerate(zip(config.encoder_blocks, config.down_scales)):
            self.encoders.append(_blocks(widths[level], count))
            # Strided conv with kernel = stride: non-overlapping patches, learned downsampling.
            self.downs.append(
                nn.Sequential(nn.Conv2d(widths[level], widths[level + 1], scale, stride=scale))
            )
        self.middle_blks = _blocks(widths[-1], config.middle_blocks)

        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        levels = len(config.down_scales)
        for step, count in enumerate(config.decoder_blocks):
            level = levels - 1 - step
            scale = config.down_scales[level]
            self.ups.append(
                nn.Sequential(
                    nn.Conv2d(widths[level + 1], widths[level] * scale * scale, 1, bias=False),
                    nn.PixelShuffle(scale),
                )
            )
            self.decoders.append(_blocks(widths[level], count))

        self.ending = nn.Conv2d(base, base, 3, padding=1)
        self.outconv = nn.Conv2d(base, 3, 3, padding=1)

        if config.merge_input:
            self.intro_merge = nn.Conv2d(config.in_channels, base, 3, padding=1)
            self.merge_gate = nn.Conv2d(base, 1, 3, padding=1)
            for layer in (self.intro_merge, self.merge_gate):
                nn.init.zeros_(layer.weight)
                nn.init.zeros_(layer.bias)

        if config.mask_head:
            m = config.mask_channels
            self.encoder_adapt_convs = nn.ModuleList(nn.Conv2d(c, m, 1) for c in widths[:-1])
            self.seg_conv_layers = nn.Sequential(
                nn.Conv2d(m * levels, 2 * m, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(2 * m, m, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.Conv2d(m, 1, 1),
            )

    # -- parameters -------------------------------------------------------------------------

    def mask_head_parameters(self) -> list[nn.Parameter]:
        """Parameters of the DA-mask head (the only ones trained in stage 2)."""
        if not self.config.mask_head:
            return []
        return [*self.encoder_adapt_convs.parameters(), *self.seg_conv_layers.parameters()]

    def freeze_backbone(self) -> None:
        """Stage 2: freeze everything but the mask head."""
        trainable = {id(p) for p in self.mask_head_parameters()}
        for param in self.parameters():
            param.requires_grad_(id(param) in trainable)

    def num_parameters(self) -> int:
        """Total parameter count."""
        return sum(p.numel() for p in self.parameters())

    # -- forward ----------------------------------------------------------------------------

    @property
    def input_slots(self) -> int:
        """Input slots per item: the three frames, plus the classical merge with ``merge_input``."""
        return 4 if self.config.merge_input else 3

    def forward(self, inputs: torch.Tensor, with_mask: bool = True) -> DaRegOutput:
        """Run DaReg on ``inputs`` (B, S, 6, H, W): frames short→long (S = 3), then the classical
        merge ``concat(H, GM)`` with ``merge_input`` (S = 4); any H and W."""
        slots = self.input_slots
        if inputs.ndim != 5 or inputs.shape[1] != slots or inputs.shape[2] != self.config.in_channels:
            raise ValueError(f"DaReg expects (B, {slots}, {self.config.in_channels}, H, W), "
                             f"got {tuple(inputs.shape)}")
        size = (inputs.shape[-2], inputs.shape[-1])
        if self.config.channel_order == "bgr":
            # Each frame is concat(linear RGB, LDR RGB): reverse both triplets.
            inputs = inputs[:, :, [2, 1, 0, 5, 4, 3]]
        padded = pad(inputs, self.config)

        f_short = self.intro_0(padded[:, 0])
        f_ref = self.intro_1(padded[:, REFERENCE_INDEX])
        f_long = self.intro_2(padded[:, 2])
        x = self.fusion(f_short, f_ref, f_long)
        if self.config.merge_input:
            x = x + self.intro_merge(padded[:, 3])

        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        tokens = x.flatten(2).transpose(1, 2)

        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        # Residual to the reference stem features: the GM is a correction of the reference.
        features = self.ending(x) + f_ref
        gain_map = torch.sigmoid(self.outconv(features))
        if self.config.merge_input:
            # Where the merge is exact (static, well exposed somewhere) the gate can hand over
            # to it; where frames disagree or clip, the network's own gain map speaks.
            gate = torch.sigmoid(self.merge_gate(features))
            gain_map = gate * padded[:, 3, 3:6] + (1.0 - gate) * gain_map
        gain_map = crop(gain_map, size)
        if self.config.channel_order == "bgr":
            gain_map = gain_map[:, [2, 1, 0]]

        mask = None
        if self.config.mask_head and with_mask:
            mask = crop(self._mask(skips, f_ref.shape[-2:]), size)
        return DaRegOutput(gain_map=gain_map, mask=mask, tokens=tokens, encoder_features=skips)

    def _mask(self, skips: list[torch.Tensor], size) -> torch.Tensor:
        # Each level contributes a few channels, upsampled to full size, so the mask sees both
        # fine detail and the wide context where ghosting and saturation show up.
        parts = [
            F.interpolate(adapt(feature), size=size, mode="bilinear", align_corners=False)
            for adapt, feature in zip(self.encoder_adapt_convs, skips)
        ]
        return torch.sigmoid(self.seg_conv_layers(torch.cat(parts, dim=1)))

    # -- persistence ------------------------------------------------------------------------

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``directory`` (atomically)."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / CONFIG_NAME) as tmp:
            Path(tmp).write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(state, str(tmp), metadata={"format": "pt", "model": "gmodiff.DaReg"})
        return directory

    @classmethod
    def from_pretrained(cls, path: str | Path, **config_overrides) -> DaReg:
        """Load a DaReg saved by :meth:`save_pretrained`, or a reference ``.pth`` file.

        A ``.pth``/``.pt`` file is read as a reference-layout checkpoint into the paper preset
        with the reference code's conventions (BGR channel order, zero padding); any
        ``config_overrides`` win.
        """
        from gmodiff.models.checkpoints import load_reference_checkpoint, load_reference_state_dict

        path = Path(path)
        if path.is_file() and path.suffix in (".pth", ".pt", ".ckpt"):
            reference = {"channel_order": "bgr", "pad_mode": "constant"}
            model = cls(DaRegConfig.paper(**{**reference, **config_overrides}))
            load_reference_checkpoint(model, path)
            return model
        config_path = path / CONFIG_NAME
        weights_path = path / WEIGHTS_NAME
        if not config_path.is_file() or not weights_path.is_file():
            raise CheckpointError(
                f"no DaReg weights here (need {CONFIG_NAME} and {WEIGHTS_NAME})",
                path,
                "point at a folder written by save_pretrained or a dareg_mask.pth file",
            )
        try:
            values = json.loads(config_path.read_text(encoding="utf-8"))
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError
            raise CheckpointError(f"config.json is not valid JSON ({exc})", config_path) from exc
        if not isinstance(values, dict):
            raise CheckpointError("config.json is not a JSON object", config_path,
                                  "re-save the model with save_pretrained")
        values.update(config_overrides)
        try:
            model = cls(DaRegConfig.from_dict(values))
        except ConfigError as exc:  # sizes inconsistent or out of range
            raise CheckpointError(f"config.json has invalid values ({exc})", config_path,
                                  "re-save the model with save_pretrained") from exc
        except (TypeError, ValueError, IndexError, RuntimeError) as exc:  # wrong field types
            raise CheckpointError(f"config.json has invalid values ({type(exc).__name__}: "
                                  f"{str(exc)[:120]})", config_path,
                                  "re-save the model with save_pretrained") from exc
        from safetensors.torch import load_file

        try:
            state = load_file(str(weights_path))
        except Exception as exc:  # safetensors raises several types for corrupt files
            raise CheckpointError(f"cannot read weights ({exc})", weights_path, "re-export them") from exc
        load_reference_state_dict(model, state, source=weights_path)
        return model
