"""How much memory a reconstruction may use, how to tile it to fit, and what to say when it fails.

The plan is a simple model of peak resident memory, with figures measured on the bundled model
(``benchmarks/memory.py``, float32 on CPU):

    peak ≈ BASE + IMAGE_BYTES_PER_PX · pixels + max(DaReg's tile, the refiner's tiles)

DaReg's activations cost ~1.5 kB per pixel of the region it runs on, so it runs on the whole
image only while that fits and the image is small (then the output is exactly the untiled one),
else on the largest tile that fits, at most ``MAX_DAREG_TILE`` (bigger tiles are not faster).
The refiner's VAE is tiled beyond ``MAX_VAE_SIDE`` and its UNet tile is sized so one tile's
cross-attention to the whole image's prior tokens stays small.

The budget is ``max_memory`` (``--max-memory``) when given, else ``DEFAULT_FRACTION`` of the memory the machine
has free now (MemAvailable, capped by a cgroup limit or ``ulimit -v``).
"""

from __future__ import annotations

import functools
import math
import re
import resource
from dataclasses import dataclass
from pathlib import Path

from gmodiff.errors import ConfigError, OutOfMemoryError

GIB = 1024 ** 3
MIB = 1024 ** 2
BASE_BYTES = 700 * MIB
"""Python, torch and the bundled models, before any image is read."""
IMAGE_BYTES_PER_PX = 160
"""Whole-image arrays alive during a run: frames, blended DaReg maps, the refiner's inputs, HDR,
writer. Measured peaks imply about 130 (12 and 24 MP, JPEG in and out); the rest is margin for
other formats."""
DAREG_BYTES_PER_PX = 1700
"""DaReg's activations per pixel of the region it runs on (measured 1.45-1.65 kB)."""
REFINER_BYTES_PER_PX = 700
"""The refiner untiled (VAE activations dominate), per pixel."""
REFINER_TILED_BYTES = 300 * MIB
"""The refiner with a tiled VAE: tile activations, independent of the image size."""
ATTENTION_BYTES = 16
"""Bytes per (latent query, prior token) pair of the UNet's cross-attention."""
ATTENTION_BUDGET = 512 * MIB
MAX_WHOLE_IMAGE_PX = 1536 * 1536
"""Above this DaReg always tiles (whole-image runs only cost memory, they are not faster)."""
MAX_DAREG_TILE = 768
DAREG_OVERLAP = 64
"""Pixels DaReg's tiles share. 96 (a 768-px tile's eighth) scored 0.01 dB PSNR-μ higher on
benchmarks/results/tiles.md's scenes and computes 9 % more at 12 MP."""
MIN_DAREG_TILE = 256
MAX_VAE_SIDE = 1024
"""Images with a longer (padded) side run the refiner's VAE in tiles."""
VAE_TILE = 64
"""Refiner VAE tile in latent px (512 image px), overlap 8: at 256 px a 12-MP photo took 336
tiles, each decoder tile re-encoding its crop, and the overlap alone cost a third more work."""
DEFAULT_FRACTION = 0.6
MULTIPLE = 32
UNET_OVERLAP = 16
"""Overlap of a planned run's UNet tiles, latent px (see :func:`plan_memory`)."""
TOKEN_MARGIN = 8
"""UNet tiles of a planned run cross-attend to the prior tokens within this many token cells
(32 px each) of the tile, not to all of the image's: at 12 MP the all-token cross-attention
(11.7 k tokens per query) was most of the UNet's time and forced small tiles, and training
crops never held more than a few hundred tokens either. Images up to ~1 MP see all tokens."""
MAX_MEMORY_BYTES = 1024 ** 5
"""1 PiB (``1024T``): the largest ``--max-memory`` accepted (anything larger is a typo)."""


@dataclass(frozen=True)
class MemoryPlan:
    """Tile sizes for one image under a memory budget (None = whole image)."""

    budget: int
    """Bytes the run may use."""
    dareg_tile: int | None
    dareg_overlap: int
    latent_tile: int
    latent_overlap: int
    vae_tile: int | None
    estimate: int
    """Expected peak resident bytes with these tiles."""
    token_margin: int | None = TOKEN_MARGIN
    """UNet tiles see the prior tokens within this many cells (:data:`TOKEN_MARGIN`)."""

    def describe(self) -> str:
        """One line for logs, e.g. ``DaReg tiles 1024 px, refiner VAE tiles 256 px``."""
        dareg = "whole image" if self.dareg_tile is None else f"{self.dareg_tile}-px tiles"
        vae = "whole image" if self.vae_tile is None else f"{self.vae_tile * 8}-px tiles"
        return (f"memory plan: DaReg {dareg}, refiner VAE {vae}, UNet {self.latent_tile * 8}-px "
                f"tiles; ~{format_bytes(self.estimate)} of {format_bytes(self.budget)}")


def format_bytes(n: float) -> str:
    """``3.2 GB`` / ``512 MB``."""
    return f"{n / GIB:.1f} GB" if n >= GIB else f"{n / MIB:.0f} MB"


def parse_size(text: str) -> int:
    """Bytes from ``6G``, ``6GB``, ``512M``, ``1.5g`` or a plain byte count."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)i?b?\s*", str(text).lower())
    if not match:
        raise ConfigError(f"`max_memory` {text!r} is not a size", fix="write e.g. 6G or 512M")
    value = float(match.group(1)) * 1024 ** " kmgt".index(match.group(2) or " ")
    shown = text if len(str(text)) <= 24 else f"{str(text)[:20]}… ({len(str(text))} characters)"
    if not math.isfinite(value) or value > MAX_MEMORY_BYTES:  # 400 digits: float says inf
        raise ConfigError(f"`max_memory` {shown!r} is too large", fix="give at most 1024T, e.g. 6G")
    if value < 64 * MIB:
        raise ConfigError(f"`max_memory` {text!r} is too small", fix="give at least 64M, e.g. 4G")
    return int(value)


def _meminfo_available() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_room() -> int | None:
    # A container's limit minus what the group already uses (cgroup v2, else v1); it can be far
    # below the host's free memory.
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(limit_file).read_text().strip()
            if limit == "max":
                return None
            usage = int(Path(usage_file).read_text().strip())
            if int(limit) >= 1 << 60:  # "no limit" in cgroup v1
                return None
            return max(int(limit) - usage, 0)
        except (OSError, ValueError):
            continue
    return None


def available_memory() -> int:
    """Bytes this process can still get: MemAvailable, capped by cgroup and ``ulimit -v``."""
    candidates = [v for v in (_meminfo_available(), _cgroup_room()) if v is not None]
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft not in (resource.RLIM_INFINITY, -1):
        candidates.append(int(soft))
    return min(candidates) if candidates else 8 * GIB


def default_budget() -> int:
    """``DEFAULT_FRACTION`` of :func:`available_memory` (room for the rest of the machine)."""
    return int(available_memory() * DEFAULT_FRACTION)


def _padded(n: int) -> int:
    return -(-n // MULTIPLE) * MULTIPLE


def minimum_bytes(height: int, width: int, refine: bool = True) -> int:
    """The least any plan needs for an h×w image (smallest tiles)."""
    pixels = _padded(height) * _padded(width)
    tiles = DAREG_BYTES_PER_PX * MIN_DAREG_TILE ** 2
    if refine:
        tiles = max(tiles, REFINER_TILED_BYTES + ATTENTION_BYTES * 32 ** 2 * (pixels // MULTIPLE ** 2))
    return BASE_BYTES + IMAGE_BYTES_PER_PX * pixels + tiles


def dareg_bytes(height: int, width: int) -> int:
    """What DaReg alone (``method dareg``) needs for an h×w image: it runs on the whole image."""
    pixels = _padded(height) * _padded(width)
    return BASE_BYTES + (IMAGE_BYTES_PER_PX + DAREG_BYTES_PER_PX) * pixels


def check_dareg_fits(height: int, width: int, source: str | Path | None = None,
                     available: int | None = None) -> None:
    """Refuse (before decoding) an image DaReg alone cannot hold in the memory free now."""
    available = available_memory() if available is None else available
    if (need := dareg_bytes(height, width)) > available:
        raise OutOfMemoryError(
            f"a {width}x{height} image needs about {format_bytes(need)} for DaReg alone (it does "
            f"not tile), only {format_bytes(available)} is available", source,
            "use the default method (it tiles to fit), or downscale the frames")


def release_freed_memory() -> None:
    """Hand the allocator's freed pages back to the system (glibc ``malloc_trim``; elsewhere a
    no-op). After the networks' tiles, freed activations stay in the heap and the writers'
    buffers come on top: at 12 MP that raised the peak by ~0.5 GB."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim():
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs ``ldconfig``); None
    where there is none."""
    import ctypes
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def _window(tokens: int, latent_tile: int) -> int:
    """Prior tokens one UNet tile attends to: its own cells and :data:`TOKEN_MARGIN` around."""
    side = latent_tile // 4 + 2 * TOKEN_MARGIN  # a token cell is 4 latent px
    return min(tokens, side * side)


def plan_memory(height: int, width: int, budget: int | None = None, refine: bool = True,
                source: str | Path | None = None) -> MemoryPlan:
    """Tile sizes for an h×w image within ``budget`` bytes (None: :func:`default_budget`).

    Raises :class:`OutOfMemoryError` (before any compute) when even the smallest tiles do not fit.
    """
    budget = default_budget() if budget is None else int(budget)
    pixels = _padded(height) * _padded(width)
    fixed = BASE_BYTES + IMAGE_BYTES_PER_PX * pixels
    room = budget - fixed
    if room < (need := minimum_bytes(height, width, refine)) - fixed:
        raise OutOfMemoryError(
            f"a {width}x{height} image needs about {format_bytes(need)}, but only "
            f"{format_bytes(budget)} may be used", source,
            f"free memory or raise `max_memory={math.ceil(need / GIB * 10) / 10:g}G` "
            "(or downscale the frames)")
    if pixels <= MAX_WHOLE_IMAGE_PX and DAREG_BYTES_PER_PX * pixels <= room:
        dareg_tile, dareg_cost = None, DAREG_BYTES_PER_PX * pixels
    else:
        side = int(math.sqrt(room / DAREG_BYTES_PER_PX)) // MULTIPLE * MULTIPLE
        dareg_tile = max(MIN_DAREG_TILE, min(MAX_DAREG_TILE, side))
        dareg_cost = DAREG_BYTES_PER_PX * dareg_tile ** 2
    overlap = DAREG_OVERLAP if dareg_tile else 0
    long_side = max(_padded(height), _padded(width))
    vae_tile = None if long_side <= MAX_VAE_SIDE and REFINER_BYTES_PER_PX * pixels <= room else VAE_TILE
    tokens = pixels // MULTIPLE ** 2
    vae_cost = REFINER_BYTES_PER_PX * pixels if vae_tile is None else REFINER_TILED_BYTES
    attention_room = min(ATTENTION_BUDGET, max(room - vae_cost, 0))
    latent_tile = 96
    while latent_tile > 32 and ATTENTION_BYTES * latent_tile ** 2 * _window(tokens, latent_tile) > \
            attention_room:
        latent_tile -= 16
    refiner_cost = (vae_cost + ATTENTION_BYTES * latent_tile ** 2 * _window(tokens, latent_tile)
                    if refine else 0)
    # UNet tiles overlap by 16 latent px (128 px): 32 cost 2.35× the image's latent area at
    # 12 MP for outputs 86 dB PSNR-μ apart; up to ~1.5 MP the tiles start where they did.
    return MemoryPlan(budget=budget, dareg_tile=dareg_tile, dareg_overlap=overlap,
                      latent_tile=latent_tile, latent_overlap=min(UNET_OVERLAP, latent_tile // 3),
                      vae_tile=vae_tile, estimate=fixed + max(dareg_cost, refiner_cost))


# ------------------------------------------------------------------------------------------------
# allocation failures

_ALLOCATOR_MESSAGES = ("can't allocate memory", "cannot allocate memory", "out of memory",
                       "defaultcpuallocator", "failed to allocate", "std::bad_alloc")


def is_allocation_failure(exc: BaseException) -> bool:
    """True for any "could not get memory" error: MemoryError (numpy's too), torch's OOM, the
    CPU allocator's RuntimeError, OpenCV's insufficient-memory error."""
    if isinstance(exc, MemoryError):
        return True
    oom = getattr(__import__("sys").modules.get("torch"), "OutOfMemoryError", None)
    if oom is not None and isinstance(exc, oom):
        return True
    if isinstance(exc, (RuntimeError, OSError)) or type(exc).__name__ == "error":  # cv2.error
        text = str(exc).lower()
        return any(m in text for m in _ALLOCATOR_MESSAGES) or "insufficient memory" in text
    return False


def out_of_memory(exc: BaseException, height: int, width: int, source: str | Path | None,
                  plan: MemoryPlan | None = None, device: str = "cpu",
                  also: str | None = None) -> OutOfMemoryError:
    """The one-line error for an allocation failure, with a fix that lowers the peak (``also``
    adds a method-specific one)."""
    if plan is not None:
        smaller = max(minimum_bytes(height, width), int(plan.estimate * 0.6))
        if smaller < plan.estimate:
            fix = (f"retry with `max_memory={math.floor(smaller / GIB * 10) / 10:g}G` "
                   "(smaller tiles), or close other programs")
        else:
            fix = "close other programs, or downscale the frames"
    else:
        fix = "close other programs, or downscale the frames"
    if also:
        fix = f"{fix}; {also}"
    what = f" reconstructing {width}x{height} on {device}" if height and width else ""
    return OutOfMemoryError(f"out of memory{what} ({type(exc).__name__})", source, fix)
