"""Optional perceptual metrics from other packages: ColorVideoVDP (JOD) and HDR-FLIP.

Both live in the ``metrics`` extra (``pip install .[metrics]``), not in the core install, so
nothing here is imported at module load: each wrapper imports its package on first use. A
package that is absent gives None (or ``MetricUnavailableError`` with ``required=True``); a
package that is present but fails to import always raises ``MetricUnavailableError``.

cvvdp imports torchvision. With torch 2.13.0+cpu, the only torchvision 0.28.0 wheel (PyPI and the
PyTorch CPU index alike) links ``libc10_cuda.so``; its ops fail to load, so ``import torchvision``
raises "operator torchvision::nms does not exist" and also breaks ``import diffusers`` in the same
environment (checked 2026-11). Run cvvdp from a separate environment with a matching CUDA torch.
"""

from __future__ import annotations

import functools
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
    try:
        return importlib.import_module(module)
    except Exception as exc:  # installed but broken, e.g. a torchvision built for another torch
        raise MetricUnavailableError(
            f"the optional metric package '{package}' is installed but fails to import "
            f"({type(exc).__name__}: {exc})", None,
            "install a torch/torchvision pair built together, or use a separate environment "
            "for this metric") from exc


def available() -> dict[str, bool]:
    """Which optional metrics can run here: {'cvvdp': bool, 'flip': bool}."""
    return {"cvvdp": importlib.util.find_spec("pycvvdp") is not None,
            "flip": importlib.util.find_spec("flip_evaluator") is not None}


def cvvdp_jod(pred: np.ndarray, gt: np.ndarray, peak: float = DISPLAY_PEAK,
              display: str = CVVDP_DISPLAY, required: bool = False) -> float | None:
    """ColorVideoVDP quality in JOD (10 = identical), images scaled so max(gt) = ``peak`` cd/m².

    The ``standard_hdr_linear`` display takes absolute linear BT.709 values (clipped by cvvdp to
    0.005..1500 cd/m²). Checked here against cvvdp 0.5.7 with a stand-in for torchvision's
    GaussianBlur: identical images give 10.0 and added noise lowers it.
    """
    pycvvdp = _load("pycvvdp", "cvvdp", required)
    if pycvvdp is None:
        return None
    import torch

    pred_abs, gt_abs = to_absolute(pred, gt, peak)
    metric = _cvvdp_metric(pycvvdp, display)
    jod, _stats = metric.predict(torch.from_numpy(pred_abs.astype(np.float32)),
                                 torch.from_numpy(gt_abs.astype(np.float32)), dim_order="HWC")
    return float(jod)


@functools.lru_cache(maxsize=4)
def _cvvdp_metric(pycvvdp, display: str):
    # Building the metric loads its CSF tables (about a second); reuse it across images.
    import torch

    return pycvvdp.cvvdp(display_name=display, device=torch.device("cpu"))


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
