"""NAFNet building blocks (spec §3): channel LayerNorm, the SimpleGate, and the NAFBlock.

NAFNet (Chen et al., 2022) replaces nonlinear activations by a multiplicative gate. A block is two
residual branches, each scaled by a learned per-channel factor initialised to zero, so a freshly
built block is the identity and deep stacks start stable.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LayerNorm2d(nn.Module):
    """Layer normalisation over the channel axis of an (B, C, H, W) tensor, per pixel."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps
        self.channels = channels  # a plain int, so an exported graph sees a constant shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise each pixel's channel vector to zero mean, unit variance, then scale/shift."""
        # One fused layer_norm over the channel axis instead of eight full-size passes (mean,
        # centre, square, mean, rsqrt, scale, weight, bias): the same biased variance and eps.
        # On a channels_last tensor the permutes are free views.
        normalised = F.layer_norm(x.permute(0, 2, 3, 1), (self.channels,), self.weight, self.bias,
                                  self.eps)
        return normalised.permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them: NAFNet's activation substitute."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first, second = torch.chunk(x, 2, dim=1)
        return first * second


class NAFBlock(nn.Module):
    """LayerNorm → 1×1 (×2) → depthwise 3×3 → gate → channel attention → 1×1, then a gated FFN.

    Attribute names follow the common NAFNet layout (``conv1``..``conv5``, ``sca``, ``norm1``,
    ``norm2``, ``beta``, ``gamma``) so released checkpoints load without renaming.
    """

    def __init__(self, channels: int, expand: int = 2, ffn_expand: int = 2):
        super().__init__()
        hidden = channels * expand
        ffn_hidden = channels * ffn_expand
        self.norm1 = LayerNorm2d(channels)
        self.conv1 = nn.Conv2d(channels, hidden, kernel_size=1)
        self.conv2 = nn.Conv2d(hidden, hidden, kernel_size=3, padding=1, groups=hidden)
        self.sg = SimpleGate()
        # Simplified channel attention: global average → 1×1 conv, no nonlinearity.
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(hidden // 2, hidden // 2, 1))
        self.conv3 = nn.Conv2d(hidden // 2, channels, kernel_size=1)
        self.norm2 = LayerNorm2d(channels)
        self.conv4 = nn.Conv2d(channels, ffn_hidden, kernel_size=1)
        self.conv5 = nn.Conv2d(ffn_hidden // 2, channels, kernel_size=1)
        # Zero-initialised residual scales: the block starts as the identity.
        self.beta = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.gamma = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the spatial branch then the feed-forward branch, each as a scaled residual."""
        branch = self.sg(self.conv2(self.conv1(self.norm1(x))))
        branch = self.conv3(branch * self.sca(branch))
        x = x + self.beta * branch
        branch = self.conv5(self.sg(self.conv4(self.norm2(x))))
        return x + self.gamma * branch
