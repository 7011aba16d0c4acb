"""The ``Scene`` type (one bracketed exposure stack plus its optional ground truth) and the
Kalantari-layout scene folders it is loaded from and saved to (spec §1).

A scene folder holds three LDR frames sorted by name (short → long), ``exposure.txt`` with one
value per frame in stops, and optionally the ground truth ``HDRImg.hdr`` (or ``label.hdr``) and,
for simulated scenes, ``motion_mask.png`` (8-bit grey: where moving objects are, in the reference
frame's coordinates; used by the region metrics).
"""

from __future__ import annotations

import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gmodiff.errors import ExposureError, OutputError, SceneError
from gmodiff.io.atomic import write_bytes_atomic
from gmodiff.io.hdr import read_hdr, write_hdr
from gmodiff.io.ldr import LDR_SUFFIXES, read_ldr, special_file_kind, write_ldr
from gmodiff.io.memory import RunCheck, check_fits_in_memory

EXPOSURE_FILE = "exposure.txt"
GROUND_TRUTH_NAMES = ("HDRImg.hdr", "label.hdr", "HDRImg.exr", "label.exr")
"""Ground-truth file names looked for, in this order."""
FRAMES_PER_SCENE = 3
MOTION_MASK_FILE = "motion_mask.png"
"""Optional moving-object coverage of a simulated scene (never taken for a frame)."""
MAX_EXPOSURE_FILE_BYTES = 65536
"""exposure.txt holds a few numbers; anything larger is refused before it is read."""
MAX_EXPOSURE_SPAN_STOPS = 30.0
"""Widest accepted bracket in stops; beyond it 2**stops loses meaning (and overflows)."""
DUPLICATE_TOLERANCE_STOPS = 0.1
"""Exposures closer than this (in stops) count as the same exposure (scene folders and image
brackets alike)."""


@dataclass
class Scene:
    """A bracket of LDR frames of one scene.

    ``frames`` are float32 (H, W, 3) RGB in [0, 1], in the camera's non-linear encoding, ordered
    short → long exposure. ``exposure_times`` are relative (the shortest is normally 1, i.e.
    ``t = 2**stops`` with stops from ``exposure.txt``). ``ground_truth`` is linear radiance aligned
    to the reference frame, relative to the t=1 exposure (so roughly in [0, 1]).
    """

    frames: list[np.ndarray]
    exposure_times: np.ndarray
    reference_index: int = 1
    ground_truth: np.ndarray | None = None
    name: str = "scene"
    root: Path | None = None
    frame_paths: list[Path] = field(default_factory=list)
    motion_mask: np.ndarray | None = None
    """(H, W) float32 in [0, 1]: coverage of moving objects in any frame, in the reference frame's
    coordinates (known for simulated scenes only; None elsewhere)."""
    encoding: str | None = None
    """The frames' camera curve when it is known: ``gmodiff.io.frames.RAW_ENCODING`` for raw
    input (frames are ``linear ** (1/2.2)`` exactly); None = unknown, estimated when needed."""

    @property
    def reference(self) -> np.ndarray:
        """The reference (normally medium) LDR frame."""
        return self.frames[self.reference_index]

    @property
    def reference_exposure(self) -> float:
        """The reference frame's relative exposure time: the factor that puts radiance in this
        scene's units (t=1 frame's white = 1) into output-file units, where 1.0 is the white of
        the reference frame (a pixel the reference shows at full scale). Every .hdr/.exr gmodiff
        writes is in those units and states the factor in its header."""
        return float(self.exposure_times[self.reference_index])

    @property
    def exposure_stops(self) -> np.ndarray:
        """Exposure values in stops (log2 of the relative exposure times)."""
        return np.log2(np.asarray(self.exposure_times, dtype=np.float64))

    @property
    def height(self) -> int:
        return int(self.frames[0].shape[0])

    @property
    def width(self) -> int:
        return int(self.frames[0].shape[1])


# ------------------------------------------------------------------------------------------------
# loading


def _natural_key(path: Path) -> list:
    # "input_2" sorts before "input_10"
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", path.name)]


def scene_frame_paths(folder: Path) -> list[Path]:
    """The LDR frame files of a scene folder: ``input_*.tif`` if present, else every LDR image."""
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")]
    inputs = [p for p in files if p.name.lower().startswith("input_")
              and p.suffix.lower() in (".tif", ".tiff")]
    frames = inputs or [p for p in files if p.suffix.lower() in LDR_SUFFIXES
                        and p.name != MOTION_MASK_FILE]
    return sorted(frames, key=_natural_key)


def read_exposure_stops(path: Path) -> np.ndarray:
    """Parse ``exposure.txt``: whitespace-separated exposure values in stops, one per frame."""
    if (kind := special_file_kind(path)) is not None:  # a FIFO would block the read forever
        raise ExposureError(f"is {kind}, not a regular file", path,
                            "write exposure.txt as a plain text file")
    if not path.is_file():
        raise ExposureError("missing exposure file", path,
                            "add exposure.txt with one exposure value in stops per frame, "
                            "short to long (e.g. 0, 2, 4)")
    size = path.stat().st_size
    if size > MAX_EXPOSURE_FILE_BYTES:
        raise ExposureError(f"exposure file is {size} bytes, expected a few numbers", path,
                            "write one exposure value in stops per frame, short to long")
    try:
        # utf-8-sig: editors on Windows start UTF-8 files with a byte-order mark
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExposureError(f"unreadable exposure file ({exc})", path,
                            "write it as plain text, one number per frame") from exc
    values = []
    for token in text.split():
        try:
            value = float(token)
        except ValueError:
            raise ExposureError(f"non-numeric exposure value '{token[:20]}'", path,
                                "write one number (stops) per frame") from None
        if not math.isfinite(value):
            raise ExposureError(f"exposure value '{token[:20]}' is not finite", path,
                                "write one finite number (stops) per frame")
        values.append(value)
    return np.asarray(values, dtype=np.float64)


def find_ground_truth(folder: Path) -> Path | None:
    """The ground-truth HDR file of a scene folder, or None."""
    for name in GROUND_TRUTH_NAMES:
        if (folder / name).is_file():
            return folder / name
    return None


def read_motion_mask(folder: str | Path, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """The scene's ``motion_mask.png`` as (H, W) float32 in [0, 1], or None when absent;
    ``shape`` (H, W), when given, must match."""
    path = Path(folder) / MOTION_MASK_FILE
    if not path.is_file():
        return None
    mask = read_ldr(path).pixels[..., 0]
    if shape is not None and mask.shape != tuple(shape):
        raise SceneError(f"motion mask is {mask.shape[1]}x{mask.shape[0]}, frames are "
                         f"{shape[1]}x{shape[0]}", path,
                         "delete the file or re-simulate the scene")
    return mask


def load_scene(folder: str | Path, load_ground_truth: bool = True,
               run_check: RunCheck | None = None) -> Scene:
    """Load a Kalantari-layout scene folder; every malformed input raises a GmodiffError.

    Exposure times are ``2**(stops - min(stops))`` so the shortest frame has t = 1, and the
    medium frame (index 1) is the reference. ``run_check`` (the reconstruction's memory plan,
    :func:`gmodiff.methods.memory_check`) judges the frames' header sizes before decoding.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise SceneError("scene folder not found", folder, "pass a folder holding the frames "
                         "and exposure.txt")
    exposure_path = folder / EXPOSURE_FILE
    stops = read_exposure_stops(exposure_path)
    frame_paths = scene_frame_paths(folder)
    if len(frame_paths) != FRAMES_PER_SCENE:
        names = ", ".join(p.name for p in frame_paths[:6]) or "none"
        raise SceneError(f"expected {FRAMES_PER_SCENE} LDR frames, found {len(frame_paths)} "
                         f"({names})", folder,
                         "keep exactly three frames (.tif/.png/.jpg), short to long by name")
    if stops.size != len(frame_paths):
        raise ExposureError(f"{stops.size} exposure values for {len(frame_paths)} frames",
                            exposure_path, "write one value in stops per frame")
    with np.errstate(over="ignore", invalid="ignore"):  # ±1e308: the span check refuses them
        gaps = np.diff(stops)
        span = float(stops.max() - stops.min())
    if np.any(gaps <= 0):
        raise ExposureError(f"exposures {stops.tolist()} are not strictly increasing",
                            exposure_path, "list exposures short to long, matching the frames "
                            "sorted by name")
    if not math.isfinite(span) or span > MAX_EXPOSURE_SPAN_STOPS:
        raise ExposureError(f"exposures span {span:.4g} stops, more than "
                            f"{MAX_EXPOSURE_SPAN_STOPS:g}", exposure_path,
                            "write exposure values in stops (EV), e.g. 0 2 4")
    if np.any(gaps < DUPLICATE_TOLERANCE_STOPS):  # the rule image-file brackets follow too
        k = int(np.argmax(gaps < DUPLICATE_TOLERANCE_STOPS))
        raise ExposureError(f"exposures {stops[k]:g} and {stops[k + 1]:g} are {gaps[k]:.2g} stops "
                            f"apart, closer than {DUPLICATE_TOLERANCE_STOPS:g}", exposure_path,
                            "each frame needs its own exposure: fix the values or drop a frame")
    gt_path = find_ground_truth(folder) if load_ground_truth else None
    # From the headers, before any pixel is decoded: a valid but huge bracket is refused here
    # with the memory it would need, instead of failing (or swapping) half-way through decoding.
    check_fits_in_memory(frame_paths, [gt_path] if gt_path is not None else [],
                         run_check=run_check)
    images = [read_ldr(p) for p in frame_paths]
    first = images[0]
    for image in images[1:]:
        if image.pixels.shape != first.pixels.shape:
            raise SceneError(f"frame size {image.pixels.shape[1]}x{image.pixels.shape[0]} "
                             f"differs from {first.path.name} "
                             f"({first.pixels.shape[1]}x{first.pixels.shape[0]})", image.path,
                             "give all frames the same size")
        if image.bit_depth != first.bit_depth:
            raise SceneError(f"{image.bit_depth}-bit frame mixed with {first.bit_depth}-bit "
                             f"{first.path.name}", image.path,
                             "convert all frames to the same bit depth")
    ground_truth = None
    if gt_path is not None:
        ground_truth = read_hdr(gt_path)
        if ground_truth.shape != first.pixels.shape:
            raise SceneError(f"ground truth is {ground_truth.shape[1]}x{ground_truth.shape[0]}, "
                             f"frames are {first.pixels.shape[1]}x{first.pixels.shape[0]}",
                             gt_path, "use a ground truth aligned to the frames")
    return Scene(
        frames=[im.pixels for im in images],
        exposure_times=np.exp2(stops - stops.min()),
        reference_index=1,
        ground_truth=ground_truth,
        name=folder.name,
        root=folder,
        frame_paths=list(frame_paths),
        motion_mask=read_motion_mask(folder, first.pixels.shape[:2]),
    )


def scene_input_paths(folder: str | Path) -> list[Path]:
    """Every file a run reads from the scene folder ``folder``: frames, exposure.txt and any
    ground-truth candidate (outputs must never replace one of these)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    paths = [*scene_frame_paths(folder), folder / EXPOSURE_FILE]
    paths += [folder / name for name in GROUND_TRUTH_NAMES]
    return paths


def find_scenes(root: str | Path) -> list[Path]:
    """``[root]`` if it is a scene folder, else the scene folders below it (sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise SceneError("folder not found", root, "pass a scene folder or a folder of scenes")
    if (root / EXPOSURE_FILE).is_file():
        return [root]
    found = []
    # Symlinked scene folders are followed; a link back to a folder above it (a loop) is refused,
    # and a folder reached again by another link is taken once.
    seen: set[tuple[int, int]] = set()
    above: dict[str, tuple[tuple[int, int], ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        info = os.stat(dirpath)
        identity = (info.st_dev, info.st_ino)
        chain = above.get(os.path.dirname(dirpath), ())
        if identity in chain:
            raise SceneError("links back to a folder above it (a symlink loop)", dirpath,
                             "remove the link, or point it at a folder outside this tree")
        above[dirpath] = (*chain, identity)
        if identity in seen:
            dirnames[:] = []
            continue
        seen.add(identity)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if EXPOSURE_FILE in filenames:
            found.append(Path(dirpath))
            dirnames[:] = []  # a scene does not contain scenes
    return sorted(found, key=lambda p: [_natural_key(Path(x)) for x in p.relative_to(root).parts])


# ------------------------------------------------------------------------------------------------
# saving


def save_scene(scene: Scene, folder: str | Path, overwrite: bool = False) -> Path:
    """Write ``scene`` as a Kalantari folder: input_1..N.tif (16-bit), exposure.txt, HDRImg.hdr
    and, when the scene has one, motion_mask.png (8-bit).

    Everything is written into a hidden temporary folder beside ``folder`` that is renamed into
    place only when complete, so a failed save leaves nothing behind.
    """
    folder = Path(folder)
    if len(scene.frames) != len(scene.exposure_times):
        raise SceneError(f"{len(scene.frames)} frames but {len(scene.exposure_times)} exposure "
                         "times", folder, "give one exposure time per frame")
    if folder.exists() and not folder.is_dir():
        raise OutputError("exists and is not a folder", folder, "choose another output path")
    if folder.is_dir() and any(folder.iterdir()) and not overwrite:
        raise OutputError("output folder exists and is not empty", folder,
                          "choose a new folder or allow overwriting")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".part", dir=folder.parent))
    try:
        for index, frame in enumerate(scene.frames, start=1):
            write_ldr(tmp / f"input_{index}.tif", frame, bit_depth=16)
        stops = np.log2(np.asarray(scene.exposure_times, dtype=np.float64))
        text = "".join(f"{value:.6g}\n" for value in stops)
        write_bytes_atomic(tmp / EXPOSURE_FILE, text.encode("utf-8"))
        if scene.ground_truth is not None:
            write_hdr(tmp / "HDRImg.hdr", scene.ground_truth)
        if scene.motion_mask is not None:
            mask = np.asarray(scene.motion_mask, dtype=np.float32)
            write_ldr(tmp / MOTION_MASK_FILE, np.repeat(mask[..., None], 3, axis=2), bit_depth=8)
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder
