"""Shared test set-up: offline hub, few threads, deterministic seeds."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
# fp32 CPU inference on every machine, so figures do not depend on the CPU having AMX; the
# bf16 path has its own tests (tests/test_cpu_speed_paths.py).
os.environ.setdefault("GMODIFF_CPU_BF16", "0")

import torch  # noqa: E402

torch.set_num_threads(1)
