"""Bracket simulator: HDR radiance → a Kalantari-style exposure stack with ground truth (spec §6).

Per scene: pick t1 so the shortest frame keeps most highlights; expose frames at
t1·2^{0, s, 2s} (s in stops); move the camera slightly and move a few objects on the
non-reference frames only; add Poisson–Gaussian sensor noise in linear space; clip at
saturation; apply a camera response; quantise to 16 bits. The ground truth is the
reference-aligned radiance × t1 clipped to [0, 1], i.e. relative to the t=1 (shortest) exposure,
so ``H ≤ L_ref + 1/64`` holds as the gain-map codec expects. Everything is drawn from one seeded
generator in a fixed order, so the same seed gives the same arrays (and the same files).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gmodiff.camera.response import Response, response_by_name
from gmodiff.errors import ConfigError, HDRValueError, OutputError
from gmodiff.io.scene import Scene

Range = tuple[float, float]


@dataclass
class SimulationConfig:
    """How brackets are simulated. Pairs ``(lo, hi)`` are uniform ranges drawn per scene."""

    ev_spacing_stops: float | Range = 2.0
    """Stops between consecutive frames: a fixed value or a (lo, hi) range."""
    n_frames: int = 3
    reference_index: int = 1
    motion: bool = True
    """Camera shake and moving objects on the non-reference frames."""
    shake_translation: float = 0.01
    """Largest camera translation, as a fraction of the image's shorter side."""
    shake_rotation_deg: float = 1.0
    shake_scale: float = 0.01
    moving_objects: tuple[int, int] = (1, 3)
    """Inclusive range of the number of moving objects."""
    object_size: Range = (0.1, 0.25)
    """Object diameter as a fraction of the shorter side."""
    object_displacement: Range = (0.03, 0.08)
    """Object shift per frame step, as a fraction of the shorter side."""
    noise: bool = True
    shot_noise: Range = (1e-4, 1e-3)
    """Photon-noise variance per unit linear signal (1 / full-well capacity, saturation = 1)."""
    read_noise: Range = (2e-4, 2e-3)
    """Read-noise standard deviation, in units of saturation."""
    response: str | Response = "random"
    """Camera response: ``random``, a family name, ``srgb`` or ``gammaX.Y`` (data.response), or a
    :class:`Response` instance (e.g. an evaluation-only curve outside the drawn families)."""
    bit_depth: int = 16
    size: tuple[int, int] | None = None
    """Output (height, width); the radiance is centre-cropped to the aspect and resampled."""
    highlight_percentile: Range = (98.5, 99.8)
    """Percentile of per-pixel max-channel radiance that the shortest frame maps near 1..."""
    highlight_level: Range = (0.7, 1.0)
    """...to this linear level."""
    min_reference_median: float = 0.01
    """Floor on the reference frame's median linear level, so a tiny sun cannot black out a scene."""
    exposure_shift_stops: float | Range = 0.0
    """Extra exposure of the whole bracket after the highlight rule (a range varies where the
    reference frame's level sits: negative keeps more highlights and deepens the shadows)."""

    def __post_init__(self) -> None:
        spacing = self.ev_spacing_stops
        lo, hi = (spacing, spacing) if isinstance(spacing, (int, float)) else spacing
        if not 0.5 <= lo <= hi <= 6.0:
            raise ConfigError(f"ev_spacing_stops {spacing!r} out of range", fix="use 0.5–6 stops")
        if self.n_frames < 2 or not 0 <= self.reference_index < self.n_frames:
            raise ConfigError(f"need ≥ 2 frames and a reference index inside them "
                              f"(got {self.n_frames}, {self.reference_index})")
        if self.bit_depth not in (8, 16):
            raise ConfigError(f"bit_depth {self.bit_depth} unsupported", fix="use 8 or 16")
        if self.size is not None and (len(self.size) != 2 or min(self.size) < 8):
            raise ConfigError(f"size {self.size!r} invalid", fix="give (height, width), each ≥ 8")


@dataclass
class Simulation:
    """A simulated bracket plus what was drawn to make it (for tests, masks and debugging)."""

    scene: Scene
    response: Response
    spacing_stops: float
    t1: float
    """Scale from input radiance units to the shortest frame's linear exposure."""
    motion_masks: list[np.ndarray] = field(default_factory=list)
    """Per frame (H, W) in [0, 1]: where moving objects differ from the reference (0 on ref)."""
    shakes: list[np.ndarray] = field(default_factory=list)
    """Per frame 2×3 affine camera motion applied to the radiance (identity on ref)."""


def _draw(rng: np.random.Generator, value: float | Range) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    return float(rng.uniform(value[0], value[1]))


def fit_size(radiance: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Centre-crop ``radiance`` to the aspect of ``size`` = (height, width), then resample."""
    h, w = radiance.shape[:2]
    out_h, out_w = int(size[0]), int(size[1])
    if (h, w) == (out_h, out_w):
        return radiance
    target_aspect = out_w / out_h
    if w / h > target_aspect:
        crop_w = max(1, round(h * target_aspect))
        x0 = (w - crop_w) // 2
        radiance = radiance[:, x0:x0 + crop_w]
    else:
        crop_h = max(1, round(w / target_aspect))
        y0 = (h - crop_h) // 2
        radiance = radiance[y0:y0 + crop_h]
    shrinking = radiance.shape[0] > out_h
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    return cv2.resize(np.ascontiguousarray(radiance), (out_w, out_h), interpolation=interpolation)


def _check_radiance(radiance: np.ndarray) -> np.ndarray:
    radiance = np.asarray(radiance, dtype=np.float32)
    if radiance.ndim != 3 or radiance.shape[2] != 3:
        raise HDRValueError(f"radiance must be (H, W, 3), got shape {radiance.shape}")
    if not np.isfinite(radiance).all():
        raise HDRValueError("radiance contains NaN or infinite values",
                            fix="clean the HDR source first")
    radiance = np.maximum(radiance, 0.0)
    if not np.any(radiance > 0):
        raise HDRValueError("radiance is entirely black", fix="use a source with light in it")
    return radiance


def _choose_t1(radiance: np.ndarray, config: SimulationConfig, t_ref: float,
               rng: np.random.Generator) -> float:
    """Exposure scale so a high radiance percentile lands near 1 in the shortest frame."""
    peak = radiance.max(axis=-1)
    level = _draw(rng, config.highlight_level)
    highlight = float(np.percentile(peak, _draw(rng, config.highlight_percentile)))
    t1 = level / max(highlight, 1e-12)
    median = float(np.median(peak))
    if median > 0:
        # Scenes dominated by a tiny, very bright source would otherwise be black everywhere else.
        t1 = max(t1, config.min_reference_median / (median * t_ref))
    return t1


def _shake(rng: np.random.Generator, h: int, w: int, config: SimulationConfig) -> np.ndarray:
    """A small random similarity transform about the image centre (2×3 affine)."""
    side = min(h, w)
    angle = rng.uniform(-1, 1) * config.shake_rotation_deg
    scale = 1.0 + rng.uniform(-1, 1) * config.shake_scale
    tx, ty = rng.uniform(-1, 1, 2) * config.shake_translation * side
    matrix = cv2.getRotationMatrix2D(((w - 1) / 2, (h - 1) / 2), angle, scale)
    matrix[:, 2] += (tx, ty)
    return matrix


@dataclass
class _MovingObject:
    texture: np.ndarray  # (d, d, 3) radiance patch
    alpha: np.ndarray  # (d, d) soft ellipse
    centre: np.ndarray  # (y, x) in the reference frame
    velocity: np.ndarray  # (dy, dx) per frame step


def _moving_objects(rng: np.random.Generator, radiance: np.ndarray,
                    config: SimulationConfig) -> list[_MovingObject]:
    """Objects cut from elsewhere in the scene (realistic texture and levels) as soft ellipses."""
    h, w = radiance.shape[:2]
    side = min(h, w)
    objects = []
    count = int(rng.integers(config.moving_objects[0], config.moving_objects[1] + 1))
    for _ in range(count):
        diameter = max(4, round(_draw(rng, config.object_size) * side))
        diameter = min(diameter, h - 1, w - 1)
        sy, sx = int(rng.integers(0, h - diameter + 1)), int(rng.integers(0, w - diameter + 1))
        gain = float(np.exp(rng.uniform(math.log(0.3), math.log(3.0))))
        texture = radiance[sy:sy + diameter, sx:sx + diameter] * gain
        ry, rx = diameter / 2 * rng.uniform(0.6, 1.0), diameter / 2 * rng.uniform(0.6, 1.0)
        yy, xx = np.mgrid[0:diameter, 0:diameter].astype(np.float32) - (diameter - 1) / 2
        radius = np.sqrt((yy / ry) ** 2 + (xx / rx) ** 2)
        alpha = np.clip((1.0 - radius) * min(ry, rx) / 1.5 + 0.5, 0.0, 1.0).astype(np.float32)
        centre = np.array([rng.uniform(0, h), rng.uniform(0, w)])
        heading = rng.uniform(0, 2 * math.pi)
        speed = _draw(rng, config.object_displacement) * side
        velocity = speed * np.array([math.sin(heading), math.cos(heading)])
        objects.append(_MovingObject(texture.astype(np.float32), alpha, centre, velocity))
    return objects


def _paste(canvas: np.ndarray, coverage: np.ndarray, obj: _MovingObject,
           centre: np.ndarray) -> None:
    """Alpha-composite ``obj`` onto ``canvas`` in place at a sub-pixel ``centre`` (y, x)."""
    h, w = canvas.shape[:2]
    d = obj.alpha.shape[0]
    # Sub-pixel placement: translate the patch by an affine warp onto the full canvas.
    shift = np.array([[1.0, 0.0, centre[1] - (d - 1) / 2], [0.0, 1.0, centre[0] - (d - 1) / 2]])
    alpha = cv2.warpAffine(obj.alpha, shift, (w, h), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    texture = cv2.warpAffine(obj.texture, shift, (w, h), flags=cv2.INTER_LINEAR,
                             borderMode=cv2.BORDER_REFLECT)
    canvas *= (1.0 - alpha)[..., None]
    canvas += alpha[..., None] * texture
    np.maximum(coverage, alpha, out=coverage)


def _expose(linear: np.ndarray, rng: np.random.Generator, shot: float, read: float,
            noise: bool) -> np.ndarray:
    """Sensor: Poisson photon noise + Gaussian read noise on linear exposure, clipped to [0, 1]."""
    if not noise:
        return np.clip(linear, 0.0, 1.0)
    # Anything above ~2 saturates regardless of noise; capping keeps Poisson rates small.
    signal = np.minimum(linear.astype(np.float64), 2.0)
    electrons = rng.poisson(signal / shot)
    noisy = electrons * shot + rng.normal(0.0, read, size=signal.shape)
    return np.clip(noisy, 0.0, 1.0)


def _quantise(encoded: np.ndarray, bit_depth: int) -> np.ndarray:
    peak = 65535.0 if bit_depth == 16 else 255.0
    return (np.rint(np.clip(encoded, 0.0, 1.0) * peak) / peak).astype(np.float32)


def simulate(radiance: np.ndarray, config: SimulationConfig | None = None,
             seed: int | np.random.Generator = 0, name: str = "scene") -> Simulation:
    """Simulate one bracket from linear radiance (H, W, 3); see the module docstring."""
    config = config or SimulationConfig()
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    radiance = _check_radiance(radiance)
    if config.size is not None:
        radiance = fit_size(radiance, config.size)
    h, w = radiance.shape[:2]
    ref = config.reference_index

    spacing = _draw(rng, config.ev_spacing_stops)
    times = 2.0 ** (spacing * np.arange(config.n_frames))
    response = (config.response if isinstance(config.response, Response)
                else response_by_name(config.response, rng))
    shot = _draw(rng, config.shot_noise)
    read = _draw(rng, config.read_noise)
    t1 = _choose_t1(radiance, config, float(times[ref]), rng)
    t1 *= 2.0 ** _draw(rng, config.exposure_shift_stops)  # a fixed 0 draws nothing

    objects = _moving_objects(rng, radiance, config) if config.motion else []
    # Where objects sit in the reference: part of every non-reference frame's motion mask.
    reference_coverage = np.zeros((h, w), np.float32)
    for obj in objects:
        _paste(np.zeros((h, w, 3), np.float32), reference_coverage, obj, obj.centre)
    frames, masks, shakes = [], [], []
    ground_truth = None
    for index, time in enumerate(times):
        step = index - ref
        scene_radiance = radiance.copy()
        coverage = np.zeros((h, w), np.float32)
        for obj in objects:
            _paste(scene_radiance, coverage, obj, obj.centre + step * obj.velocity)
        shake = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
        if step == 0:
            ground_truth = np.clip(scene_radiance * t1, 0.0, 1.0).astype(np.float32)
            coverage[:] = 0.0
        else:
            if config.motion:
                shake = _shake(rng, h, w, config)
                scene_radiance = cv2.warpAffine(scene_radiance, shake, (w, h),
                                                flags=cv2.INTER_LINEAR,
                                                borderMode=cv2.BORDER_REFLECT)
            # Local motion mask: where objects are now or were in the reference.
            coverage = np.maximum(coverage, reference_coverage)
        linear = _expose(scene_radiance * (t1 * time), rng, shot, read, config.noise)
        frames.append(_quantise(response.forward(linear), config.bit_depth))
        masks.append(coverage)
        shakes.append(shake)

    # Moving-object pixels in the reference's coordinates: every non-reference mask already holds
    # the objects' reference positions plus where they moved to (drawn before the camera shake).
    motion_mask = np.maximum.reduce([m for k, m in enumerate(masks) if k != ref])
    scene = Scene(frames=frames, exposure_times=times.astype(np.float64), reference_index=ref,
                  ground_truth=ground_truth, name=name, motion_mask=motion_mask)
    return Simulation(scene=scene, response=response, spacing_stops=spacing, t1=t1,
                      motion_masks=masks, shakes=shakes)


def simulate_scene(radiance: np.ndarray, config: SimulationConfig | None = None,
                   seed: int | np.random.Generator = 0, name: str = "scene") -> Scene:
    """Simulate one bracket and return just the :class:`Scene` (with ground truth)."""
    return simulate(radiance, config, seed, name).scene


# ---------------------------------------------------------------------------------------------
# Sources → scene folders

DEFAULT_PROCEDURAL_SIZE = (256, 384)
"""(height, width) of procedural scenes when the config gives no size."""
DEFAULT_VIEW_SIZE = (256, 256)
"""(height, width) of panorama views when the config gives no size."""
RADIANCE_SUFFIXES = (".hdr", ".exr", ".pic", ".rgbe")


def _radiance_files(src: Path) -> list[Path]:
    if src.is_dir():
        files = sorted(p for p in src.iterdir()
                       if p.is_file() and p.suffix.lower() in RADIANCE_SUFFIXES)
        if not files:
            raise ConfigError("no .hdr/.exr files in folder", src, "point at HDR files")
        return files
    if not src.exists():
        raise ConfigError("source not found", src, "give a .hdr/.exr file, a folder, or 'procedural'")
    return [src]


def simulation_sources(src: str | Path, config: SimulationConfig, seed: int = 0, views: int = 0,
                       count: int = 1, fov_deg: float = 70.0):
    """Yield ``(name, radiance)`` pairs for a source spec (see :func:`simulate_to_folder`)."""
    from gmodiff.data.sources import perspective_views, procedural_radiance, read_radiance_file

    if str(src) == "procedural":
        size = config.size or DEFAULT_PROCEDURAL_SIZE
        for index in range(count):
            yield f"procedural_{index:03d}", procedural_radiance(size[0], size[1],
                                                                 seed * 100_003 + index)
        return
    for file_index, path in enumerate(_radiance_files(Path(src))):
        radiance = read_radiance_file(path)
        if views > 0:
            rng = np.random.default_rng([seed, file_index, 7])
            size = config.size or DEFAULT_VIEW_SIZE
            for view_index, view in enumerate(perspective_views(radiance, views, fov_deg, size,
                                                                rng)):
                yield f"{path.stem}_v{view_index:02d}", view
        else:
            yield path.stem, radiance


def simulate_to_folder(src: str | Path, out_dir: str | Path,
                       config: SimulationConfig | None = None, seed: int = 0, views: int = 0,
                       count: int = 1, fov_deg: float = 70.0, overwrite: bool = False,
                       progress: bool = True) -> list[Path]:
    """Simulate brackets from ``src`` and write one Kalantari scene folder each under ``out_dir``.

    ``src`` is a ``.hdr``/``.exr`` file, a folder of them, or ``"procedural"`` (``count``
    scenes). With ``views > 0`` each file is treated as an equirectangular panorama and
    ``views`` perspective views are cut from it. Returns the written scene folders.
    """
    from tqdm import tqdm

    from gmodiff.io.scene import save_scene

    config = config or SimulationConfig()
    out_dir = Path(out_dir)
    sources = list(simulation_sources(src, config, seed, views, count, fov_deg))
    if not overwrite:
        # Check every target first, so a clash never leaves a half-written batch behind.
        for name, _ in sources:
            target = out_dir / name
            if target.exists() and (not target.is_dir() or any(target.iterdir())):
                raise OutputError("scene folder already exists", target,
                                  "choose a new output folder or pass --overwrite")
    written = []
    for index, (name, radiance) in enumerate(tqdm(sources, desc="simulate", unit="scene",
                                                  disable=None if progress else True)):
        scene = simulate_scene(radiance, config, np.random.default_rng([seed, index]), name)
        written.append(save_scene(scene, out_dir / name, overwrite=overwrite))
    return written
