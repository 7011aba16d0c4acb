"""ColorVideoVDP (JOD) through the metrics environment, in a subprocess.

cvvdp needs torchvision, and no torchvision loads beside the CPU torch 2.13.0 of gmodiff's own
environment (it also breaks ``import diffusers`` there). ``make metrics-env`` therefore builds a
second venv, ``.venv-metrics/``, with cvvdp and a torch/torchvision pair built together, and
:class:`CvvdpSession` runs ``cvvdp_worker.py`` in it: one process per session (importing torch
takes seconds, so :func:`shared_session` keeps one per process), one JSON line per image pair,
the images passed as ``.npy`` files in a private temporary folder.

Both images are scaled by the one factor that makes max(ground truth) = 1000 cd/m² (as for PU21,
spec §5) and scored on cvvdp's ``standard_hdr_linear`` display: a 30-inch 4K HDR monitor
(1500 cd/m² peak, 10 lux) seen from twice its height, taking linear BT.709 in cd/m².
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gmodiff.errors import MetricsEnvError
from gmodiff.metrics.pu21 import DISPLAY_PEAK, to_absolute

CVVDP_DISPLAY = "standard_hdr_linear"
"""The ColorVideoVDP display model HDR images are scored on (linear, absolute units)."""
METRICS_ENV_DIR = ".venv-metrics"
METRICS_ENV_STAMP = ".installed"
"""Written by ``make metrics-env`` after its self-test passed: a half-built env is not used."""
METRICS_PYTHON_VAR = "GMODIFF_METRICS_PYTHON"
"""Environment variable naming a Python that has cvvdp, overriding the ``.venv-metrics`` search."""
MAKE_TARGET = "make metrics-env"
WORKER = Path(__file__).with_name("cvvdp_worker.py")
STDERR_TAIL_CHARS = 300


@dataclass(frozen=True)
class CvvdpInfo:
    """What the worker reported: versions and the display model the JODs refer to."""

    cvvdp: str
    torch: str
    display: str
    info: str
    peak_cd_m2: float = DISPLAY_PEAK

    def describe(self) -> str:
        """One line for reports: metric, version, display model and luminance scaling."""
        return (f"JOD: ColorVideoVDP {self.cvvdp} on display '{self.display}' ({self.info}); "
                f"images scaled so max(GT) = {self.peak_cd_m2:g} cd/m², run on the CPU with "
                f"torch {self.torch} in the metrics environment")


def _checkout_root() -> Path:
    # src/gmodiff/metrics/cvvdp_env.py → the source checkout (meaningful for editable installs)
    return Path(__file__).resolve().parents[3]


def metrics_env_candidates() -> list[Path]:
    """Where the metrics venv is looked for: the working directory, then the source checkout."""
    seen: list[Path] = []
    for root in (Path.cwd(), _checkout_root()):
        candidate = root / METRICS_ENV_DIR
        if candidate not in seen:
            seen.append(candidate)
    return seen


def find_metrics_python() -> Path | None:
    """The Python that runs cvvdp: $GMODIFF_METRICS_PYTHON, else a complete ``.venv-metrics/``."""
    override = os.environ.get(METRICS_PYTHON_VAR)
    if override:
        return Path(override)
    for env in metrics_env_candidates():
        python = env / "bin" / "python"
        if python.is_file() and (env / METRICS_ENV_STAMP).is_file():
            return python
    return None


def require_metrics_python() -> Path:
    """:func:`find_metrics_python`, or a one-line :class:`MetricsEnvError` naming the make rule."""
    python = find_metrics_python()
    if python is None:
        raise MetricsEnvError(
            "ColorVideoVDP needs the metrics environment, which is missing or incomplete",
            metrics_env_candidates()[-1],
            f"run {MAKE_TARGET} in the gmodiff checkout (or set {METRICS_PYTHON_VAR} to a "
            "Python with cvvdp)")
    if not python.is_file():
        raise MetricsEnvError(f"{METRICS_PYTHON_VAR} names no file", python,
                              f"point it at a Python with cvvdp, or unset it and run {MAKE_TARGET}")
    return python


class CvvdpSession:
    """A running cvvdp worker: :meth:`score` gives the JOD of one prediction/ground-truth pair.

    Use as a context manager (or call :meth:`close`); the worker starts on the first
    :meth:`score` or :meth:`start`, so a session that scores nothing costs nothing.
    """

    def __init__(self, python: Path | None = None, display: str = CVVDP_DISPLAY,
                 peak: float = DISPLAY_PEAK):
        self.python = Path(python) if python is not None else None
        self.display = display
        self.peak = peak
        self.info: CvvdpInfo | None = None
        self._process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._stderr = None
        self._python_used: Path | None = None

    def __enter__(self) -> CvvdpSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> CvvdpInfo:
        """Start the worker (once) and return what it reports about itself."""
        if self.info is not None:
            return self.info
        python = self._python_used = self.python or require_metrics_python()
        self._tmp = tempfile.TemporaryDirectory(prefix="gmodiff-cvvdp-")
        self._stderr = open(Path(self._tmp.name) / "stderr.txt", "w+b")  # noqa: SIM115 (closed in close())
        env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        try:
            # -I: the worker must not see gmodiff's sys.path or user site-packages.
            self._process = subprocess.Popen(
                [str(python), "-I", str(WORKER), "--display", self.display],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr, env=env,
                text=True, bufsize=1)
        except OSError as exc:
            self.close()
            raise MetricsEnvError(f"cannot start the metrics environment's Python ({exc.strerror})",
                                  python, f"re-create it with {MAKE_TARGET}") from None
        reply = self._read()
        if not reply.get("ready"):
            self.close()
            raise MetricsEnvError(f"the cvvdp worker did not start ({reply})", python,
                                  f"re-create the environment with {MAKE_TARGET}")
        self.info = CvvdpInfo(cvvdp=reply["cvvdp"], torch=reply["torch"],
                              display=reply["display"], info=reply["info"], peak_cd_m2=self.peak)
        return self.info

    def _read(self) -> dict:
        line = self._process.stdout.readline() if self._process else ""
        if line:
            try:
                return json.loads(line)
            except json.JSONDecodeError:
                pass
        tail = self._stderr_tail()
        self.close()
        raise MetricsEnvError(f"the cvvdp worker stopped ({tail or 'no message'})",
                              self._python_used, f"re-create the environment with {MAKE_TARGET}")

    def _stderr_tail(self) -> str:
        if self._stderr is None:
            return ""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
        self._stderr.seek(0)
        text = self._stderr.read().decode("utf-8", "replace").strip().splitlines()
        # The last line is the exception; keep it short and on one line.
        return (text[-1] if text else "")[-STDERR_TAIL_CHARS:]

    def score(self, pred: np.ndarray, gt: np.ndarray) -> float:
        """JOD (10 = no visible difference) of ``pred`` against ``gt``, linear relative RGB."""
        pred_abs, gt_abs = to_absolute(pred, gt, self.peak)
        self.start()
        folder = Path(self._tmp.name)
        test_path, reference_path = folder / "test.npy", folder / "reference.npy"
        np.save(test_path, pred_abs.astype(np.float32))
        np.save(reference_path, gt_abs.astype(np.float32))
        try:
            self._process.stdin.write(json.dumps({"test": str(test_path),
                                                  "reference": str(reference_path)}) + "\n")
            self._process.stdin.flush()
        except (BrokenPipeError, OSError):
            pass  # the worker died; _read reports its last words
        reply = self._read()
        if "error" in reply:
            raise MetricsEnvError(f"cvvdp failed on an image pair ({reply['error']})",
                                  self._python_used, "check the images' size and values")
        return float(reply["jod"])

    def close(self) -> None:
        """Stop the worker and delete its temporary folder (a later :meth:`score` restarts it)."""
        self.info = None
        if self._process is not None:
            if self._process.poll() is None:
                try:
                    self._process.stdin.close()
                    self._process.wait(timeout=30)
                except (OSError, subprocess.TimeoutExpired):
                    self._process.kill()
                    self._process.wait()
            for stream in (self._process.stdin, self._process.stdout):
                if stream is not None and not stream.closed:
                    stream.close()
            self._process = None
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


_SHARED: dict[tuple[str, str, float], CvvdpSession] = {}


def shared_session(display: str = CVVDP_DISPLAY, peak: float = DISPLAY_PEAK) -> CvvdpSession:
    """This process's worker for (metrics Python, display, peak), started on first use.

    Starting one costs seconds (importing torch), so every evaluation in a process (several
    ``gmodiff eval`` calls, ``evaluate_pair(extra=True)`` in a loop) shares it; it stops at exit.
    """
    python = require_metrics_python()
    key = (str(python), display, float(peak))
    if key not in _SHARED:
        if not _SHARED:
            atexit.register(close_shared_sessions)
        _SHARED[key] = CvvdpSession(python, display, peak)
    return _SHARED[key]


def close_shared_sessions() -> None:
    """Stop every worker :func:`shared_session` started."""
    while _SHARED:
        _SHARED.popitem()[1].close()


def cvvdp_available() -> bool:
    """Whether a metrics environment (or $GMODIFF_METRICS_PYTHON) is there to run cvvdp."""
    return find_metrics_python() is not None


__all__ = ["CVVDP_DISPLAY", "CvvdpInfo", "CvvdpSession", "MetricsEnvError",
           "close_shared_sessions", "cvvdp_available", "find_metrics_python",
           "require_metrics_python", "shared_session"]
