"""Optional perceptual metrics from other packages: ColorVideoVDP (JOD) and HDR-FLIP.

HDR-FLIP (``flip-evaluator``, pinned in requirements.txt) runs in-process; nothing here is
imported at module load, so each wrapper imports its package on first use. A package that is
absent gives None (or ``MetricUnavailableError`` with ``required=True``); a package that is
present but fails to import always raises ``MetricUnavailableError``.

cvvdp imports torchvision. With torch 2.13.0+cpu, the only torchvision 0.28.0 wheel (PyPI and the
PyTorch CPU index alike) links ``libc10_cuda.so``; its ops fail to load, so ``import torchvision``
raises "operator torchvision::nms does not exist" and also breaks ``import diffusers`` in the same
environment (checked 2026-11). cvvdp therefore runs in the separate metrics environment
(``make metrics-env``) through :mod:`gmodiff.metrics.cvvdp_env`; :func:`cvvdp_jod` here is the
one-pair convenience over it.
"""

from __future__ import annotations

import importlib
import importlib.util

import numpy as np

from gmodiff.errors import MetricUnavailableError
from gmodiff.metrics.cvvdp_env import (CVVDP_DISPLAY, cvvdp_available, require_metrics_python,
                                       shared_session)
from gmodiff.metrics.pu21 import DISPLAY_PEAK


def _load(module: str, package: str, required: bool):
    if importlib.util.find_spec(module) is None:
        if required:
            raise MetricUnavailableError(f"the optional metric package '{package}' is not "
                                         "installed", None,
                                         f"pip install {package} (exact pin in requirements.txt)")
        return None
    try:
        return importlib.import_module(module)
    except Exception as exc:  # installed but broken, e.g. a torchvision built for another torch
        raise MetricUnavailableError(
            f"the optional metric package '{package}' is installed but fails to import "
            f"({type(exc).__name__}: {exc})", None,
            "install a torch/torchvision pair built together, or use a separate environment "
            "for this metric") from exc


def flip_available() -> bool:
    """Whether ``flip-evaluator`` is installed in this environment."""
    return importlib.util.find_spec("flip_evaluator") is not None


def available() -> dict[str, bool]:
    """Which optional metrics can run here: {'cvvdp': bool, 'flip': bool}."""

    return {"cvvdp": cvvdp_available(), "flip": flip_available()}


def cvvdp_jod(pred: np.ndarray, gt: np.ndarray, peak: float = DISPLAY_PEAK,
              display: str = CVVDP_DISPLAY, required: bool = False) -> float | None:
    """ColorVideoVDP quality in JOD (10 = identical), images scaled so max(gt) = ``peak`` cd/m².

    Runs in the metrics environment, through the process's shared worker (the first call pays
    its seconds of start-up). Without the environment: None, or ``MetricsEnvError`` (a
    ``MetricUnavailableError``) with ``required``.
    """

    if not cvvdp_available():
        if required:
            require_metrics_python()  # raises the one-line error naming `make metrics-env`
        return None
    return shared_session(display, peak).score(pred, gt)


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
