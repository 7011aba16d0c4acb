"""DISTS (Ding et al. 2020) as the stage-3 perceptual loss, from user-supplied weights only.

Two files are needed, neither downloaded: torchvision-layout VGG16 weights (``features.N.weight``
/ ``.bias``) and the DISTS ``alpha``/``beta`` file. The network is VGG16's conv stack with
max-pools replaced by L2 pooling; the score compares per-channel means (structure) and
(co)variances (texture) at six stages, weighted by alpha/beta.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gmodiff.errors import CheckpointError

_VGG16 = [64, 64, "P", 128, 128, "P", 256, 256, 256, "P", 512, 512, 512, "P", 512, 512, 512]
STAGE_CHANNELS = (3, 64, 128, 256, 512, 512)
# features indices where each stage ends (after its last ReLU)
_STAGE_ENDS = (4, 9, 16, 23, 30)


class L2Pool(nn.Module):
    """Hanning-windowed L2 pooling with stride 2 (DISTS' replacement for max-pooling)."""

    def __init__(self, channels: int):
        super().__init__()
        taps = torch.tensor(np.hanning(5)[1:-1], dtype=torch.float32)
        window = taps[:, None] * taps[None, :]
        self.register_buffer("filter", (window / window.sum()).expand(channels, 1, 3, 3).clone(),
                             persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """sqrt(blur(x²)) subsampled by 2."""
        out = F.conv2d(x**2, self.filter, stride=2, padding=1, groups=x.shape[1])
        return (out + 1e-12).sqrt()


class DISTS(nn.Module):
    """DISTS distance per image (B,); inputs RGB in [0, 1]."""

    def __init__(self):
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for item in _VGG16:
            if item == "P":
                layers.append(L2Pool(channels))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
                channels = item
        self.features = nn.Sequential(*layers)
        total = sum(STAGE_CHANNELS)
        self.alpha = nn.Parameter(torch.full((1, total, 1, 1), 0.1))
        self.beta = nn.Parameter(torch.full((1, total, 1, 1), 0.1))
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)

    @classmethod
    def from_weights(cls, vgg_path: str | Path, dists_path: str | Path) -> DISTS:
        """Load VGG16 (torchvision layout) and DISTS alpha/beta from local files."""
        model = cls()
        vgg = _load(vgg_path)
        vgg = {k[len("features."):]: v for k, v in vgg.items() if k.startswith("features.")}
        expected = {k for k in model.features.state_dict()}
        if not expected <= set(vgg):
            raise CheckpointError("not VGG16 weights in torchvision layout (features.N.weight)", vgg_path,
                                  "pass the torchvision vgg16 state dict file")
        try:
            model.features.load_state_dict({k: vgg[k] for k in expected})
        except RuntimeError as exc:
            raise CheckpointError(f"VGG16 weights do not fit ({str(exc).splitlines()[0]})", vgg_path) from exc
        ab = _load(dists_path)
        shape = model.alpha.shape
        if set(ab) < {"alpha", "beta"} or ab["alpha"].numel() != shape.numel() or ab["beta"].numel() != shape.numel():
            raise CheckpointError("not a DISTS alpha/beta file", dists_path,
                                  "pass the DISTS weights.pt holding 'alpha' and 'beta'")
        with torch.no_grad():
            model.alpha.copy_(ab["alpha"].reshape(shape))
            model.beta.copy_(ab["beta"].reshape(shape))
        return model.eval()

    def _stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = [x]
        h = (x - self.mean) / self.std
        start = 0
        for end in _STAGE_ENDS:
            h = self.features[start:end](h)
            feats.append(h)
            start = end
        return feats

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Distance per image; 0 for identical inputs."""
        eps = 1e-6
        total = self.alpha.sum() + self.beta.sum()
        alphas = torch.split(self.alpha / total, STAGE_CHANNELS, dim=1)
        betas = torch.split(self.beta / total, STAGE_CHANNELS, dim=1)
        structure = texture = 0.0
        for fx, fy, a, b in zip(self._stages(x), self._stages(y), alphas, betas, strict=True):
            mx, my = fx.mean([2, 3], keepdim=True), fy.mean([2, 3], keepdim=True)
            s1 = (2 * mx * my + eps) / (mx**2 + my**2 + eps)
            vx = ((fx - mx) ** 2).mean([2, 3], keepdim=True)
            vy = ((fy - my) ** 2).mean([2, 3], keepdim=True)
            cov = (fx * fy).mean([2, 3], keepdim=True) - mx * my
            s2 = (2 * cov + eps) / (vx + vy + eps)
            structure = structure + (a * s1).sum(1)
            texture = texture + (b * s2).sum(1)
        return (1 - (structure + texture)).flatten()


def _load(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError("weights file not found", path, "check the path in the config")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any read failure means a bad file
        raise CheckpointError(f"cannot read weights ({type(exc).__name__})", path) from exc
    if isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    if not isinstance(data, dict):
        raise CheckpointError("weights file is not a state dict", path)
    return data
