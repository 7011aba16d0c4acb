"""EVALUATION ONLY: the out-of-distribution scene set of benchmarks/ood.py (radiance, curves, cache).

Radiance comes from sources no training or tuning run may use (docs/data.md):
- ``@pmndrs/assets`` HDRIs held out by the data split: dawn, lobby, sunrise, sunset, venice,
  workshop (npm, tools/package.json; base64 EXR modules, 512×256 panoramas);
- blender-data's held-out panoramas sunrise and sunset (Debian ``blender-data``);
- the Pisa courtyard cube map shipped by the npm package ``three-envmap-helper`` (256² faces);
- procedural dark rooms and night streets of :mod:`ood_render` (ray cast; eval-only).

Each scene is simulated with the spec §6 camera model (gmodiff.data.simulate) under one of
:data:`CONDITIONS`, seeded from its name, and cached under ``benchmarks/.cache/ood`` so reruns
skip the rendering and simulation.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import ood_render  # same folder: benchmarks run as scripts
from gmodiff.camera.response import GammaResponse, Response, SRGBResponse
from gmodiff.data.simulate import SimulationConfig, fit_size, simulate
from gmodiff.data.sources import (BLENDER_HELD_OUT, BLENDER_WORLD_DIR, PMNDRS_HELD_OUT, PMNDRS_TRAIN,
                                  perspective_views, pmndrs_hdri_path, read_pmndrs_hdri,
                                  read_radiance_file)
from gmodiff.errors import GmodiffError
from gmodiff.io.atomic import atomic_path
from gmodiff.io.scene import Scene

REPO = Path(__file__).resolve().parents[1]
TOOLS_MODULES = REPO / "tools" / "node_modules"
PISA_DIR = TOOLS_MODULES / "three-envmap-helper" / "assets"
CACHE_DIR = REPO / "benchmarks" / ".cache" / "ood"
CACHE_VERSION = 3
"""Bump when scene construction changes, so stale cached brackets are not reused."""


# ---------------------------------------------------------------------------------------------
# Camera curves outside the simulator's training family (data.response.RESPONSE_FAMILIES)


@dataclass(frozen=True)
class HLGResponse(Response):
    """ARIB STD-B67 hybrid log-gamma OETF: √(3x) below 1/12, then a log; f(1) = 1.

    Cameras record it for HDR video. Its square-root toe and logarithmic shoulder give 18 % grey
    an encoded 0.67, brighter than any curve the simulator draws (MID_GREY_RANGE ends at 0.62).
    """

    name: str = "hlg"

    _A, _B, _C = 0.17883277, 0.28466892, 0.55991073

    def _forward(self, x: np.ndarray) -> np.ndarray:
        log_part = self._A * np.log(np.maximum(12 * x - self._B, 1e-12)) + self._C
        return np.where(x <= 1 / 12, np.sqrt(3 * x), log_part)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        return np.where(y <= 0.5, y * y / 3, (np.exp((y - self._C) / self._A) + self._B) / 12)


@dataclass(frozen=True)
class CameraLogResponse(Response):
    """A cine-camera log curve (ARRI LogC3 form, EI 800), rescaled so f(0) = 0 and f(1) = 1.

    Sensor saturation maps to scene value 55.08 (LogC's top), so a linear 0.18 encodes to 0.80
    (the simulator's curves: 0.35–0.62) and the scene's mid grey (0.18 / 55) to 0.33. Far flatter
    than the simulator's μ-law family (its strength stops at 60; this is ≈ 5800).
    """

    name: str = "logc"

    _CUT, _A, _B, _C, _D, _E, _F = 0.010591, 5.555556, 0.052272, 0.247190, 0.385537, 5.367655, 0.092809
    _SCALE = 55.08

    def _raw(self, scene: np.ndarray) -> np.ndarray:
        return np.where(scene > self._CUT, self._C * np.log10(self._A * scene + self._B) + self._D,
                        self._E * scene + self._F)

    def _forward(self, x: np.ndarray) -> np.ndarray:
        top = float(self._raw(np.array(self._SCALE)))
        return (self._raw(x * self._SCALE) - self._F) / (top - self._F)

    def _inverse(self, y: np.ndarray) -> np.ndarray:
        top = float(self._raw(np.array(self._SCALE)))
        raw = y * (top - self._F) + self._F
        cut_raw = self._E * self._CUT + self._F
        scene = np.where(raw > cut_raw, (10 ** ((raw - self._D) / self._C) - self._B) / self._A,
                         (raw - self._F) / self._E)
        return np.clip(scene / self._SCALE, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# Conditions and scene list


@dataclass(frozen=True)
class Condition:
    """How a scene's bracket is taken: spacing, camera curve, sensor noise."""

    label: str
    stops: float
    response: Response
    noise: bool


CONDITIONS: tuple[Condition, ...] = (
    Condition("2 stops, gamma 2.2, noise", 2.0, GammaResponse(2.2), True),
    Condition("3 stops, gamma 2.2, noise", 3.0, GammaResponse(2.2), True),
    Condition("2 stops, sRGB, noise", 2.0, SRGBResponse(), True),
    Condition("3 stops, sRGB, noise", 3.0, SRGBResponse(), True),
    Condition("2 stops, HLG curve (outside training family), noise", 2.0, HLGResponse(), True),
    Condition("3 stops, LogC curve (outside training family), noise", 3.0, CameraLogResponse(), True),
    Condition("2 stops, sRGB, no noise", 2.0, SRGBResponse(), False),
    Condition("3 stops, gamma 2.2, no noise", 3.0, GammaResponse(2.2), False),
)
READ_NOISE = (1.5e-3, 2.5e-3)
"""Read-noise standard deviation (of saturation) when noise is on: "about 2e-3"."""


@dataclass(frozen=True)
class SceneSpec:
    """One benchmark scene: where its radiance comes from and how it is bracketed."""

    name: str
    kind: str
    """``dark room``, ``night street``, ``real interior`` or ``real daylight``."""
    source: str
    """``room``, ``street``, ``pmndrs:NAME``, ``blender:NAME`` or ``pisa:FACE``."""
    view: int
    condition: Condition
    dark_exposure: bool = field(default=False)
    """Expose for the small bright source (its highlights kept), so most pixels sit deep down."""


def _real_specs() -> list[tuple[str, str, str, int]]:
    """(name, kind, source, view) of the real HDR photographs, 16 scenes."""
    specs = []
    for name in PMNDRS_HELD_OUT:
        kind = "real interior" if name in ("lobby", "workshop") else "real daylight"
        specs += [(f"pmndrs-{name}-{v}", kind, f"pmndrs:{name}", v) for v in range(2)]
    specs += [(f"blender-{name}-0", "real daylight", f"blender:{name}", 0) for name in BLENDER_HELD_OUT]
    specs += [(f"pisa-{face}", "real daylight", f"pisa:{face}", 0) for face in ("px", "nz")]
    return specs


def scene_specs() -> list[SceneSpec]:
    """The 32 scenes, 4 per condition: two dark (room/street) and two real photographs each."""
    dark = []
    for k in range(10):
        dark.append((f"room-{k:02d}", "dark room", "room", k))
        if k < 6:
            dark.append((f"street-{k:02d}", "night street", "street", k))
    real = _real_specs()
    # Interleave so each condition sees different real sources (not both views of one HDRI).
    real = real[0::2] + real[1::2]
    specs = []
    for index, condition in enumerate(CONDITIONS):
        for name, kind, source, view in dark[2 * index:2 * index + 2]:
            specs.append(SceneSpec(name, kind, source, view, condition, dark_exposure=True))
        for name, kind, source, view in real[2 * index:2 * index + 2]:
            # Interiors are exposed for their windows and lamps, like the rooms.
            specs.append(SceneSpec(name, kind, source, view, condition,
                                   dark_exposure=kind == "real interior"))
    return specs


# ---------------------------------------------------------------------------------------------
# Radiance sources


def missing_sources() -> list[str]:
    """Install hints for the radiance sources that are not on this machine (empty: all there)."""
    missing = []
    try:
        for name in PMNDRS_HELD_OUT:
            pmndrs_hdri_path(name)
    except GmodiffError:
        missing.append("@pmndrs/assets (npm ci --prefix tools, or scripts/install-system.sh)")
    if not all((PISA_DIR / f"{f}.hdr").is_file() for f in ("px", "nz")):
        missing.append("three-envmap-helper (npm ci --prefix tools, or scripts/install-system.sh)")
    if not all((BLENDER_WORLD_DIR / f"{n}.exr").is_file() for n in BLENDER_HELD_OUT):
        missing.append("blender-data (apt-get install blender-data)")
    return missing


def read_pmndrs(name: str) -> np.ndarray:
    """Decode the held-out ``@pmndrs/assets/hdri/NAME.exr.js`` (an ES module holding a base64 EXR)."""
    if name in PMNDRS_TRAIN:
        raise ValueError(f"{name!r} is a training HDRI (docs/data.md); the benchmark uses held-out ones")
    return read_pmndrs_hdri(pmndrs_hdri_path(name))


def _pisa_face(face: str, size: tuple[int, int]) -> np.ndarray:
    """One cube-map face (a 90° perspective photograph), cropped to the aspect and resampled."""
    return fit_size(read_radiance_file(PISA_DIR / f"{face}.hdr"), size)


def radiance_for(spec: SceneSpec, size: tuple[int, int]) -> np.ndarray:
    """Linear radiance (H, W, 3) of ``spec`` at ``size`` = (height, width)."""
    h, w = size
    seed = int(zlib.crc32(spec.name.encode()))
    if spec.source == "room":
        return ood_render.dark_room(h, w, seed)
    if spec.source == "street":
        return ood_render.night_street(h, w, seed)
    kind, name = spec.source.split(":")
    if kind == "pisa":
        return _pisa_face(name, size)
    panorama = read_pmndrs(name) if kind == "pmndrs" else read_radiance_file(
        BLENDER_WORLD_DIR / f"{name}.exr")
    # Wide views: the panoramas are small (512 or 1024 px around), so a narrow view would be a
    # blur of a few dozen source pixels.
    rng = np.random.default_rng([seed, spec.view])
    return perspective_views(panorama, 1, fov_deg=100.0, size=(h, w), rng=rng, max_pitch_deg=10.0)[0]


DARK_TARGET = (0.4, 0.7)
"""Fraction of pixels a dark-exposed scene puts below 1e-3 of its peak (drawn per scene)."""
DARK_LEVEL = 0.85
"""Short-frame linear level of the highlight percentile in dark-exposed scenes."""


def dark_highlight_percentile(radiance: np.ndarray, target: float) -> float:
    """The simulator's highlight percentile that puts ``target`` of the pixels below 1e-3 of peak.

    The simulator maps its highlight percentile to :data:`DARK_LEVEL` in the short frame and
    clips there; we want the ``target`` quantile at 1e-3 of that clip, so the percentile whose
    value is DARK_LEVEL / 1e-3 × that quantile. A scene with less range than that is exposed for
    its brightest pixel (percentile 100) and ends up less dark than the target.
    """
    peak = radiance.max(axis=-1).ravel()
    wanted = DARK_LEVEL / 1e-3 * float(np.quantile(peak, target))
    return float(min(100.0, 100.0 * np.mean(peak < wanted)))


def simulation_config(spec: SceneSpec, size: tuple[int, int],
                      radiance: np.ndarray | None = None) -> SimulationConfig:
    """The spec §6 camera model for ``spec``: its condition, shake and moving objects on.

    Dark-exposed scenes (``radiance`` needed) keep their lamps in the short frame, as a
    photographer bracketing a dark room would, so 40-70 % of the pixels sit below 1e-3 of the peak.
    """
    condition = spec.condition
    extra = {}
    if spec.dark_exposure:
        if radiance is None:
            raise ValueError("a dark-exposed scene needs its radiance to set the exposure")
        rng = np.random.default_rng([int(zlib.crc32(spec.name.encode())), 5])
        percentile = dark_highlight_percentile(radiance, float(rng.uniform(*DARK_TARGET)))
        extra = {"highlight_percentile": (percentile, percentile),
                 "highlight_level": (DARK_LEVEL, DARK_LEVEL), "min_reference_median": 1e-9}
    return SimulationConfig(ev_spacing_stops=condition.stops, response=condition.response,
                            noise=condition.noise, read_noise=READ_NOISE, motion=True, size=size,
                            **extra)


# ---------------------------------------------------------------------------------------------
# Building and caching


def _cache_key(spec: SceneSpec, size: tuple[int, int]) -> str:
    text = repr((CACHE_VERSION, spec, size))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _save(path: Path, scene: Scene) -> None:
    frames = np.stack([np.rint(f * 65535).astype(np.uint16) for f in scene.frames])
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            motion = (np.zeros(frames.shape[1:3], np.float32) if scene.motion_mask is None
                      else np.asarray(scene.motion_mask, np.float32))
            np.savez(handle, frames=frames, times=scene.exposure_times,
                     ground_truth=scene.ground_truth.astype(np.float32),
                     motion_mask=np.rint(motion * 255).astype(np.uint8))


def _load(path: Path, name: str) -> Scene:
    with np.load(path) as data:
        frames = [f.astype(np.float32) / 65535.0 for f in data["frames"]]
        return Scene(frames=frames, exposure_times=data["times"], reference_index=1,
                     ground_truth=data["ground_truth"], name=name,
                     motion_mask=data["motion_mask"].astype(np.float32) / 255.0)


def build_scene(spec: SceneSpec, size: tuple[int, int], cache_dir: Path | None = CACHE_DIR) -> Scene:
    """Render and simulate one scene (16-bit frames), reusing the on-disk cache when present."""
    path = None if cache_dir is None else cache_dir / f"{spec.name}-{_cache_key(spec, size)}.npz"
    if path is not None and path.is_file():
        return _load(path, spec.name)
    radiance = radiance_for(spec, size)
    seed = np.random.default_rng([int(zlib.crc32(spec.name.encode())), 6])
    scene = simulate(radiance, simulation_config(spec, size, radiance), seed=seed, name=spec.name).scene
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        _save(path, scene)
        scene = _load(path, spec.name)  # identical bits whether cached or fresh
    return scene


def mid_grey(response: Response) -> float:
    """Encoded value of 18 % grey (for the report)."""
    return float(response.forward(np.array(0.18)))


__all__ = ["CONDITIONS", "Condition", "CameraLogResponse", "HLGResponse", "SceneSpec",
           "build_scene", "mid_grey", "missing_sources", "radiance_for", "scene_specs",
           "simulation_config"]
