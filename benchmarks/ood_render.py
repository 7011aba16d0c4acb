"""EVALUATION ONLY: procedural dark rooms lit by a small lamp and night streets, by ray casting.

Never train or tune on these scenes (benchmarks/ood.py uses them as out-of-distribution content).
Their construction differs from every training generator in src/gmodiff/data: those paint 2-D
layers (sky, ground, silhouettes, lamp disks) onto the image plane, while this module ray-casts a
3-D box world through a pinhole camera and shades every hit with point lights: Lambert cosine,
inverse-square fall-off, hard shadows from the furniture, a small ambient term standing in for
inter-reflections, and textured surfaces (planks, plaster, wallpaper, brick, asphalt) indexed by
world coordinates. The lamp bulbs themselves are small visible spheres, so a few hundred pixels
carry the peak while most of the frame sits 3-5 decades below it.

Units are arbitrary (metres for geometry); every function returns float32 (H, W, 3) radiance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

EPS = 1e-4


@dataclass
class Box:
    """An axis-aligned box with a surface material; ``shadows`` False for flush decorations."""

    lo: np.ndarray
    hi: np.ndarray
    material: str
    seed: int
    shadows: bool = True


@dataclass
class Light:
    """A point light with a visible spherical bulb of ``radius`` metres."""

    position: np.ndarray
    intensity: np.ndarray
    """RGB radiant intensity (irradiance at 1 m, facing the light)."""
    radius: float


# ---------------------------------------------------------------------------------------------
# Textures indexed by world coordinates


def _hash_table(seed: int, size: int = 256) -> np.ndarray:
    return np.random.default_rng(seed).random((size, size)).astype(np.float32)


def _value_noise(u: np.ndarray, v: np.ndarray, scale: float, seed: int) -> np.ndarray:
    """Smooth lattice noise in [0, 1] at world coordinates (u, v) with cells of ``scale`` m."""
    table = _hash_table(seed)
    x, y = u / scale, v / scale
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i0, j0 = x0.astype(np.int64) % 256, y0.astype(np.int64) % 256
    i1, j1 = (i0 + 1) % 256, (j0 + 1) % 256
    top = table[j0, i0] * (1 - fx) + table[j0, i1] * fx
    bottom = table[j1, i0] * (1 - fx) + table[j1, i1] * fx
    return top * (1 - fy) + bottom * fy


def _fbm(u: np.ndarray, v: np.ndarray, scale: float, seed: int, octaves: int = 4) -> np.ndarray:
    total, norm, amp = 0.0, 0.0, 1.0
    for octave in range(octaves):
        total = total + amp * _value_noise(u, v, scale / 2**octave, seed + octave)
        norm += amp
        amp *= 0.5
    return total / norm


def _cell_random(i: np.ndarray, j: np.ndarray, seed: int) -> np.ndarray:
    return _hash_table(seed)[np.asarray(j, np.int64) % 256, np.asarray(i, np.int64) % 256]


def albedo(material: str, u: np.ndarray, v: np.ndarray, seed: int) -> np.ndarray:
    """RGB albedo (N, 3) of ``material`` at surface coordinates (u, v) in metres."""
    rng = np.random.default_rng(seed)
    tint = rng.uniform(0.7, 1.3, 3).astype(np.float32)
    tint /= tint.mean()
    grain = _fbm(u, v, 0.3, seed)
    if material == "planks":
        width = rng.uniform(0.1, 0.2)
        plank = np.floor(u / width)
        level = 0.15 + 0.35 * _cell_random(plank, np.floor(v / 2.0 + plank * 0.37), seed + 1)
        streaks = 0.8 + 0.2 * np.sin(v * rng.uniform(20, 60) + 3 * _value_noise(u, v, 0.05, seed))
        gap = np.clip(np.abs(u / width - np.round(u / width)) * width / 0.004, 0.3, 1.0)
        value = level * streaks * gap
        tint = np.array([1.25, 0.95, 0.7], np.float32) * rng.uniform(0.8, 1.1)
    elif material == "wallpaper":
        period = rng.uniform(0.05, 0.2)
        stripes = 0.5 + 0.5 * np.sin(2 * math.pi * u / period) ** 2
        value = rng.uniform(0.3, 0.7) * (0.75 + 0.25 * stripes) * (0.9 + 0.1 * grain)
    elif material == "brick":
        row = np.floor(v / 0.075)
        col = np.floor(u / 0.22 + 0.5 * (row % 2))
        mortar = (np.abs(v / 0.075 - np.round(v / 0.075)) < 0.08) | (
            np.abs(u / 0.22 + 0.5 * (row % 2) - np.round(u / 0.22 + 0.5 * (row % 2))) < 0.03)
        value = np.where(mortar, 0.45, 0.12 + 0.2 * _cell_random(col, row, seed + 2)) * (0.8 + 0.2 * grain)
        tint = np.array([1.4, 0.85, 0.75], np.float32)
    elif material == "asphalt":
        value = 0.05 + 0.08 * _fbm(u, v, 0.05, seed) + 0.04 * _value_noise(u, v, 0.01, seed + 5)
        tint = np.ones(3, np.float32)
    elif material == "fabric":
        weave = 0.8 + 0.2 * np.sin(u * 400) * np.sin(v * 400)
        value = rng.uniform(0.05, 0.4) * weave * (0.85 + 0.15 * grain)
    elif material == "metal":
        value = 0.3 + 0.2 * _fbm(u, v, 0.5, seed)
        tint = np.ones(3, np.float32)
    else:  # plaster: low-contrast noise, the most common wall
        value = rng.uniform(0.25, 0.75) * (0.8 + 0.2 * _fbm(u, v, 0.4, seed))
    return np.clip(value[..., None] * tint, 0.0, 1.0).astype(np.float32)


def window_emission(u: np.ndarray, v: np.ndarray, seed: int, lit_fraction: float,
                    level: float) -> tuple[np.ndarray, np.ndarray]:
    """Facade windows: (emission RGB (N, 3), glass mask (N,)) for a grid of 1.2 × 1.5 m windows."""
    col, row = np.floor(u / 3.0), np.floor(v / 3.2)
    fu, fv = u / 3.0 - col, v / 3.2 - row
    glass = ((fu > 0.3) & (fu < 0.7) & (fv > 0.3) & (fv < 0.77) & (row >= 0)).astype(np.float32)
    lit = (_cell_random(col, row, seed + 9) < lit_fraction).astype(np.float32)
    warmth = _cell_random(col + 17, row, seed + 11)
    colour = np.stack([np.ones_like(warmth), 0.7 + 0.2 * warmth, 0.35 + 0.4 * warmth], -1)
    strength = level * (0.3 + 1.4 * _cell_random(col, row + 5, seed + 13))
    return (glass * lit * strength)[..., None] * colour, glass


# ---------------------------------------------------------------------------------------------
# Ray casting


def camera_rays(h: int, w: int, position: np.ndarray, yaw: float, pitch: float,
                fov_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Origins (N, 3) and unit directions (N, 3) of a pinhole camera (y up, looking along −z)."""
    focal = (w / 2) / math.tan(math.radians(fov_deg) / 2)
    jj, ii = np.meshgrid(np.arange(w) - (w - 1) / 2, np.arange(h) - (h - 1) / 2)
    dirs = np.stack([jj / focal, -ii / focal, -np.ones_like(jj)], -1).reshape(-1, 3)
    cp, sp, cy, sy = math.cos(pitch), math.sin(pitch), math.cos(yaw), math.sin(yaw)
    tilt = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    turn = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    dirs = dirs @ (turn @ tilt).T
    dirs /= np.linalg.norm(dirs, axis=-1, keepdims=True)
    return np.broadcast_to(position, dirs.shape), dirs


def _slab(origins: np.ndarray, dirs: np.ndarray, box: Box) -> tuple[np.ndarray, np.ndarray,
                                                                      np.ndarray]:
    """Entry distance, exit distance and entry axis of each ray against ``box``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = 1.0 / np.where(np.abs(dirs) < 1e-12, 1e-12, dirs)
    t1 = (box.lo - origins) * inv
    t2 = (box.hi - origins) * inv
    near = np.minimum(t1, t2)
    axis = np.argmax(near, axis=-1)
    return near.max(axis=-1), np.maximum(t1, t2).min(axis=-1), axis


def intersect(origins: np.ndarray, dirs: np.ndarray, boxes: list[Box]
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Closest hit distance (inf if none), box index and entry axis per ray."""
    n = len(dirs)
    best = np.full(n, np.inf)
    index = np.full(n, -1, np.int64)
    axis = np.zeros(n, np.int64)
    for k, box in enumerate(boxes):
        t_in, t_out, ax = _slab(origins, dirs, box)
        hit = (t_in > EPS) & (t_out >= t_in) & (t_in < best)
        best[hit], index[hit], axis[hit] = t_in[hit], k, ax[hit]
    return best, index, axis


def _occluded(points: np.ndarray, light: np.ndarray, boxes: list[Box]) -> np.ndarray:
    to_light = light - points
    dist = np.linalg.norm(to_light, axis=-1)
    dirs = to_light / dist[:, None]
    blocked = np.zeros(len(points), bool)
    for box in boxes:
        if not box.shadows:
            continue
        t_in, t_out, _ = _slab(points, dirs, box)
        blocked |= (t_in > EPS) & (t_out >= t_in) & (t_in < dist - EPS)
    return blocked


def _sphere_hits(origins: np.ndarray, dirs: np.ndarray, light: Light) -> np.ndarray:
    oc = origins - light.position
    b = np.einsum("ij,ij->i", oc, dirs)
    c = np.einsum("ij,ij->i", oc, oc) - light.radius**2
    disc = b * b - c
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    return np.where((disc > 0) & (t > EPS), t, np.inf)


def render(h: int, w: int, boxes: list[Box], lights: list[Light], camera: dict,
           ambient: np.ndarray, sky=None, windows: dict | None = None) -> np.ndarray:
    """Shade the box world: direct light with shadows + ambient, bulbs, optional sky and windows."""
    origins, dirs = camera_rays(h, w, **camera)
    dist, index, axis = intersect(origins, dirs, boxes)
    radiance = np.zeros((len(dirs), 3), np.float32)
    hit = np.isfinite(dist)
    points = origins[hit] + dirs[hit] * dist[hit, None]
    normals = np.zeros_like(points)
    hit_axis = axis[hit]
    normals[np.arange(len(points)), hit_axis] = -np.sign(dirs[hit][np.arange(len(points)), hit_axis])
    # Surface coordinates: the two world axes in the surface's plane.
    other = np.array([[2, 1], [0, 2], [0, 1]])[hit_axis]
    u = points[np.arange(len(points)), other[:, 0]]
    v = points[np.arange(len(points)), other[:, 1]]
    colour = np.zeros((len(points), 3), np.float32)
    emission = np.zeros((len(points), 3), np.float32)
    for k, box in enumerate(boxes):
        on = index[hit] == k
        if not on.any():
            continue
        colour[on] = albedo(box.material, u[on], v[on], box.seed)
        if windows is not None and box.material in ("brick", "plaster") and windows.get(k):
            glow, glass = window_emission(u[on], v[on], **windows[k])
            colour[on] = colour[on] * (1 - glass[:, None]) + 0.03 * glass[:, None]
            emission[on] = glow
    irradiance = np.repeat(ambient[None].astype(np.float32), len(points), 0)
    lift = points + normals * 1e-3
    for light in lights:
        to_light = light.position - points
        d2 = np.einsum("ij,ij->i", to_light, to_light)
        cosine = np.maximum(np.einsum("ij,ij->i", normals, to_light) / np.sqrt(d2), 0.0)
        visible = ~_occluded(lift, light.position, boxes)
        irradiance += (light.intensity[None] * (cosine * visible / d2)[:, None]).astype(np.float32)
    radiance[hit] = colour * irradiance / math.pi + emission
    if sky is not None:
        radiance[~hit] = sky(dirs[~hit])
    for light in lights:  # visible bulbs, in front of whatever the ray hit
        t = _sphere_hits(origins, dirs, light)
        front = t < dist
        bulb = light.intensity / (math.pi * light.radius**2)
        radiance[front] = bulb.astype(np.float32)
    image = radiance.reshape(h, w, 3)
    # A little optical blur so bulbs and edges are not aliased.
    return np.maximum(cv2.GaussianBlur(image, (0, 0), 0.7), 0.0).astype(np.float32)


def _warm(rng: np.random.Generator) -> np.ndarray:
    kelvin_like = rng.uniform(0.0, 1.0)
    return np.array([1.0, 0.75 + 0.15 * kelvin_like, 0.45 + 0.35 * kelvin_like])


# ---------------------------------------------------------------------------------------------
# Scenes


def dark_room(h: int, w: int, seed: int) -> np.ndarray:
    """A room lit by one or two small lamps: planks, plaster/wallpaper, furniture shadows."""
    rng = np.random.default_rng([seed, 101])
    width, depth, height = rng.uniform(3.5, 7.0), rng.uniform(4.0, 9.0), rng.uniform(2.4, 3.2)
    t = 0.1
    wall = str(rng.choice(["plaster", "wallpaper", "brick"]))
    boxes = [
        Box(np.array([-width / 2 - t, -t, -depth - t]), np.array([width / 2 + t, 0.0, 1.0 + t]),
            "planks", seed + 1),
        Box(np.array([-width / 2 - t, height, -depth - t]),
            np.array([width / 2 + t, height + t, 1.0 + t]), "plaster", seed + 2),
        Box(np.array([-width / 2 - t, 0, -depth - t]), np.array([width / 2 + t, height, -depth]),
            wall, seed + 3),
        Box(np.array([-width / 2 - t, 0, -depth]), np.array([-width / 2, height, 1.0]), wall, seed + 4),
        Box(np.array([width / 2, 0, -depth]), np.array([width / 2 + t, height, 1.0]), wall, seed + 5),
        Box(np.array([-width / 2, 0, 1.0]), np.array([width / 2, height, 1.0 + t]), wall, seed + 6),
    ]
    for k in range(int(rng.integers(3, 7))):  # tables, cabinets, sofas: they cast the shadows
        sx, sy, sz = rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.8), rng.uniform(0.4, 1.2)
        x = rng.uniform(-width / 2, width / 2 - sx)
        z = rng.uniform(-depth, -1.0 - sz)
        material = str(rng.choice(["fabric", "planks", "metal", "plaster"]))
        boxes.append(Box(np.array([x, 0.0, z]), np.array([x + sx, sy, z + sz]), material,
                         seed + 20 + k))
    lights = []
    for k in range(int(rng.integers(1, 3))):
        on_table = boxes[6 + k] if len(boxes) > 6 + k and rng.random() < 0.6 else None
        if on_table is not None:
            centre = (on_table.lo + on_table.hi) / 2
            position = np.array([centre[0], on_table.hi[1] + rng.uniform(0.2, 0.5), centre[2]])
        else:
            position = np.array([rng.uniform(-width / 2 + 0.3, width / 2 - 0.3),
                                 rng.uniform(0.3, height - 0.3), rng.uniform(-depth + 0.3, -1.0)])
        for box in boxes[6:]:  # a lamp inside a cabinet would light nothing: stand it on top
            if np.all(position > box.lo) and np.all(position < box.hi):
                position[1] = box.hi[1] + 0.3
        lights.append(Light(position, rng.uniform(0.5, 3.0) * _warm(rng), rng.uniform(0.02, 0.05)))
    total = sum(float(light.intensity.mean()) for light in lights)
    # Inter-reflections, very roughly: a faint, even fill proportional to the lamps' power.
    ambient = total * 10 ** rng.uniform(-3.8, -2.3) * _warm(rng)
    target = lights[0].position
    camera_at = np.array([rng.uniform(-width / 4, width / 4), rng.uniform(1.0, 1.8), 0.6])
    look = target - camera_at
    yaw = math.atan2(-look[0], -look[2]) + rng.uniform(-0.3, 0.3)
    pitch = math.atan2(look[1], math.hypot(look[0], look[2])) * 0.5 + rng.uniform(-0.1, 0.05)
    camera = {"position": camera_at, "yaw": yaw, "pitch": pitch, "fov_deg": rng.uniform(65, 90)}
    return render(h, w, boxes, lights, camera, ambient)


def night_street(h: int, w: int, seed: int) -> np.ndarray:
    """A street at night: asphalt, brick/plaster facades with lit windows, sodium street lamps."""
    rng = np.random.default_rng([seed, 202])
    half = rng.uniform(5.0, 9.0)
    length = 120.0
    boxes = [
        Box(np.array([-half - 1, -0.5, -length]), np.array([half + 1, 0.0, 5.0]), "asphalt",
            seed + 1, shadows=False),
        Box(np.array([-half, 0.0, -length]), np.array([-half + 2.0, 0.15, 5.0]), "plaster",
            seed + 2, shadows=False),
        Box(np.array([half - 2.0, 0.0, -length]), np.array([half, 0.15, 5.0]), "plaster",
            seed + 3, shadows=False),
    ]
    windows = {}
    for side in (-1, 1):
        z = 5.0
        while z > -length:
            span = rng.uniform(8.0, 20.0)
            tall = rng.uniform(6.0, 20.0)
            x0, x1 = (-half - 8.0, -half) if side < 0 else (half, half + 8.0)
            material = str(rng.choice(["brick", "plaster"]))
            windows[len(boxes)] = {"seed": seed + len(boxes), "lit_fraction": rng.uniform(0.15, 0.5),
                                   "level": 10 ** rng.uniform(-1.0, 0.0)}
            # Lamps stand in the street, facing the facades: nothing here casts a shadow worth
            # the (many) shadow rays, so the street skips them.
            boxes.append(Box(np.array([x0, 0.0, z - span]), np.array([x1, tall, z]), material,
                             seed + 40 + len(boxes), shadows=False))
            z -= span + rng.uniform(0.0, 0.5)
    lights = []
    spacing = rng.uniform(15.0, 30.0)
    for k in range(8):
        for side in (-1, 1):
            if rng.random() < 0.15:
                continue  # a dead lamp
            x = side * (half - 1.5)
            z = -3.0 - k * spacing - (spacing / 2 if side > 0 else 0.0)
            pole_height = rng.uniform(4.5, 6.5)
            boxes.append(Box(np.array([x - 0.06, 0.0, z - 0.06]),
                             np.array([x + 0.06, pole_height - 0.3, z + 0.06]), "metal",
                             seed + 300 + len(boxes), shadows=False))
            colour = np.array([1.0, 0.62, 0.25]) if rng.random() < 0.6 else np.array([0.9, 0.95, 1.0])
            lights.append(Light(np.array([x - side * 0.6, pole_height, z]),
                                rng.uniform(30.0, 80.0) * colour, rng.uniform(0.08, 0.15)))
    ambient = 10 ** rng.uniform(-4.0, -2.8) * np.array([0.6, 0.7, 1.0])
    sky_level = 10 ** rng.uniform(-3.5, -2.3)

    def sky(dirs: np.ndarray) -> np.ndarray:
        elevation = np.clip(dirs[:, 1], 0.0, 1.0)[:, None]
        glow = np.array([1.0, 0.6, 0.35]) * np.exp(-elevation / 0.08)  # city glow at the horizon
        return (sky_level * (np.array([0.25, 0.35, 0.7]) + 2.0 * glow)).astype(np.float32)

    camera = {"position": np.array([rng.uniform(-half / 2, half / 2), rng.uniform(1.4, 1.8), 0.0]),
              "yaw": rng.uniform(-0.5, 0.5), "pitch": rng.uniform(-0.05, 0.12),
              "fov_deg": rng.uniform(60, 85)}
    return render(h, w, boxes, lights, camera, ambient, sky=sky, windows=windows)
