"""Weight-free image losses for stage 3: MS-SSIM (stand-in for DISTS when no VGG weights are given)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
"""Per-scale exponents of Wang et al. 2003."""


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32, device=like.device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).to(like.dtype)


def _ssim_terms(x: torch.Tensor, y: torch.Tensor, window: torch.Tensor, data_range: float):
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    groups = x.shape[1]
    mu_x = F.conv2d(x, window, groups=groups)
    mu_y = F.conv2d(y, window, groups=groups)
    sxx = F.conv2d(x * x, window, groups=groups) - mu_x**2
    syy = F.conv2d(y * y, window, groups=groups) - mu_y**2
    sxy = F.conv2d(x * y, window, groups=groups) - mu_x * mu_y
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    luminance = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1)
    return (luminance * cs).flatten(2).mean(-1), cs.flatten(2).mean(-1)


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window_size: int = 11,
            sigma: float = 1.5) -> torch.Tensor:
    """Multi-scale SSIM per image (B,), Gaussian window 11/σ 1.5.

    Uses as many of the 5 standard scales as the image size allows (a 64-px crop gets 3), with the
    exponents of the scales used renormalised to sum to one.
    """
    size = min(x.shape[-2:])
    scales = 1
    while scales < len(MS_SSIM_WEIGHTS) and size // (2**scales) >= window_size:
        scales += 1
    if size < window_size:
        raise ValueError(f"MS-SSIM needs images of at least {window_size} px, got {size}")
    weights = torch.tensor(MS_SSIM_WEIGHTS[:scales], device=x.device, dtype=torch.float32)
    weights = weights / weights.sum()
    window = _gaussian_window(window_size, sigma, x.shape[1], x)
    values = []
    for scale in range(scales):
        ssim, cs = _ssim_terms(x, y, window, data_range)
        # relu: negative contrast-structure terms would make the fractional powers NaN.
        values.append(torch.relu(ssim if scale == scales - 1 else cs))
        if scale < scales - 1:
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    stacked = torch.stack(values, dim=0).float()  # (scales, B, C)
    return torch.prod(stacked ** weights[:, None, None], dim=0).mean(-1)


def ms_ssim_loss(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """``1 − MS-SSIM``, averaged over the batch."""
    return 1.0 - ms_ssim(x, y, data_range).mean()
