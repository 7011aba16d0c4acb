"""Check a device name ("cpu", "cuda", "cuda:1", "mps") before any model is loaded onto it."""

from __future__ import annotations

from gmodiff.errors import ConfigError

FIX = "use `device=cpu`, or `device=cuda` (cuda:N) on a machine with an NVIDIA GPU and a CUDA build of torch"


def check_device(name: str) -> str:
    """``name`` if torch can run on that device here, else a one-line ``ConfigError``."""
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as exc:
        raise ConfigError(f"unknown device {name!r} ({str(exc).splitlines()[0][:80]})",
                          fix=FIX) from None
    if device.type == "cpu":
        return name
    if device.type == "cuda":
        if not torch.cuda.is_available():
            build = "this torch build has no CUDA" if torch.version.cuda is None else \
                "no CUDA GPU is visible"
            raise ConfigError(f"device {name!r} is not available ({build})", fix=FIX)
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise ConfigError(f"device {name!r} does not exist ({count} CUDA GPU(s) visible)",
                              fix=f"use `device=cuda:0` .. `device=cuda:{count - 1}`")
        return name
    if device.type == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise ConfigError(f"device {name!r} is not available", fix=FIX)
        return name
    raise ConfigError(f"device {name!r} is not supported", fix=FIX)


CPU_BF16_ENV = "GMODIFF_CPU_BF16"
"""Set to 0 to keep CPU inference in fp32 on a CPU that would run it in bf16."""


def cpu_bf16_fast() -> bool:
    """Whether CPU inference should run its convolutions in bf16 (autocast).

    Only where the CPU has AMX tiles: there oneDNN's bf16 convolutions halve DaReg's time
    (``benchmarks/results/speed.md``); with AVX-512 BF16 alone, or none, fp32 is as fast or
    faster. ``GMODIFF_CPU_BF16=0`` turns it off, ``=1`` forces it (tests)."""
    import os

    import torch

    forced = os.environ.get(CPU_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1"
    try:
        return bool(torch.cpu._is_amx_tile_supported())
    except AttributeError:  # an older torch without the probe
        return False
