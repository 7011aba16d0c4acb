"""HDR radiance sources for the bracket simulator (spec §6).

Three kinds: procedural scenes (so tests and the demo need no download), any ``.hdr``/``.exr``
file, and rectilinear views cut from equirectangular panoramas (Debian ``blender-data`` ships 8).
All return float32 (H, W, 3) linear RGB radiance, non-negative, in arbitrary absolute units.
"""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np

from gmodiff.errors import ConfigError, HDRValueError
from gmodiff.srgb import srgb_to_linear

BLENDER_WORLD_DIR = Path("/usr/share/blender/datafiles/studiolights/world")
"""Where Debian's ``blender-data`` package installs its 8 CC0 HDR panoramas."""
BLENDER_NAMES = ("city", "courtyard", "forest", "interior", "night", "studio", "sunrise", "sunset")
"""The panoramas in :func:`blender_panoramas` order: config entry ``blender:I`` is ``BLENDER_NAMES[I]``."""
BLENDER_HELD_OUT = ("sunrise", "sunset")
"""Evaluation only (held-out benchmark, OOD benchmark, bundled sample): never trained or validated on."""


def blender_panoramas(folder: Path = BLENDER_WORLD_DIR) -> list[Path]:
    """Sorted paths of the ``blender-data`` HDR panoramas; empty if the package is not installed."""
    if not folder.is_dir():
        return []
    return sorted(folder.glob("*.exr"))


def read_radiance_file(path: str | Path) -> np.ndarray:
    """Read a ``.hdr``/``.exr`` file as non-negative float32 radiance (H, W, 3).

    Tiny negative values that lossy EXR compression leaves in dark areas are set to 0; an image
    with no positive pixel cannot be exposed and is rejected.
    """
    from gmodiff.io.hdr import read_hdr

    radiance = np.maximum(read_hdr(path), 0.0).astype(np.float32)
    if not np.any(radiance > 0):
        raise HDRValueError("radiance image is entirely black", path,
                            "use an HDR image with some positive radiance")
    return radiance


# ---------------------------------------------------------------------------------------------
# Procedural scenes


def _fractal_noise(rng: np.random.Generator, h: int, w: int, base_cells: int = 3,
                   octaves: int = 5, persistence: float = 0.55) -> np.ndarray:
    """Smooth multi-octave value noise in [0, 1], (H, W) float32."""
    total = np.zeros((h, w), np.float32)
    amplitude, norm = 1.0, 0.0
    for octave in range(octaves):
        cells = base_cells * 2**octave
        grid = rng.random((cells + 1, cells + 1)).astype(np.float32)
        total += amplitude * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        norm += amplitude
        amplitude *= persistence
    total /= norm
    lo, hi = float(total.min()), float(total.max())
    return (total - lo) / max(hi - lo, 1e-6)


def _ellipse_mask(yy: np.ndarray, xx: np.ndarray, cy: float, cx: float, ry: float, rx: float,
                  angle: float = 0.0) -> np.ndarray:
    """Anti-aliased filled ellipse (coordinates in pixels), values in [0, 1]."""
    c, s = math.cos(angle), math.sin(angle)
    dy, dx = yy - cy, xx - cx
    u, v = (c * dx + s * dy) / rx, (-s * dx + c * dy) / ry
    radius = np.sqrt(u * u + v * v)
    # (1 − r) · min radius is roughly the distance in pixels from the edge: a 1-px soft edge.
    return np.clip((1.0 - radius) * min(rx, ry) + 0.5, 0.0, 1.0).astype(np.float32)


def _rect_mask(yy: np.ndarray, xx: np.ndarray, top: float, left: float, bottom: float,
               right: float) -> np.ndarray:
    """Anti-aliased filled axis-aligned rectangle (pixels), values in [0, 1]."""
    inside_y = np.clip(np.minimum(yy - top, bottom - yy) + 0.5, 0.0, 1.0)
    inside_x = np.clip(np.minimum(xx - left, right - xx) + 0.5, 0.0, 1.0)
    return (inside_y * inside_x).astype(np.float32)


def _texture(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
    """A random surface pattern in [0.3, 1] (stripes, checks or noise), (H, W)."""
    h, w = yy.shape
    kind = rng.integers(3)
    if kind == 0:
        period = rng.uniform(4.0, 24.0)
        angle = rng.uniform(0, math.pi)
        phase = (math.cos(angle) * xx + math.sin(angle) * yy) / period
        pattern = 0.5 + 0.5 * np.sin(2 * math.pi * phase)
    elif kind == 1:
        period = rng.uniform(6.0, 32.0)
        pattern = ((np.floor(xx / period) + np.floor(yy / period)) % 2).astype(np.float32)
        pattern = cv2.GaussianBlur(pattern, (0, 0), 0.7)
    else:
        pattern = _fractal_noise(rng, h, w, base_cells=int(rng.integers(4, 12)), octaves=4)
    return (0.3 + 0.7 * pattern).astype(np.float32)


def _colour(rng: np.random.Generator, saturation: float = 0.5) -> np.ndarray:
    """A random RGB albedo/tint with mean ≈ 1 and the given maximum saturation."""
    tint = 1.0 + saturation * (rng.random(3) - 0.5) * 2.0
    return (tint / tint.mean()).astype(np.float32)


def procedural_radiance(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A synthetic outdoor-like HDR scene, float32 (H, W, 3), dynamic range ≥ 10^4.

    Sky gradient with clouds, an optional sun disk with glow, a textured ground, textured
    objects casting shadows, a dark doorway and a few bright lamps: the ingredients that make
    multi-exposure fusion hard (saturated highlights next to deep shadows, fine texture).
    """
    if h < 8 or w < 8:
        raise ConfigError(f"procedural scene size {w}x{h} is too small", fix="use at least 8x8")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    scale = float(min(h, w))

    horizon = h * rng.uniform(0.3, 0.55)
    # Sky: zenith blue to a pale horizon, brightened by clouds.
    sky_level = rng.uniform(0.5, 3.0)
    t = np.clip(yy / max(horizon, 1.0), 0.0, 1.0)[..., None]
    zenith = np.array([0.25, 0.45, 1.0], np.float32) * rng.uniform(0.7, 1.3, 3).astype(np.float32)
    horizon_colour = np.array([1.0, 0.95, 0.9], np.float32)
    sky = sky_level * ((1 - t) * zenith + t * horizon_colour)
    clouds = np.clip(_fractal_noise(rng, h, w, base_cells=2) * 1.8 - 0.8, 0.0, 1.0)[..., None]
    sky = sky * (1 - clouds) + clouds * sky_level * rng.uniform(1.2, 2.5)

    # Ground: textured albedo under sunlight.
    light = rng.uniform(0.6, 1.5)
    ground_albedo = 0.05 + 0.45 * _fractal_noise(rng, h, w, base_cells=int(rng.integers(6, 20)))
    ground = light * ground_albedo[..., None] * _colour(rng, 0.4)
    sky_mask = np.clip(horizon - yy + 0.5, 0.0, 1.0)[..., None]
    radiance = sky_mask * sky + (1 - sky_mask) * ground

    # Objects with hard cast shadows on the ground (offset copies of their silhouettes).
    shadow_dx, shadow_dy = rng.uniform(-0.08, 0.08) * scale, rng.uniform(0.02, 0.06) * scale
    for _ in range(int(rng.integers(3, 7))):
        oh, ow = rng.uniform(0.1, 0.35) * scale, rng.uniform(0.08, 0.3) * scale
        bottom = rng.uniform(horizon + 0.05 * h, h + 0.1 * h)
        left = rng.uniform(-0.1 * w, w - ow * 0.5)
        if rng.random() < 0.5:
            mask = _rect_mask(yy, xx, bottom - oh, left, bottom, left + ow)
            shadow = _rect_mask(yy, xx, bottom - oh * 0.3 + shadow_dy, left + shadow_dx,
                                bottom + shadow_dy, left + ow + shadow_dx)
        else:
            cy, cx = bottom - oh / 2, left + ow / 2
            angle = rng.uniform(0, math.pi)
            mask = _ellipse_mask(yy, xx, cy, cx, oh / 2, ow / 2, angle)
            shadow = _ellipse_mask(yy, xx, cy + shadow_dy + oh * 0.3, cx + shadow_dx,
                                   oh / 4, ow / 2, angle)
        shade = rng.uniform(0.03, 0.25)
        ground_shadow = shadow * (1 - sky_mask[..., 0])
        radiance = radiance * (1 - ground_shadow * (1 - shade))[..., None]
        # Light falls off across the object: one side lit, one in its own shadow.
        side = np.clip((xx - left) / max(ow, 1.0), 0.0, 1.0)
        shading = (0.15 + 0.85 * (side if rng.random() < 0.5 else 1 - side))[..., None]
        albedo = rng.uniform(0.05, 0.8)
        surface = light * albedo * shading * _texture(rng, yy, xx)[..., None] * _colour(rng, 0.6)
        radiance = radiance * (1 - mask[..., None]) + surface * mask[..., None]

    # A dark doorway/window: the deep shadows the long exposure is for.
    dh, dw = rng.uniform(0.1, 0.25) * scale, rng.uniform(0.06, 0.15) * scale
    dtop, dleft = rng.uniform(horizon, max(horizon + 1, h - dh)), rng.uniform(0, max(1, w - dw))
    door = _rect_mask(yy, xx, dtop, dleft, dtop + dh, dleft + dw)[..., None]
    darkness = rng.uniform(0.001, 0.01) * (0.5 + 0.5 * _texture(rng, yy, xx))[..., None]
    radiance = radiance * (1 - door) + darkness * door

    # Light sources: a sun in the sky (usually) and small lamps, with optical glow.
    sources = np.zeros((h, w), np.float32)
    if rng.random() < 0.75:
        sun_r = rng.uniform(0.01, 0.03) * scale + 1.0
        sy, sx = rng.uniform(0.0, max(horizon - sun_r, 1.0)), rng.uniform(0, w)
        sun = _ellipse_mask(yy, xx, sy, sx, sun_r, sun_r)
        dist = np.hypot(yy - sy, xx - sx) / scale
        sources += rng.uniform(1e4, 5e4) * sun + rng.uniform(5.0, 30.0) * np.exp(-dist / 0.05)
    for _ in range(int(rng.integers(1, 4))):
        lr = rng.uniform(0.005, 0.015) * scale + 1.0
        ly, lx = rng.uniform(0, h), rng.uniform(0, w)
        lamp = _ellipse_mask(yy, xx, ly, lx, lr, lr)
        dist = np.hypot(yy - ly, xx - lx) / scale
        sources += rng.uniform(3e2, 3e3) * lamp + rng.uniform(1.0, 8.0) * np.exp(-dist / 0.03)
    warm = np.array([1.0, 0.9, 0.75], np.float32)
    radiance = radiance + sources[..., None] * warm

    # A touch of optical blur so edges are not aliased.
    radiance = cv2.GaussianBlur(radiance.astype(np.float32), (0, 0), 0.6)
    return np.maximum(radiance, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Perspective views from equirectangular panoramas


def _view_maps(pano_h: int, pano_w: int, out_h: int, out_w: int, focal: float, yaw: float,
               pitch: float) -> tuple[np.ndarray, np.ndarray]:
    """Panorama pixel coordinates (map_x, map_y) sampled by a pinhole camera at yaw/pitch."""
    jj, ii = np.meshgrid(np.arange(out_w, dtype=np.float64), np.arange(out_h, dtype=np.float64))
    # Camera frame: x right, y down, z forward.
    rays = np.stack([(jj - (out_w - 1) / 2) / focal, (ii - (out_h - 1) / 2) / focal,
                     np.ones_like(jj)], axis=-1)
    rays /= np.linalg.norm(rays, axis=-1, keepdims=True)
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    tilt = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])  # positive pitch looks up
    turn = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    world = rays @ (turn @ tilt).T
    lon = np.arctan2(world[..., 0], world[..., 2])
    lat = np.arcsin(np.clip(-world[..., 1], -1.0, 1.0))
    map_x = (lon / (2 * math.pi) + 0.5) * pano_w - 0.5
    map_y = np.clip((0.5 - lat / math.pi) * pano_h - 0.5, 0.0, pano_h - 1.0)
    return map_x.astype(np.float32), map_y.astype(np.float32)


def perspective_views(panorama: np.ndarray, n: int, fov_deg: float = 70.0,
                      size: int | tuple[int, int] = (256, 256),
                      rng: np.random.Generator | int | None = None,
                      max_pitch_deg: float = 20.0) -> list[np.ndarray]:
    """Cut ``n`` rectilinear views (bilinear) from an equirectangular panorama.

    ``size`` is (height, width) or one int for square views; ``fov_deg`` is the horizontal
    field of view. Yaw is uniform over the full circle, pitch uniform in ±``max_pitch_deg``.
    The panorama is area-downsampled first when the view samples it more coarsely than its
    own resolution, so bilinear sampling does not alias.
    """
    if panorama.ndim != 3 or panorama.shape[2] != 3:
        raise ConfigError(f"panorama must be (H, W, 3), got shape {panorama.shape}")
    if not 1.0 <= fov_deg < 179.0:
        raise ConfigError(f"field of view {fov_deg}° out of range", fix="use 1–179 degrees")
    out_h, out_w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    focal = (out_w / 2) / math.tan(math.radians(fov_deg) / 2)
    pano = np.ascontiguousarray(panorama, dtype=np.float32)
    pano_px_per_radian = pano.shape[1] / (2 * math.pi)
    if focal < 0.8 * pano_px_per_radian:
        factor = focal / pano_px_per_radian
        new_w, new_h = max(8, round(pano.shape[1] * factor)), max(4, round(pano.shape[0] * factor))
        pano = cv2.resize(pano, (new_w, new_h), interpolation=cv2.INTER_AREA)
    views = []
    for _ in range(n):
        yaw = rng.uniform(-math.pi, math.pi)
        pitch = math.radians(rng.uniform(-max_pitch_deg, max_pitch_deg))
        map_x, map_y = _view_maps(pano.shape[0], pano.shape[1], out_h, out_w, focal, yaw, pitch)
        view = cv2.remap(pano, map_x, map_y, interpolation=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_WRAP)
        views.append(np.maximum(view, 0.0).astype(np.float32))
    return views


# ---------------------------------------------------------------------------------------------
# Procedural interiors lit by small lamps (training source for deep shadows)


def lamp_room_radiance(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A box room of textured walls lit by 1–3 small lamps, float32 (H, W, 3).

    A pinhole camera looks into the room; each wall point gets the lamps' inverse-square,
    cosine-weighted irradiance plus a faint bounce term. The lamps themselves are small, very
    bright disks, so most of the frame lies 10^-2..10^-5 below the peak: the statistics of a
    room at night that panoramas of daylight scenes lack.
    """
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    focal = max(h, w) / (2.0 * math.tan(math.radians(rng.uniform(30.0, 45.0))))
    u = (xx - (w - 1) / 2 + rng.uniform(-0.1, 0.1) * w) / focal
    v = (yy - (h - 1) / 2 + rng.uniform(-0.1, 0.1) * h) / focal
    half_w, half_h, depth = rng.uniform(1.0, 3.0), rng.uniform(0.8, 1.6), rng.uniform(2.0, 8.0)
    with np.errstate(divide="ignore"):
        hits = np.stack([half_w / np.abs(u), half_h / np.abs(v), np.full_like(u, depth)])
    surface = hits.argmin(axis=0)  # 0: side wall, 1: floor/ceiling, 2: back wall
    distance = hits.min(axis=0)
    points = np.stack([u * distance, v * distance, distance], axis=-1)
    normals = np.zeros_like(points)
    normals[..., 0] = np.where(surface == 0, -np.sign(u), 0.0)
    normals[..., 1] = np.where(surface == 1, -np.sign(v), 0.0)
    normals[..., 2] = np.where(surface == 2, -1.0, 0.0)

    albedo = np.zeros((h, w, 3), np.float32)
    for index in range(3):
        # Each surface kind (and each side) gets its own material.
        for side in (-1.0, 1.0):
            region = (surface == index) & ((np.sign(u if index == 0 else v) == side) | (index == 2))
            level = rng.uniform(0.05, 0.8)
            albedo[region] = (level * _texture(rng, yy, xx)[..., None] * _colour(rng))[region]
    irradiance = np.zeros((h, w), np.float32)
    lamps = []
    for _ in range(int(rng.integers(1, 4))):
        lamp = np.array([rng.uniform(-0.8, 0.8) * half_w, rng.uniform(-0.9, 0.3) * half_h,
                         rng.uniform(0.3, 0.9) * depth])
        power = float(np.exp(rng.uniform(math.log(0.2), math.log(5.0))))
        offset = lamp - points
        dist2 = np.maximum((offset**2).sum(-1), 1e-3)
        cosine = np.maximum((normals * offset).sum(-1) / np.sqrt(dist2), 0.0)
        irradiance += power * cosine / dist2
        lamps.append((lamp, power))
    bounce = rng.uniform(0.002, 0.03) * float(irradiance.mean())
    radiance = albedo * (irradiance + bounce)[..., None] / math.pi
    for lamp, power in lamps:
        if lamp[2] <= 0.05:
            continue
        cy, cx = lamp[1] / lamp[2] * focal + (h - 1) / 2, lamp[0] / lamp[2] * focal + (w - 1) / 2
        radius = max(1.0, rng.uniform(0.01, 0.03) * min(h, w))
        disk = _ellipse_mask(yy, xx, cy, cx, radius, radius * rng.uniform(0.6, 1.4))
        glow = rng.uniform(20.0, 400.0) * power * _colour(rng, 0.3) * np.array([1.0, 0.85, 0.6])
        radiance = radiance * (1.0 - disk[..., None]) + disk[..., None] * glow.astype(np.float32)
    return np.maximum(radiance, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Real photographic texture: public-domain LDR photographs lifted to radiance (training source)

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket")
"""scikit-image's bundled colour photographs that carry no copyright restriction (NASA and SpaceX
public domain; CC0 by their photographers), used as training texture only."""


def read_photos(names: tuple[str, ...] = PHOTO_NAMES) -> list[np.ndarray]:
    """The named scikit-image sample photographs, uint8 (H, W, 3); they ship inside the wheel."""
    try:
        import skimage.data
    except ImportError as exc:
        raise ConfigError("photographic training texture needs scikit-image",
                          fix="install requirements-dev.txt (make install)") from exc
    return [np.ascontiguousarray(getattr(skimage.data, name)()[..., :3]) for name in names]


def photo_radiance(h: int, w: int, photos: list[np.ndarray], seed: int = 0) -> np.ndarray:
    """A crop of an LDR photograph lifted to HDR radiance, float32 (H, W, 3).

    The synthesis (documented in docs/data.md): a random crop, scaled down 1-3x and
    flipped, is linearised with the inverse sRGB curve (dithered, so 8-bit steps do not become
    banding) and read as reflectance; it is lit by a smooth illumination field spanning 2-8 stops
    (multi-octave noise plus a linear fall-off, as from a window); the photograph's own
    near-white pixels, whose true radiance the 8-bit file lost, are lifted 2-40x as light sources
    or specular glints; and half the scenes get 1-2 small lamp disks 20-400x brighter than white.
    The result keeps a real photograph's edges, texture and colour statistics with a dynamic
    range the camera simulator can bracket.
    """
    rng = np.random.default_rng(seed)
    photo = photos[int(rng.integers(len(photos)))]
    ph, pw = photo.shape[:2]
    scale = rng.uniform(1.0, 3.0)
    scale = min(scale, ph / h, pw / w)
    ch, cw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
    top, left = int(rng.integers(ph - ch + 1)), int(rng.integers(pw - cw + 1))
    crop = photo[top:top + ch, left:left + cw].astype(np.float32)
    crop = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA if scale > 1 else cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    encoded = np.clip((crop + rng.uniform(-0.5, 0.5, crop.shape)) / 255.0, 0.0, 1.0)
    reflectance = srgb_to_linear(encoded)

    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    field = _fractal_noise(rng, h, w, base_cells=int(rng.integers(2, 5)), octaves=3) - 0.5
    angle = rng.uniform(0, 2 * math.pi)
    ramp = (math.cos(angle) * (xx / max(w - 1, 1) - 0.5) + math.sin(angle) * (yy / max(h - 1, 1) - 0.5))
    mix = rng.uniform(0.0, 1.0)
    stops = rng.uniform(2.0, 8.0)
    light = np.exp2(stops * ((1.0 - mix) * field + mix * ramp)).astype(np.float32)
    radiance = reflectance * light[..., None] * _colour(rng, 0.2)

    white = np.clip((encoded.max(axis=-1) - 0.92) / 0.08, 0.0, 1.0)
    if white.any():
        lift = 1.0 + rng.uniform(1.0, 39.0) * cv2.GaussianBlur(white.astype(np.float32), (0, 0), 1.0)
        radiance = radiance * lift[..., None]
    if rng.random() < 0.5:
        for _ in range(int(rng.integers(1, 3))):
            radius = max(1.0, rng.uniform(0.01, 0.04) * min(h, w))
            disk = _ellipse_mask(yy, xx, rng.uniform(0, h - 1), rng.uniform(0, w - 1), radius,
                                 radius * rng.uniform(0.6, 1.4))
            glow = rng.uniform(20.0, 400.0) * float(light.max()) * _colour(rng, 0.3)
            radiance = radiance * (1.0 - disk[..., None]) + disk[..., None] * glow.astype(np.float32)
    return np.maximum(radiance, 0.0).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# @pmndrs/assets HDRIs (npm): base64 EXR inside an ES module

PMNDRS_HDRI_DIR = Path(__file__).resolve().parents[3] / "tools" / "node_modules" / "@pmndrs" / "assets" / "hdri"
"""Where ``make install`` puts the npm package (tools/package.json); GMODIFF_PMNDRS_DIR overrides."""
PMNDRS_TRAIN = ("apartment", "bridge", "city", "esplanade", "forest", "hall", "lab", "night",
                "park", "sky", "studio", "warehouse")
"""The HDRIs models may train and tune on; :data:`PMNDRS_HELD_OUT` are for evaluation."""
PMNDRS_HELD_OUT = ("dawn", "lobby", "sunrise", "sunset", "venice", "workshop")


def pmndrs_hdri_path(name: str) -> Path:
    """Path of one ``@pmndrs/assets`` HDRI module (``hdri/NAME.exr.js``)."""
    import os

    folder = Path(os.environ.get("GMODIFF_PMNDRS_DIR", PMNDRS_HDRI_DIR))
    path = folder / f"{name}.exr.js"
    if not path.is_file():
        raise ConfigError(f"@pmndrs/assets HDRI {name!r} not found", path,
                          "run `make install` (npm) or set GMODIFF_PMNDRS_DIR to its hdri/ folder")
    return path


def read_pmndrs_hdri(path: str | Path) -> np.ndarray:
    """Decode an ``@pmndrs/assets`` ``*.exr.js`` module (a base64 EXR data URL) to radiance."""
    import base64
    import tempfile

    text = Path(path).read_text(encoding="ascii", errors="replace")
    start = text.find("base64,")
    end = text.rfind("'") if "'" in text[start:] else text.rfind('"')
    if start < 0 or end <= start:
        raise HDRValueError("not an @pmndrs/assets HDRI module (no base64 EXR)", path)
    payload = base64.b64decode(text[start + len("base64,"):end])
    import OpenEXR

    with tempfile.TemporaryDirectory() as folder:
        exr = Path(folder) / "hdri.exr"
        exr.write_bytes(payload)
        try:
            channels = OpenEXR.File(str(exr), separate_channels=True).parts[0].channels
            radiance = np.stack([np.asarray(channels[c].pixels, np.float32) for c in "RGB"], -1)
        except Exception as exc:
            raise HDRValueError(f"cannot decode the embedded EXR ({exc})", path) from exc
    # These files use lossy DWAB compression, which rings (even below zero) around the sun and
    # lamps; a 5×5 median of the non-negative image replaces the rung pixels.
    rung = (radiance < 0).any(axis=-1)
    radiance = np.maximum(radiance, 0.0)
    if rung.any():
        smooth = cv2.medianBlur(np.ascontiguousarray(radiance), 5)
        radiance[rung] = smooth[rung]
    if not np.isfinite(radiance).all() or not np.any(radiance > 0):
        raise HDRValueError("embedded EXR has no usable radiance", path)
    return radiance
