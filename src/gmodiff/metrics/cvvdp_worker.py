"""ColorVideoVDP worker, run by the metrics environment's Python (``make metrics-env``).

This file is a standalone script, not a gmodiff module: it runs in ``.venv-metrics/``, which has
cvvdp and a torch/torchvision pair built together but no gmodiff and no diffusers, so it imports
only the standard library, numpy, torch and pycvvdp. :mod:`gmodiff.metrics.cvvdp_env` starts it
with ``python -I cvvdp_worker.py --display NAME`` and talks JSON lines over its stdin/stdout:

- the worker first writes ``{"ready": true, "cvvdp": ..., "torch": ..., "display": ...,
  "info": ...}`` (``info`` is cvvdp's own description of the display model);
- then, for every request line ``{"test": A.npy, "reference": B.npy}`` (float32 (H, W, 3)
  linear BT.709 in absolute cd/m²), it answers ``{"jod": float}`` or ``{"error": str}``;
- it exits at end of input.

``--self-test`` builds the metric, checks that an identical pair gives 10 JOD and a noisier pair
less, prints one line and exits: ``make metrics-env`` runs it so a broken or online-only install
fails at set-up time. Plain ``cvvdp`` reads its tables from its own package data (vvdp_data/,
csf_cache/) and downloads nothing; the ``cvvdp_ml`` variants, which fetch weights from the
Hugging Face hub, are never used here.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

# Set before torch is imported: the hub must never be contacted (plain cvvdp never does).
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _emit(protocol, payload: dict) -> None:
    protocol.write(json.dumps(payload) + "\n")
    protocol.flush()


def _build(display: str):
    import importlib.metadata

    import numpy as np
    import pycvvdp
    import torch

    threads = os.environ.get("OMP_NUM_THREADS")
    if threads and threads.isdigit():
        torch.set_num_threads(int(threads))
    metric = pycvvdp.cvvdp(display_name=display, device=torch.device("cpu"), quiet=True)

    def score(test: np.ndarray, reference: np.ndarray) -> float:
        jod, _stats = metric.predict(torch.from_numpy(np.ascontiguousarray(test, np.float32)),
                                     torch.from_numpy(np.ascontiguousarray(reference, np.float32)),
                                     dim_order="HWC")
        return float(jod)

    meta = {"cvvdp": importlib.metadata.version("cvvdp"), "torch": torch.__version__,
            "display": display, "info": _display_info(pycvvdp, metric, display)}
    return score, meta


def _display_info(pycvvdp, metric, display: str) -> str:
    """The display model in words: cvvdp's own name for it, pixels/degree, peak and black."""
    from pathlib import Path

    models = Path(pycvvdp.__file__).with_name("vvdp_data") / "display_models.json"
    try:
        name = json.loads(models.read_text())[display]["name"]
    except (OSError, KeyError, ValueError):
        name = display
    black, _reflected = metric.display_photometry.get_black_level()
    return (f"{name}; {float(metric.pix_per_deg):.1f} pixels/degree, peak "
            f"{float(metric.display_photometry.get_peak_luminance()):g} cd/m², black "
            f"{float(black):.3g} cd/m²")


def _self_test(display: str) -> int:
    import numpy as np

    score, meta = _build(display)
    rng = np.random.default_rng(0)
    reference = (rng.random((64, 64, 3)) * 900 + 1).astype(np.float32)
    same = score(reference, reference)
    noisy = score(np.maximum(reference + rng.normal(0, 200, reference.shape), 0), reference)
    if not (abs(same - 10.0) < 1e-3 and noisy < same):
        print(f"cvvdp self-test failed: identical pair {same:.3f} JOD, noisy pair {noisy:.3f} JOD",
              file=sys.stderr)
        return 1
    print(f"cvvdp {meta['cvvdp']} (torch {meta['torch']}) works offline: identical pair "
          f"{same:.2f} JOD, noisy pair {noisy:.2f} JOD; {meta['info']}")
    return 0


def _serve(display: str) -> int:
    import numpy as np

    # stdout carries the protocol alone: anything cvvdp or torch prints goes to stderr instead.
    protocol, sys.stdout = sys.stdout, sys.stderr
    score, meta = _build(display)
    _emit(protocol, {"ready": True, **meta})
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            jod = score(np.load(request["test"]), np.load(request["reference"]))
            _emit(protocol, {"jod": jod})
        except Exception as exc:  # one bad pair must not kill the session; the caller raises
            _emit(protocol, {"error": f"{type(exc).__name__}: {exc}"})
    return 0


def main(argv: list[str] | None = None) -> int:
    """Serve JOD requests on stdin (or run ``--self-test``)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--display", default="standard_hdr_linear")
    parser.add_argument("--self-test", action="store_true")
    args = parser.parse_args(argv)
    return _self_test(args.display) if args.self_test else _serve(args.display)


if __name__ == "__main__":
    sys.exit(main())
