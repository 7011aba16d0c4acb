"""Real camera brackets (issue #28): radiometric ground truth from tripod stacks, re-rendering
consistency on scenes with motion. Evaluation only: it reads the folder ``--root`` points to and
downloads nothing; docs/evaluation.md says where each scene comes from and how to lay it out.

Each scene is a folder of JPEG/PNG/TIFF frames with ``times.txt`` (``<file> <seconds>`` per line)
and ``kind.txt`` (``static`` or ``moving``); ``camera.txt`` names the camera when the frames'
EXIF does not.

- **static** (≥ 5 exposures, tripod): frames are registered to one frame (AlignMTB, translation;
  the border it shifts in is cropped), the response is calibrated from *all* frames and all of them
  are merged into the reference HDR, once with Debevec–Malik (OpenCV CalibrateDebevec +
  MergeDebevec) and once with Robertson (CalibrateRobertson + MergeRobertson); Robertson is the
  main ground truth (see :data:`TRUTH`). Both are
  normalised so the response at code 254 is 1 (the convention of every method here: encoded
  white ↦ linear 1) and expressed relative to the short input's exposure (spec §1). Methods get
  3 of the frames at 2- and 3-stop spacing and are scored against it: PSNR-μ, PSNR-l, PSNR-μ
  after one global gain (``fit_log_gain``), the gain itself and the per-band median ratios.
- **moving** (no ground truth): the HDR is rendered back through the response estimated from the
  3 inputs (``gmodiff.camera.calibration``) at each non-reference input's exposure and compared with that
  input (globally registered to the reference, ECC) where it is well exposed and agrees with the
  reference (deghost's consistency map ≥ 0.99): "re-rendering PSNR". Ghosts are measured where
  the inputs disagree with the reference (consistency < 0.5) and the reference is well exposed:
  there a ghost-free HDR re-rendered at the reference exposure gives the reference back
  ("reference PSNR in the motion region").

    python benchmarks/real.py --root /work/realdata          # → benchmarks/results/real.md
    python benchmarks/real.py --root DIR --methods deghost debevec-calibrated --max-pixels 200000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from gmodiff.baselines import CLASSICAL_METHODS
from gmodiff.baselines.merge import (consistency, deghost_merge, estimate_alignment,
                                     intensity_mapping, warp_to_reference)
from gmodiff.camera.calibration import estimate_response
from gmodiff.errors import GmodiffError
from gmodiff.io.atomic import atomic_path
from gmodiff.io.ldr import LDR_SUFFIXES, read_ldr
from gmodiff.io.scene import Scene
from gmodiff.metrics import (RADIANCE_BANDS, band_label, band_ratios, fit_log_gain, psnr_l,
                             psnr_mu, psnr_mu_gain_fitted)

TIMES_FILE, KIND_FILE, CAMERA_FILE = "times.txt", "kind.txt", "camera.txt"
KINDS = ("static", "moving")
SPACINGS = (2.0, 3.0)
"""Input spacings (stops) cut from every static stack."""
SPACING_TOLERANCE = 0.35
"""A frame pair counts as ``s`` stops apart if its ratio is within this many stops of ``s``."""
MOVING_SPACING = 2.0
"""Moving scenes with more than 3 frames are cut to 3 at (about) this spacing."""
WELL_EXPOSED = (0.05, 0.95)
STATIC_TRUST, MOVING_TRUST = 0.99, 0.5
NORMALISE_CODE = 254
"""Calibrated responses are normalised to 1 at this 8-bit code (255 is where clipping piles up)."""
TRUTHS = {"robertson": "OpenCV CalibrateRobertson + MergeRobertson",
          "debevec": "OpenCV CalibrateDebevec (200 samples) + MergeDebevec"}
"""The two all-frame ground truths (:func:`reference_hdr`'s algorithms) and how each is made."""
TRUTH = "robertson"
"""The ground truth the main scores use (the other one gets its own column). Robertson's
calibration uses every pixel; Debevec's uses 200 grid samples, and on the LX100 night stacks its
curve moved by 0.8-1.5 stops at some codes when the image was resized by 12 % or the sample
count changed (Robertson's by ≤ 0.16 stop): the per-stack stability table measures it. On a
clean synthetic stack Robertson is the less exact one (shadows ×0.92-0.95), far less than that."""
STABILITY_SCALE = 0.85
"""The stack is calibrated again at this linear scale to measure each ground truth's stability."""
STABILITY_CODES = np.arange(16, 251)
"""8-bit codes over which the two calibrations are compared (near-black and clipped ends excluded)."""
MODEL_ROWS = ("default", "refine", "no-refine")
"""The pipeline's default output, and its two stages; the stage that is the default is dropped
(:func:`model_methods`), so no row is printed twice."""
CLASSICAL_ROWS = ("deghost", "debevec-calibrated", "debevec", "deghost-gamma2.2")
ORACLE_ROWS = ("default-oracle-curve", "deghost-oracle-curve")
"""Diagnostic rows (static stacks only): the frames linearised with the ground truth's own
all-frame calibrated curve (the main ground truth's) instead of the one estimated from the 3 inputs, so the response
estimate's share of each method's error shows (the model's and the merge's ceilings)."""
DEFAULT_METHODS = MODEL_ROWS + CLASSICAL_ROWS + ORACLE_ROWS
ROW_TITLES = {"default": "gmodiff default", "refine": "gmodiff --refine (DaReg + one-step refiner)",
              "no-refine": "gmodiff --no-refine (DaReg stage)",
              "deghost": "deghost (= classical; estimated response)",
              "debevec-calibrated": "OpenCV Debevec, self-calibrated from the 3 frames",
              "debevec": "OpenCV MergeDebevec, estimated response",
              "deghost-gamma2.2": "deghost with gamma 2.2 (before #28)",
              "default-oracle-curve": "diagnostic: gmodiff default, ground truth's curve",
              "deghost-oracle-curve": "diagnostic: deghost, ground truth's curve"}


def fail(message: str) -> None:
    """One line on stderr, exit status 2 (bad input, not a crash)."""
    print(f"real.py: {message}", file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------------
# Loading


@dataclass
class RealStack:
    """One real bracket: frames float32 (H, W, 3) in [0, 1] sorted short → long, times in s."""

    name: str
    kind: str
    frames: list[np.ndarray]
    times: np.ndarray
    camera: str = ""
    shifts: list[tuple[int, int]] = field(default_factory=list)


def read_times(folder: Path) -> dict[str, float]:
    """``times.txt``: ``<file> <seconds>`` per line (seconds may be a fraction such as 1/60)."""
    path = folder / TIMES_FILE
    if not path.is_file():
        fail(f"{path}: missing; write one line `<file> <seconds>` per frame")
    times = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith("#"):
            continue
        try:
            name, value = parts[0], parts[1]
            num, _, den = value.partition("/")
            seconds = float(num) / float(den) if den else float(num)
        except (IndexError, ValueError, ZeroDivisionError):
            fail(f"{path}:{number}: expected `<file> <seconds>`, got {line.strip()[:60]!r}")
        if not (seconds > 0 and math.isfinite(seconds)):
            fail(f"{path}:{number}: exposure time must be positive, got {value}")
        times[name] = seconds
    return times


def _camera(path: Path) -> str:
    try:
        from PIL import Image

        with Image.open(path) as image:
            exif = image.getexif()
            return " ".join(str(exif.get(tag, "")).strip() for tag in (271, 272)).strip()
    except Exception:  # no EXIF is fine: the camera is only a label
        return ""


def _downscale(image: np.ndarray, max_pixels: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = math.sqrt(max_pixels / float(height * width))
    if scale >= 1.0:
        return image
    size = (max(8, round(width * scale)), max(8, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def load_stack(folder: Path, max_pixels: int | None = None) -> RealStack:
    """A scene folder as a :class:`RealStack` (area-downscaled to ``max_pixels`` if given)."""
    times = read_times(folder)
    kind_path = folder / KIND_FILE
    kind = kind_path.read_text(encoding="utf-8").strip().lower() if kind_path.is_file() else ""
    if kind not in KINDS:
        fail(f"{kind_path}: write `static` (tripod stack, >= 5 exposures) or `moving`")
    frames, seconds, camera = [], [], ""
    for name, value in sorted(times.items(), key=lambda item: item[1]):
        path = folder / name
        if not path.is_file() or path.suffix.lower() not in LDR_SUFFIXES:
            fail(f"{folder / TIMES_FILE}: {name} is not an LDR frame in {folder}")
        try:
            pixels = read_ldr(path).pixels
        except GmodiffError as err:
            fail(str(err))
        frames.append(_downscale(pixels, max_pixels) if max_pixels else pixels)
        seconds.append(value)
        camera = camera or _camera(path)
    camera_path = folder / CAMERA_FILE
    if camera_path.is_file():
        camera = camera_path.read_text(encoding="utf-8").strip()
    if len({f.shape for f in frames}) != 1:
        fail(f"{folder}: frames differ in size")
    if kind == "static" and len(frames) < 5:
        fail(f"{folder}: a static stack needs >= 5 exposures for its ground truth, got {len(frames)}")
    if len(frames) < 3:
        fail(f"{folder}: needs >= 3 frames, got {len(frames)}")
    return RealStack(folder.name, kind, frames, np.asarray(seconds, np.float64), camera)


# ---------------------------------------------------------------------------------------------
# Ground truth from all frames


def to_bgr8(frame: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rint(np.clip(frame, 0, 1) * 255).astype(np.uint8)[..., ::-1])


def register_stack(stack: RealStack, anchor: int) -> RealStack:
    """Every frame registered onto ``anchor`` (deghost's ECC fit on the exposure-matched frame,
    Euclidean; identity where the fit is weak); the border the warp shifts in is cropped.

    Tripod stacks still move by a pixel or two (mirror slap, a touched shutter button). AlignMTB
    was tried first: on the near-black short frames of night stacks it locked onto its search
    limit (7 px) for every frame."""
    reference = stack.frames[anchor]
    height, width = reference.shape[:2]
    frames, shifts = [], []
    for index, frame in enumerate(stack.frames):
        if index == anchor:
            frames.append(frame)
            shifts.append((0, 0))
            continue
        warp = estimate_alignment(intensity_mapping(frame, reference), reference)
        frames.append(warp_to_reference(frame, warp))
        corners = np.array([[0, 0, 1], [width - 1, 0, 1], [0, height - 1, 1],
                            [width - 1, height - 1, 1]], np.float32)
        moved = np.abs(corners @ warp.T - corners[:, :2]).max(axis=0)
        shifts.append((int(math.ceil(moved[0])), int(math.ceil(moved[1]))))
    margin = max([v for s in shifts for v in s] + [0])
    if margin:
        frames = [f[margin:height - margin, margin:width - margin] for f in frames]
    return RealStack(stack.name, stack.kind, [np.ascontiguousarray(f) for f in frames],
                     stack.times, stack.camera, shifts)


def reference_hdr(frames: list[np.ndarray], times: np.ndarray, algorithm: str = "debevec"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(radiance per second (H, W, 3) RGB, inverse response (256, 3)) from all ``frames``.

    The response is calibrated from every frame and normalised to 1 at :data:`NORMALISE_CODE`,
    so ``response(L) = E · t``."""
    frames8 = [to_bgr8(f) for f in frames]
    seconds = np.asarray(times, dtype=np.float32)
    if algorithm == "debevec":
        response = cv2.createCalibrateDebevec(samples=200).process(frames8, seconds)
        merged = cv2.createMergeDebevec().process(frames8, seconds, response)
    elif algorithm == "robertson":
        response = cv2.createCalibrateRobertson().process(frames8, seconds)
        merged = cv2.createMergeRobertson().process(frames8, seconds, response)
    else:
        raise ValueError(f"unknown algorithm {algorithm!r}")
    response = np.asarray(response, dtype=np.float64).reshape(256, 3)
    for c in range(3):  # codes no frame shows come back NaN (Robertson): interpolate them
        known = np.isfinite(response[:, c])
        response[~known, c] = np.interp(np.flatnonzero(~known), np.flatnonzero(known),
                                        response[known, c], left=0.0)
    norm = response[NORMALISE_CODE]  # per channel (B, G, R): white balances white to 1
    radiance = np.asarray(merged, dtype=np.float64) / norm
    radiance = np.nan_to_num(radiance, nan=0.0, posinf=0.0, neginf=0.0)
    # Clipped in every frame: both merges give it no weight (Robertson returns 0 there). It is at
    # least white in the shortest frame, which is all a ground truth can say.
    clipped = np.min(np.stack(frames8), axis=0) >= 255
    radiance[clipped] = np.maximum(radiance[clipped], 1.0 / float(seconds.min()))
    return (np.maximum(radiance, 0.0)[..., ::-1].astype(np.float32),
            (response / norm)[:, ::-1].astype(np.float32))


def pick_triples(times: np.ndarray, spacing: float, frames: list[np.ndarray] | None = None
                 ) -> tuple[int, int, int] | None:
    """Indices (short, reference, long) about ``spacing`` stops apart; among several, the one
    whose reference frame's median is closest to 0.4 (a normally exposed middle frame)."""
    stops = np.log2(np.asarray(times, dtype=np.float64))
    best, best_cost = None, float("inf")
    for ref in range(len(stops)):
        short = int(np.argmin(np.abs(stops - (stops[ref] - spacing))))
        long = int(np.argmin(np.abs(stops - (stops[ref] + spacing))))
        if short == ref or long == ref:
            continue
        if (abs(stops[ref] - stops[short] - spacing) > SPACING_TOLERANCE
                or abs(stops[long] - stops[ref] - spacing) > SPACING_TOLERANCE):
            continue
        cost = abs(float(np.median(frames[ref])) - 0.4) if frames is not None else 0.0
        if cost < best_cost:
            best, best_cost = (short, ref, long), cost
    return best


def triple_scene(stack: RealStack, triple: tuple[int, int, int], gt_per_second=None) -> Scene:
    """The 3 frames as a gmodiff :class:`Scene` (times relative to the short one; ground truth
    relative to the short exposure, spec §1, and clipped at 1 there).

    Radiance above the short input's white is beyond what any method can know from these 3
    frames (the whole stack reaches up to 9 stops further): the ground truth stops at 1 there,
    the short frame's clipping level, as a simulated bracket's would."""
    t_short = float(stack.times[triple[0]])
    ground_truth = (None if gt_per_second is None else
                    np.minimum(gt_per_second * t_short, 1.0).astype(np.float32))
    return Scene(frames=[stack.frames[i] for i in triple],
                 exposure_times=np.asarray([stack.times[i] / t_short for i in triple], np.float64),
                 reference_index=1, ground_truth=ground_truth, name=stack.name)


# ---------------------------------------------------------------------------------------------
# Methods


def classical_functions(methods) -> dict[str, callable]:
    """Classical row → fn(scene) -> HDR."""
    functions = {}
    for method in methods:
        if method == "deghost-gamma2.2":
            functions[method] = deghost_merge  # no inverse response: L**2.2 / t
        elif method in CLASSICAL_METHODS:
            functions[method] = CLASSICAL_METHODS[method]
        elif method not in MODEL_ROWS + ORACLE_ROWS:
            fail(f"--methods: unknown {method!r}; use {', '.join(DEFAULT_METHODS)}")
    return functions


def oracle_linearise(inverse_lut: np.ndarray) -> callable:
    """Encoded [0, 1] → linear [0, 1] through a calibrated (256, 3) inverse response."""
    codes = np.arange(256, dtype=np.float32) / 255.0
    lut = np.clip(np.maximum.accumulate(np.asarray(inverse_lut, np.float32), axis=0), 0.0, 1.0)

    def linearise(encoded: np.ndarray) -> np.ndarray:
        out = np.empty(encoded.shape, np.float32)
        for c in range(encoded.shape[-1]):
            out[..., c] = np.interp(encoded[..., c], codes, lut[:, c])
        return out

    return linearise


def run_oracle(scene: Scene, methods, inverse_lut: np.ndarray, pipe=None) -> dict[str, np.ndarray]:
    """The :data:`ORACLE_ROWS` of ``scene`` with the ground truth's inverse response."""
    import dataclasses

    from gmodiff.inputs.canonical import canonicalise_scene
    from gmodiff.io.frames import RAW_ENCODING

    linearise = oracle_linearise(inverse_lut)
    outputs = {}
    if "deghost-oracle-curve" in methods:
        outputs["deghost-oracle-curve"] = deghost_merge(scene, inverse=linearise)
    if "default-oracle-curve" in methods and pipe is not None:
        # Canonical frames made with the oracle curve, marked as such so the pipeline does not
        # estimate a curve of its own (as for raw input).
        canonical = dataclasses.replace(canonicalise_scene(scene, linearise), encoding=RAW_ENCODING)
        outputs["default-oracle-curve"] = pipe(canonical).hdr  # the default output, as its row says
    return {m: np.nan_to_num(np.asarray(v, np.float32), nan=0.0, posinf=0.0)
            for m, v in outputs.items()}


def model_methods(methods: list[str], pipe_refines: bool) -> list[str]:
    """``methods`` without the stage row that duplicates the default, and the default row's
    title saying which stage it is."""
    same = "refine" if pipe_refines else "no-refine"
    ROW_TITLES["default"] = "gmodiff default (" + (
        "DaReg + one-step refiner)" if pipe_refines else "DaReg stage; --refine adds the refiner)")
    return [m for m in methods if m != same]


def run_methods(scene: Scene, methods, pipe=None) -> dict[str, np.ndarray]:
    """Row → HDR of ``scene``. The model rows share one pipeline call (the refined output
    carries the DaReg stage's gain map, what ``--no-refine`` returns)."""
    outputs = {}
    if pipe is not None and any(m in MODEL_ROWS for m in methods):
        out = pipe(scene, refine=True)
        coarse = pipe.decode(out.coarse_gain_map, scene)  # against the reference DaReg saw
        outputs["default"] = np.asarray(out.hdr if pipe.refine else coarse)
        outputs["refine"] = np.asarray(out.hdr)
        outputs["no-refine"] = np.asarray(coarse)
    for name, fn in classical_functions(methods).items():
        outputs[name] = fn(scene)
    return {m: np.nan_to_num(np.asarray(outputs[m], np.float32), nan=0.0, posinf=0.0)
            for m in methods if m in outputs}


# ---------------------------------------------------------------------------------------------
# Scores


def score_static(hdr: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """PSNR-μ, PSNR-l, gain-fitted PSNR-μ, the fitted gain and per-band median ratios divided by
    that gain (the curve's shape; the gain is its level)."""
    gain = fit_log_gain(hdr, gt)
    scores = {"psnr_mu": psnr_mu(hdr, gt), "psnr_l": psnr_l(hdr, gt),
              "psnr_mu_gain": psnr_mu_gain_fitted(hdr, gt), "gain": gain}
    for band, ratio in zip(RADIANCE_BANDS, band_ratios(hdr, gt)):
        scores[f"ratio {band_label(band)}"] = ratio / gain
    return scores


def forward_curve(inverse_lut: np.ndarray) -> callable:
    """The camera curve f (linear → encoded) from a monotone inverse LUT on linspace(0, 1)."""
    grid = np.linspace(0.0, 1.0, inverse_lut.size, dtype=np.float64)
    lut = np.maximum.accumulate(np.asarray(inverse_lut, dtype=np.float64))

    def forward(linear: np.ndarray) -> np.ndarray:
        return np.interp(np.clip(linear, 0.0, 1.0), lut, grid).astype(np.float32)

    return forward


def _psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> float:
    if mask.sum() < 16:
        return float("nan")
    mse = float(np.mean((a[mask] - b[mask]) ** 2))
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))


@dataclass
class MovingMasks:
    """Per non-reference input: registered frame and well-exposed static mask; the motion mask."""

    frames: list[np.ndarray]
    times: list[float]
    static: list[np.ndarray]
    motion: np.ndarray


def moving_masks(scene: Scene) -> MovingMasks:
    """Register every non-reference input to the reference and find where it agrees with it."""
    reference = scene.reference
    low, high = WELL_EXPOSED
    motion = np.zeros(reference.shape[:2], bool)
    frames, times, static = [], [], []
    for index, frame in enumerate(scene.frames):
        if index == scene.reference_index:
            continue
        warp = estimate_alignment(intensity_mapping(frame, reference), reference)
        frame = warp_to_reference(frame, warp)
        trust = consistency(frame, reference)
        exposed = ((frame > low) & (frame < high)).all(axis=-1)
        frames.append(frame)
        times.append(float(scene.exposure_times[index]))
        static.append(exposed & (trust >= STATIC_TRUST))
        motion |= trust < MOVING_TRUST
    ref_exposed = ((reference > low) & (reference < high)).all(axis=-1)
    return MovingMasks(frames, times, static, motion & ref_exposed)


def score_moving(hdr: np.ndarray, scene: Scene, forward, masks: MovingMasks) -> dict[str, float]:
    """Re-rendering PSNR (dB, encoded units) over the static well-exposed pixels of every
    non-reference input, and the reference PSNR in the motion region."""
    errors, weights = [], []
    for frame, time_, mask in zip(masks.frames, masks.times, masks.static, strict=True):
        rendered = forward(hdr * time_)
        if mask.sum() >= 16:
            errors.append(float(np.mean((rendered[mask] - frame[mask]) ** 2)))
            weights.append(float(mask.sum()))
    rerender = (10.0 * math.log10(1.0 / max(np.average(errors, weights=weights), 1e-12))
                if errors else float("nan"))
    t_ref = float(scene.exposure_times[scene.reference_index])
    ghost = _psnr(forward(hdr * t_ref), scene.reference, masks.motion)
    return {"rerender_psnr": rerender, "motion_ref_psnr": ghost,
            "motion_fraction": float(masks.motion.mean()),
            "static_fraction": float(np.mean([m.mean() for m in masks.static]))}


# ---------------------------------------------------------------------------------------------
# Contact sheet


def display(hdr: np.ndarray, t_ref: float) -> np.ndarray:
    """A viewable 8-bit RGB picture: the reference exposure with an extended-Reinhard shoulder
    (white at the 99.9th percentile, at least 1), encoded with gamma 2.2."""
    x = np.maximum(np.asarray(hdr, np.float64) * t_ref, 0.0)
    white = max(float(np.percentile(x, 99.9)), 1.0)
    y = x * (1.0 + x / white ** 2) / (1.0 + x)
    y = y / (white * (1.0 + 1.0 / white) / (1.0 + white))  # white ↦ 1
    return np.rint(np.clip(y, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)


def contact_sheet(rows: list[tuple[str, list[np.ndarray]]], path: Path, tile_width: int = 300
                  ) -> None:
    """One row per scene (its name, then reference frame, default, deghost), as a JPEG."""
    lines = []
    for name, images in rows:
        tiles = []
        for image in images:
            height = round(image.shape[0] * tile_width / image.shape[1])
            tiles.append(cv2.resize(image, (tile_width, height), interpolation=cv2.INTER_AREA))
        height = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, height - t.shape[0]), (0, 4), (0, 0))) for t in tiles]
        line = np.concatenate(tiles, axis=1)
        line = np.pad(line, ((18, 4), (0, 0), (0, 0)))
        cv2.putText(line, name, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        lines.append(line)
    width = max(line.shape[1] for line in lines)
    sheet = np.concatenate([np.pad(line, ((0, 0), (0, width - line.shape[1]), (0, 0)))
                            for line in lines], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        ok, data = cv2.imencode(".jpg", np.ascontiguousarray(sheet[..., ::-1]),
                                [cv2.IMWRITE_JPEG_QUALITY, 82])
        if not ok:
            fail(f"{path}: OpenCV could not encode the contact sheet")
        Path(tmp).write_bytes(data.tobytes())


# ---------------------------------------------------------------------------------------------
# Evaluation


@dataclass
class Results:
    static_rows: list[dict] = field(default_factory=list)
    moving_rows: list[dict] = field(default_factory=list)
    scenes: list[dict] = field(default_factory=list)
    sheet_rows: list[tuple[str, list[np.ndarray]]] = field(default_factory=list)
    truth: str = TRUTH
    """Which of :data:`TRUTHS` the static scores use; ``psnr_mu_gain_other`` uses the other."""
    stability: dict[str, dict[str, float]] = field(default_factory=dict)
    """Static stack → :func:`truth_stability` of both ground truths."""

    @property
    def other_truth(self) -> str:
        return next(name for name in TRUTHS if name != self.truth)


def evaluate_static(stack: RealStack, methods, pipe=None, results: Results | None = None
                    ) -> Results:
    """Ground truths from all frames, then every spacing's triple scored against them
    (``results.truth``; ``psnr_mu_gain_other`` against the other one)."""
    results = results or Results()
    truth, other_truth = results.truth, results.other_truth
    anchor = len(stack.frames) // 2
    stack = register_stack(stack, anchor)
    calibrated = {name: reference_hdr(stack.frames, stack.times, name)
                  for name in (truth, other_truth)}
    truths = {name: radiance for name, (radiance, _) in calibrated.items()}
    results.stability[stack.name] = truth_stability(
        stack, {name: lut for name, (_, lut) in calibrated.items()})
    for spacing in SPACINGS:
        triple = pick_triples(stack.times, spacing, stack.frames)
        if triple is None:
            continue
        scene = triple_scene(stack, triple, truths[truth])
        other = np.minimum(truths[other_truth] * float(stack.times[triple[0]]),
                           1.0).astype(np.float32)
        beyond = float(np.mean((truths[truth] * float(stack.times[triple[0]])) >= 1.0))
        results.scenes.append({"scene": stack.name, "kind": "static", "camera": stack.camera,
                               "spacing": spacing, "frames": len(stack.frames), "beyond": beyond,
                               "times": [float(stack.times[i]) for i in triple],
                               "size": scene.frames[0].shape[:2],
                               "max_shift": max(abs(v) for s in stack.shifts for v in s)})
        outputs = run_methods(scene, methods, pipe)
        outputs.update(run_oracle(scene, methods, calibrated[truth][1], pipe))
        for method, hdr in outputs.items():
            row = {"scene": stack.name, "spacing": spacing, "method": method}
            row.update(score_static(hdr, scene.ground_truth))
            row["psnr_mu_gain_other"] = psnr_mu_gain_fitted(hdr, other)
            results.static_rows.append(row)
    return results


def truth_stability(stack: RealStack, luts: dict[str, np.ndarray]) -> dict[str, float]:
    """Per ground truth: the mean |log2| change of its response's shape (its mean level change
    removed: the gain-fitted scores do not see it) when the stack is calibrated again at
    :data:`STABILITY_SCALE` of its size, over :data:`STABILITY_CODES` weighted by how often each
    code occurs in the stack. A ground truth that moves with the image size is not a
    measurement."""
    height, width = stack.frames[0].shape[:2]
    size = (round(width * STABILITY_SCALE), round(height * STABILITY_SCALE))
    smaller = [cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in stack.frames]
    codes = np.stack([to_bgr8(f)[..., ::-1] for f in stack.frames])
    weight = np.stack([np.bincount(codes[..., c].ravel(), minlength=256) for c in range(3)],
                      axis=1)[STABILITY_CODES].astype(np.float64)
    changes = {}
    for name, lut in luts.items():
        _, again = reference_hdr(smaller, stack.times, name)
        ratio = np.log2(np.maximum(again[STABILITY_CODES], 1e-9)
                        / np.maximum(lut[STABILITY_CODES], 1e-9))
        ratio -= np.sum(weight * ratio) / max(weight.sum(), 1.0)  # a level change is a gain
        changes[name] = float(np.sum(weight * np.abs(ratio)) / max(weight.sum(), 1.0))
    return changes


def moving_triple(stack: RealStack) -> tuple[int, int, int]:
    """All 3 frames, or 3 of a longer stack at about :data:`MOVING_SPACING` stops."""
    if len(stack.frames) == 3:
        return (0, 1, 2)
    return (pick_triples(stack.times, MOVING_SPACING, stack.frames)
            or (0, len(stack.frames) // 2, len(stack.frames) - 1))


def evaluate_moving(stack: RealStack, methods, pipe=None, results: Results | None = None
                    ) -> Results:
    """Re-rendering consistency and the motion-region measure for every method."""
    results = results or Results()
    triple = moving_triple(stack)
    scene = triple_scene(stack, triple)
    estimate = estimate_response(scene.frames, scene.exposure_times)
    forward = forward_curve(estimate.inverse_lut)
    masks = moving_masks(scene)
    results.scenes.append({"scene": stack.name, "kind": "moving", "camera": stack.camera,
                           "spacing": float(np.log2(scene.exposure_times[2] / scene.exposure_times[1])),
                           "frames": len(stack.frames),
                           "times": [float(stack.times[i]) for i in triple],
                           "size": scene.frames[0].shape[:2], "response": estimate.source})
    outputs = run_methods(scene, methods, pipe)
    for method, hdr in outputs.items():
        row = {"scene": stack.name, "method": method}
        row.update(score_moving(hdr, scene, forward, masks))
        results.moving_rows.append(row)
    t_ref = float(scene.exposure_times[1])
    pictures = [np.rint(scene.reference * 255).astype(np.uint8)]
    pictures += [display(outputs[m], t_ref) for m in ("default", "deghost") if m in outputs]
    results.sheet_rows.append((f"{stack.name}: reference | default | deghost", pictures))
    return results


# ---------------------------------------------------------------------------------------------
# Report


def _mean(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")


def _geo(rows: list[dict], key: str) -> float:
    values = [r[key] for r in rows if key in r and np.isfinite(r[key]) and r[key] > 0]
    return float(np.exp(np.mean(np.log(values)))) if values else float("nan")


def _f(value: float, digits: int = 2, prefix: str = "") -> str:
    return "–" if not np.isfinite(value) else f"{prefix}{value:.{digits}f}"


def report(results: Results, methods, made_by: str) -> str:
    """The Markdown report."""
    bands = [f"ratio {band_label(b)}" for b in RADIANCE_BANDS]
    lines = ["# Real camera brackets", "", made_by, "",
             "Evaluation only: the frames are public demo stacks (docs/evaluation.md lists them and "
             "how to lay them out); nothing here is trained or tuned on them.", ""]
    static = results.static_rows
    truth, other = results.truth, results.other_truth
    if static:
        names = sorted({r["scene"] for r in static})
        lines += ["## Static stacks: radiometric ground truth", "",
                  f"{len(names)} tripod stacks ({', '.join(names)}), {len({(r['scene'], r['spacing']) for r in static})} "
                  f"input triples. Ground truth: {TRUTHS[truth]} "
                  "of *all* frames after ECC registration to the middle frame, response normalised to 1 at code "
                  f"{NORMALISE_CODE}; the last column scores against a {other.capitalize()} ground "
                  f"truth ({TRUTHS[other]} of all frames) instead (the stability of both: table "
                  "below). Means over triples; "
                  "*gain*: the one global gain fitted to each triple (geometric mean; the level "
                  "error, which depends on where the ground truth's response puts white); ratio "
                  "columns: geometric means of the per-triple median predicted / true luminance "
                  "in bands of the true luminance / peak, divided by that gain (the tone curve's "
                  "shape error).", "",
                  "| method | PSNR-μ | PSNR-l | PSNR-μ gain-fitted | gain | "
                  + " | ".join(b.removeprefix("ratio ") for b in bands)
                  + f" | PSNR-μ gain-fitted vs {other.capitalize()} GT |",
                  "|---|" + "---|" * (5 + len(bands))]
        for method in methods:
            rows = [r for r in static if r["method"] == method]
            if not rows:
                continue
            lines.append(f"| {ROW_TITLES.get(method, method)} | {_f(_mean(rows, 'psnr_mu'))} | "
                         f"{_f(_mean(rows, 'psnr_l'))} | {_f(_mean(rows, 'psnr_mu_gain'))} | "
                         f"×{_f(_geo(rows, 'gain'))} | "
                         + " | ".join(_f(_geo(rows, b), 2, "×") for b in bands)
                         + f" | {_f(_mean(rows, 'psnr_mu_gain_other'))} |")
        lines += [""]
        if "default" in methods and "debevec-calibrated" in methods:
            d = [r for r in static if r["method"] == "default"]
            c = [r for r in static if r["method"] == "debevec-calibrated"]
            key = {truth: "psnr_mu_gain", other: "psnr_mu_gain_other"}
            on_deb = _mean(c, key["debevec"]) - _mean(d, key["debevec"])
            on_rob = _mean(c, key["robertson"]) - _mean(d, key["robertson"])
            lines += [f"Self-calibrated Debevec minus default (gain-fitted PSNR-μ): {on_deb:+.2f} dB "
                      f"against the Debevec ground truth, {on_rob:+.2f} dB against the Robertson one; "
                      f"the difference, {on_deb - on_rob:+.2f} dB, is what the peer gains from being "
                      "scored against a ground truth made the same way as itself.", ""]
        lines += [f"Per triple (gain-fitted PSNR-μ vs the {truth.capitalize()} ground truth):", "",
                  "| scene | spacing | " + " | ".join(methods) + " |",
                  "|---|---|" + "---|" * len(methods)]
        for scene, spacing in sorted({(r["scene"], r["spacing"]) for r in static}):
            cells = []
            for method in methods:
                match = [r for r in static if r["scene"] == scene and r["spacing"] == spacing
                         and r["method"] == method]
                cells.append(_f(match[0]["psnr_mu_gain"]) if match else "–")
            lines.append(f"| {scene} | {spacing:g} | " + " | ".join(cells) + " |")
        lines += ["", "Ground-truth stability: the mean change (stops) of each all-frame "
                  f"response's shape (its level change removed) over codes {STABILITY_CODES[0]}–{STABILITY_CODES[-1]}, weighted by "
                  "how often each code occurs in the stack, when the stack is calibrated again "
                  f"at {STABILITY_SCALE:g}× its size. Debevec's 200 grid "
                  "samples move with the image; Robertson uses every pixel.", "",
                  "| scene | Robertson | Debevec |", "|---|---|---|"]
        for scene, change in sorted(results.stability.items()):
            lines.append(f"| {scene} | {_f(change['robertson'])} | {_f(change['debevec'])} |")
        lines += [""]
    moving = results.moving_rows
    methods = [m for m in methods if m not in ORACLE_ROWS]  # static stacks only
    if moving:
        names = sorted({r["scene"] for r in moving})
        lines += ["## Scenes with motion: re-rendering consistency", "",
                  "No ground truth. *Re-rendering PSNR*: the HDR rendered back through the response "
                  "estimated from the 3 inputs at each non-reference input's exposure, against that "
                  "input (ECC-registered to the reference) where it is well exposed "
                  f"({WELL_EXPOSED[0]}–{WELL_EXPOSED[1]}) and agrees with the reference "
                  f"(deghost consistency ≥ {STATIC_TRUST}); encoded units, data range 1. *Motion-region "
                  "PSNR*: the HDR rendered at the reference exposure against the reference frame where "
                  f"the inputs disagree with it (consistency < {MOVING_TRUST}) and it is well exposed: "
                  "a ghost (content from another input) lowers it. Higher is better for both.", "",
                  "| scene | motion px | " + " | ".join(
                      f"{m} re-render / motion" for m in methods) + " |",
                  "|---|---|" + "---|" * len(methods)]
        for scene in names:
            rows = {r["method"]: r for r in moving if r["scene"] == scene}
            any_row = next(iter(rows.values()))
            cells = [f"{_f(rows[m]['rerender_psnr'])} / {_f(rows[m]['motion_ref_psnr'])}"
                     if m in rows else "–" for m in methods]
            lines.append(f"| {scene} | {100 * any_row['motion_fraction']:.1f} % | "
                         + " | ".join(cells) + " |")
        mean_cells = [f"{_f(_mean([r for r in moving if r['method'] == m], 'rerender_psnr'))} / "
                      f"{_f(_mean([r for r in moving if r['method'] == m], 'motion_ref_psnr'))}"
                      for m in methods]
        lines += ["| **mean** | | " + " | ".join(mean_cells) + " |", "",
                  "Contact sheet (reference frame, default, deghost; a global tone curve): "
                  "[docs/img/real_contact_sheet.jpg](../../docs/img/real_contact_sheet.jpg).", ""]
    lines += ["## Scenes", "", "| scene | kind | camera | frames | input times (s) | size | notes |",
              "|---|---|---|---|---|---|---|"]
    for s in results.scenes:
        note = (f"{s['spacing']:g} stops; registration ≤ {s['max_shift']} px; "
                f"{100 * s['beyond']:.1f} % of values beyond the short input's white"
                if s["kind"] == "static"
                else f"{s['spacing']:.1f} stops; response {s['response']}")
        times = ", ".join(f"{t:.4g}" for t in s["times"])
        lines.append(f"| {s['scene']} | {s['kind']} | {s['camera'] or '?'} | {s['frames']} | "
                     f"{times} | {s['size'][1]}×{s['size'][0]} | {note} |")
    return "\n".join(lines) + "\n"


def find_stacks(root: Path, names: list[str] | None) -> list[Path]:
    """Scene folders under ``root`` (those with a times.txt), or the ``names`` asked for."""
    if not root.is_dir():
        fail(f"--root {root}: no such folder; lay scenes out as docs/evaluation.md says")
    folders = sorted(p for p in root.iterdir() if (p / TIMES_FILE).is_file())
    if names:
        missing = sorted(set(names) - {p.name for p in folders})
        if missing:
            fail(f"--scenes: {', '.join(missing)} not under {root} (or without {TIMES_FILE})")
        folders = [p for p in folders if p.name in names]
    if not folders:
        fail(f"--root {root}: no scene folder with {TIMES_FILE}; see docs/evaluation.md")
    return folders


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, required=True, help="folder of scene folders")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/real.md"))
    parser.add_argument("--sheet", type=Path, default=Path("docs/img/real_contact_sheet.jpg"))
    parser.add_argument("--weights", default="default", help="pipeline folder, or 'default'")
    parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    parser.add_argument("--scenes", nargs="+", default=None, help="scene folder names (default: all)")
    parser.add_argument("--max-pixels", type=int, default=500_000,
                        help="frames are area-downscaled to at most this many pixels")
    args = parser.parse_args(argv)
    folders = find_stacks(args.root, args.scenes)
    classical_functions(args.methods)  # unknown names fail before any work
    pipe = None
    if any(m in MODEL_ROWS for m in args.methods):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from ood import load_pipeline  # same folder: benchmarks run as scripts

        pipe = load_pipeline(args.weights)
        args.methods = model_methods(args.methods, pipe.refine)
    start = time.perf_counter()
    results = Results()
    for index, folder in enumerate(folders, 1):
        stack = load_stack(folder, args.max_pixels)
        print(f"[{index}/{len(folders)}] {stack.name} ({stack.kind}, {len(stack.frames)} frames)",
              file=sys.stderr, flush=True)
        if stack.kind == "static":
            evaluate_static(stack, args.methods, pipe, results)
        else:
            evaluate_moving(stack, args.methods, pipe, results)
    from run_info import made_by

    command = ("`python benchmarks/real.py --root ROOT --max-pixels "
               f"{args.max_pixels}" + (f" --weights {args.weights}" if args.weights != "default" else "")
               + "`")
    text = report(results, args.methods, made_by(command, time.perf_counter() - start))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")
    if results.sheet_rows:
        contact_sheet(results.sheet_rows, args.sheet)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    main()
