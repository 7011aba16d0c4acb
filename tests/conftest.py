"""Shared test set-up: offline hub, few threads, deterministic seeds."""

import atexit
import os
import shutil
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# fp32 CPU inference on every machine, so figures do not depend on the CPU having AMX; the
# bf16 path has its own tests (tests/test_cpu_speed_paths.py).
os.environ.setdefault("GMODIFF_CPU_BF16", "0")
# Graphs the OpenVINO road exports go to a folder of this run, never the user's ~/.cache.
_CACHE = tempfile.mkdtemp(prefix="gmodiff-test-cache-")
os.environ["GMODIFF_CACHE_DIR"] = _CACHE
atexit.register(shutil.rmtree, _CACHE, True)

import torch  # noqa: E402

torch.set_num_threads(1)
