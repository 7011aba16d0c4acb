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
