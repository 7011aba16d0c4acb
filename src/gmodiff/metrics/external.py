"""Optional perceptual metrics from other packages: ColorVideoVDP (JOD) and HDR-FLIP.

Both live in the ``metrics`` extra (``pip install .[metrics]``), not in the core install. cvvdp
imports torchvision, whose PyPI build can break ``import diffusers`` beside the CPU torch wheel,
so nothing here is imported at module load: each wrapper imports its package on first use and
either raises ``MetricUnavailableError`` (``required=True``) or returns None.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

from gmodiff.errors import GmodiffError
from gmodiff.metrics.pu21 import DISPLAY_PEAK, to_absolute

CVVDP_DISPLAY = "standard_hdr_linear"
"""ColorVideoVDP display model for linear HDR input in absolute units (cd/m²)."""


class MetricUnavailableError(GmodiffError):
    """An optional metric's package is not installed."""


def _load(module: str, package: str, required: bool):
    if importlib.util.find_spec(module) is None:
        if required:
            raise MetricUnavailableError(f"the optional metric package '{package}' is not "
                                         "installed", None, "pip install '.[metrics]'")
        return None
    return importlib.import_module(module)


def available() -> dict[str, bool]:
    """Which optional metrics can run here: {'cvvdp': bool, 'flip': bool}."""
    return {"cvvdp": importlib.util.find_spec("pycvvdp") is not None,
            "flip": importlib.util.find_spec("flip_evaluator") is not None}


def cvvdp_jod(pred: np.ndarray, gt: np.ndarray, peak: float = DISPLAY_PEAK,
              display: str = CVVDP_DISPLAY, required: bool = False) -> float | None:
    """ColorVideoVDP quality in JOD (10 = identical), images scaled so max(gt) = ``peak`` cd/m²."""
    pycvvdp = _load("pycvvdp", "cvvdp", required)
    if pycvvdp is None:
        return None
    import torch

    pred_abs, gt_abs = to_absolute(pred, gt, peak)
    metric = pycvvdp.cvvdp(display_name=display, device=torch.device("cpu"))
    jod, _stats = metric.predict(torch.from_numpy(pred_abs.astype(np.float32)),
                                 torch.from_numpy(gt_abs.astype(np.float32)), dim_order="HWC")
    return float(jod)


def hdr_flip(pred: np.ndarray, gt: np.ndarray, required: bool = False) -> float | None:
    """Mean HDR-FLIP error (0 = identical) of linear RGB images; FLIP picks exposures itself."""
    flip = _load("flip_evaluator", "flip-evaluator", required)
    if flip is None:
        return None
    pred = np.ascontiguousarray(np.maximum(np.asarray(pred, dtype=np.float32), 0.0))
    gt = np.ascontiguousarray(np.asarray(gt, dtype=np.float32))
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} differs from ground truth {gt.shape}")
    _error_map, mean_error, _params = flip.evaluate(gt, pred, "HDR")
    return float(mean_error)
