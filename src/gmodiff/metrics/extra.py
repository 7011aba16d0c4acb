"""The optional metrics of one evaluation run (``--extra cvvdp,flip``), scored pair by pair.

:class:`ExtraMetrics` checks up front that each chosen metric can run (so a missing metrics
environment fails before any image is read), keeps one cvvdp worker alive for the whole run, and
says in :meth:`ExtraMetrics.notes` what each number means (display model, versions, direction).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable

import numpy as np

from gmodiff.errors import ConfigError
from gmodiff.metrics.cvvdp_env import (CvvdpSession, cvvdp_available, require_metrics_python,
                                       shared_session)
from gmodiff.metrics.external import flip_available, hdr_flip

EXTRA_METRICS: dict[str, str] = {"cvvdp": "cvvdp_jod", "flip": "hdr_flip"}
"""``--extra`` name → the metric key it adds to a report, in report order."""
ALL = "all"


def parse_extra(text: str | None) -> tuple[str, ...]:
    """``"cvvdp,flip"`` / ``"all"`` / ``""`` → the chosen names, in :data:`EXTRA_METRICS` order."""
    if not text:
        return ()
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    if ALL in names:
        names = (names - {ALL}) | set(EXTRA_METRICS)
    unknown = sorted(names - set(EXTRA_METRICS))
    if unknown:
        raise ConfigError(f"unknown extra metric {', '.join(map(repr, unknown))}",
                          fix=f"use a comma list of {', '.join(EXTRA_METRICS)} (or {ALL})")
    return tuple(name for name in EXTRA_METRICS if name in names)


class ExtraMetrics:
    """cvvdp and/or HDR-FLIP for many pairs; use as a context manager.

    With ``required`` (the CLI), a metric that cannot run raises its one-line error at
    :meth:`start`; without it (``evaluate_pair(extra=True)``), it is left out silently.
    """

    def __init__(self, names: Iterable[str] = tuple(EXTRA_METRICS), required: bool = True):
        self.names = parse_extra(",".join(names))
        self.required = required
        self._cvvdp: CvvdpSession | None = None
        self._cvvdp_info = None  # kept after close() for notes()
        self._started = False

    def __enter__(self) -> ExtraMetrics:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> ExtraMetrics:
        """Check each metric can run and start the cvvdp worker; drop the rest unless required."""
        if self._started:
            return self
        runnable = []
        for name in self.names:
            if name == "cvvdp":
                if not cvvdp_available() and not self.required:
                    continue
                require_metrics_python()  # the one-line error, even if a worker is running
                self._cvvdp = shared_session()
                self._cvvdp_info = self._cvvdp.start()
            elif name == "flip":
                if not flip_available() and not self.required:
                    continue
                hdr_flip(np.ones((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32),
                         required=True)  # imports it: a broken install fails here, not mid-run
            runnable.append(name)
        self.names = tuple(runnable)
        self._started = True
        return self

    @property
    def metric_keys(self) -> list[str]:
        """Report keys this run adds (e.g. ``cvvdp_jod``, ``hdr_flip``)."""
        return [EXTRA_METRICS[name] for name in self.names]

    def score(self, pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
        """The chosen metrics of ``pred`` against ``gt`` (linear RGB relative to t=1)."""
        self.start()
        scores: dict[str, float] = {}
        for name in self.names:
            if name == "cvvdp":
                scores["cvvdp_jod"] = self._cvvdp.score(pred, gt)
            elif name == "flip":
                scores["hdr_flip"] = float(hdr_flip(pred, gt, required=True))
        return scores

    def notes(self) -> list[str]:
        """One line per metric: what it is, its version and settings, which way is better."""
        lines = []
        for name in self.names:
            if name == "cvvdp" and self._cvvdp_info is not None:
                lines.append(self._cvvdp_info.describe() + "; higher is better (10 = identical)")
            elif name == "flip":
                lines.append(f"FLIP: HDR-FLIP mean error (flip-evaluator "
                             f"{importlib.metadata.version('flip-evaluator')}, exposures chosen "
                             "by FLIP from the ground truth); lower is better (0 = identical)")
        return lines

    def close(self) -> None:
        """Let go of the cvvdp worker (shared by the process; it stops at exit)."""
        self._cvvdp = None
        self._started = False
